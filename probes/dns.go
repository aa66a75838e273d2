package probes

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

func newDNSCheck(d DNSSpec) func(context.Context) Result {
	qtype := dns.StringToType[strings.ToUpper(d.Type)]
	name := dns.Fqdn(d.Name)
	return func(ctx context.Context) Result {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		m.RecursionDesired = true
		c := &dns.Client{Net: d.Net}
		in, _, err := c.ExchangeContext(ctx, m, d.Server)
		if err == nil && in.Truncated && d.Net == "udp" {
			c.Net = "tcp"
			in, _, err = c.ExchangeContext(ctx, m, d.Server)
		}
		if err != nil {
			return Result{Detail: err.Error()}
		}
		if in.Rcode != dns.RcodeSuccess {
			return Result{Detail: "rcode " + dns.RcodeToString[in.Rcode]}
		}
		var got []string
		for _, rr := range in.Answer {
			if rr.Header().Rrtype != qtype {
				continue
			}
			if d.Expect == "" || rdataMatches(rr, d.Expect) {
				return Result{OK: true, Detail: fmt.Sprintf("%s %s %s", d.Name, d.Type, rdata(rr))}
			}
			got = append(got, rdata(rr))
		}
		if len(got) == 0 {
			return Result{Detail: fmt.Sprintf("no %s answer for %s", d.Type, d.Name)}
		}
		return Result{Detail: fmt.Sprintf("answer %s, want %s", strings.Join(got, " "), d.Expect)}
	}
}

// rdata is the record's data in presentation format, without its header.
func rdata(rr dns.RR) string {
	return strings.TrimPrefix(rr.String(), rr.Header().String())
}

func rdataMatches(rr dns.RR, want string) bool {
	got := rdata(rr)
	switch {
	case got == want:
		return true
	case strings.EqualFold(strings.TrimSuffix(got, "."), strings.TrimSuffix(want, ".")):
		return true
	}
	if txt, ok := rr.(*dns.TXT); ok {
		return strings.Join(txt.Txt, "") == want
	}
	a, errA := netip.ParseAddr(got)
	b, errB := netip.ParseAddr(want)
	return errA == nil && errB == nil && a == b
}
