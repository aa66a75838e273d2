package dns

import (
	"context"
	"fmt"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"
)

// resolveUDPSize is the EDNS buffer size Resolve offers.
const resolveUDPSize = 1232

// Resolve asks server ("host:port", a resolver or an authoritative server)
// for name and type qtype ("A", "AAAA", "CNAME", "TXT", …) the way a client
// of the service would, with recursion desired, over UDP and again over TCP
// when the answer is truncated. It returns the rdata texts of the answer's
// RRs of type qtype, sorted and in the form of Record.Rdata, and the lowest
// of their TTLs. NXDOMAIN and NODATA give no values and no error. Without a
// deadline on ctx, DefaultTimeout applies.
func Resolve(ctx context.Context, server, name, qtype string) ([]string, uint32, error) {
	qt, ok := mdns.StringToType[strings.ToUpper(qtype)]
	if !ok {
		return nil, 0, fmt.Errorf("resolve %s: unknown type %q: %w", name, qtype, ErrInvalid)
	}
	if _, ok := mdns.IsDomainName(name); !ok || name == "" {
		return nil, 0, fmt.Errorf("resolve %q: not a domain name: %w", name, ErrInvalid)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	fqdn := mdns.Fqdn(name)
	m := new(mdns.Msg)
	m.SetQuestion(fqdn, qt)
	m.SetEdns0(resolveUDPSize, false)

	var resp *mdns.Msg
	for _, network := range []string{"udp", "tcp"} {
		c := &mdns.Client{Net: network, Timeout: DefaultTimeout}
		r, _, err := c.ExchangeContext(ctx, m, server)
		if err != nil {
			return nil, 0, transportError(ctx, fmt.Sprintf("resolve %s at %s", fqdn, server), err)
		}
		resp = r
		if !r.Truncated {
			break
		}
	}
	switch resp.Rcode {
	case mdns.RcodeSuccess:
	case mdns.RcodeNameError:
		return nil, 0, nil
	default:
		return nil, 0, &RcodeError{Op: "resolve", Name: fqdn, Rcode: resp.Rcode}
	}
	var values []string
	var ttl uint32
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype != qt {
			continue
		}
		if len(values) == 0 || rr.Header().Ttl < ttl {
			ttl = rr.Header().Ttl
		}
		values = append(values, rdataText(rr))
	}
	slices.Sort(values)
	return values, ttl, nil
}
