package zoneserver

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"
)

const (
	testZone   = "example.test."
	testKey    = "witness-key."
	testSecret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=" // 32 bytes
)

func mustRR(t *testing.T, s string) mdns.RR {
	t.Helper()
	rr, err := mdns.NewRR(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return rr
}

func rrs(t *testing.T, ss ...string) []mdns.RR {
	t.Helper()
	out := make([]mdns.RR, len(ss))
	for i, s := range ss {
		out[i] = mustRR(t, s)
	}
	return out
}

// strs renders RRs one per line in a canonical, sorted text form.
func strs(rrs []mdns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.String())
	}
	sort.Strings(out)
	return out
}

func baseRecords(t *testing.T) []mdns.RR {
	return rrs(t,
		"example.test. 3600 IN SOA ns.example.test. hostmaster.example.test. 100 3600 600 86400 30",
		"example.test. 3600 IN NS ns.example.test.",
		"ns.example.test. 3600 IN A 127.0.0.53",
		"app.example.test. 60 IN A 192.0.2.1",
		"app.example.test. 60 IN TXT \"hello\"",
		"_witness.app.example.test. 60 IN TXT \"token=1 site=east\"",
		"multi.example.test. 60 IN A 192.0.2.10",
		"multi.example.test. 60 IN A 192.0.2.11",
		"www.example.test. 60 IN CNAME app.example.test.",
		"a.b.c.example.test. 60 IN A 192.0.2.20",
	)
}

func startServer(t *testing.T, keys map[string]string) *Server {
	t.Helper()
	s, err := New(Config{Zone: testZone, Keys: keys, Records: baseRecords(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func defaultKeys() map[string]string { return map[string]string{testKey: testSecret} }

// exchange sends m over network net, signing it with key/secret when key is
// not empty. It returns the response even when its TSIG does not verify.
func exchange(t *testing.T, addr, network string, m *mdns.Msg, key, secret string) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	if key != "" {
		c.TsigSecret = map[string]string{key: secret}
		m.SetTsig(key, mdns.HmacSHA256, 300, time.Now().Unix())
	}
	r, _, err := c.Exchange(m, addr)
	if r == nil {
		t.Fatalf("exchange: %v", err)
	}
	if err != nil && r.IsTsig() == nil {
		t.Fatalf("exchange: %v", err)
	}
	return r
}

func TestQuery(t *testing.T) {
	s := startServer(t, defaultKeys())
	soa := []string{"example.test.\t30\tIN\tSOA\tns.example.test. hostmaster.example.test. 100 3600 600 86400 30"}
	tests := []struct {
		name      string
		qname     string
		qtype     uint16
		rcode     int
		aa        bool
		answer    []string
		authority []string
	}{
		{"data", "app.example.test.", mdns.TypeA, mdns.RcodeSuccess, true,
			[]string{"app.example.test.\t60\tIN\tA\t192.0.2.1"}, nil},
		{"case-insensitive", "APP.Example.TEST.", mdns.TypeA, mdns.RcodeSuccess, true,
			[]string{"APP.Example.TEST.\t60\tIN\tA\t192.0.2.1"}, nil},
		{"rrset of two", "multi.example.test.", mdns.TypeA, mdns.RcodeSuccess, true,
			[]string{"multi.example.test.\t60\tIN\tA\t192.0.2.10", "multi.example.test.\t60\tIN\tA\t192.0.2.11"}, nil},
		{"nodata", "app.example.test.", mdns.TypeAAAA, mdns.RcodeSuccess, true, nil, soa},
		{"nxdomain", "nope.example.test.", mdns.TypeA, mdns.RcodeNameError, true, nil, soa},
		{"empty non-terminal is nodata", "b.c.example.test.", mdns.TypeA, mdns.RcodeSuccess, true, nil, soa},
		{"cname followed", "www.example.test.", mdns.TypeA, mdns.RcodeSuccess, true,
			[]string{"app.example.test.\t60\tIN\tA\t192.0.2.1", "www.example.test.\t60\tIN\tCNAME\tapp.example.test."}, nil},
		{"cname asked", "www.example.test.", mdns.TypeCNAME, mdns.RcodeSuccess, true,
			[]string{"www.example.test.\t60\tIN\tCNAME\tapp.example.test."}, nil},
		{"any", "app.example.test.", mdns.TypeANY, mdns.RcodeSuccess, true,
			[]string{"app.example.test.\t60\tIN\tA\t192.0.2.1", "app.example.test.\t60\tIN\tTXT\t\"hello\""}, nil},
		{"fence txt", "_witness.app.example.test.", mdns.TypeTXT, mdns.RcodeSuccess, true,
			[]string{"_witness.app.example.test.\t60\tIN\tTXT\t\"token=1 site=east\""}, nil},
		{"outside zone refused", "example.org.", mdns.TypeA, mdns.RcodeRefused, false, nil, nil},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				m := new(mdns.Msg)
				m.SetQuestion(tt.qname, tt.qtype)
				r := exchange(t, s.Addr(), network, m, "", "")
				if r.Rcode != tt.rcode {
					t.Errorf("rcode = %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tt.rcode])
				}
				if r.Authoritative != tt.aa {
					t.Errorf("AA = %v, want %v", r.Authoritative, tt.aa)
				}
				if diff := cmp.Diff(tt.answer, strs(r.Answer), emptyIsNil); diff != "" {
					t.Errorf("answer (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tt.authority, strs(r.Ns), emptyIsNil); diff != "" {
					t.Errorf("authority (-want +got):\n%s", diff)
				}
			})
		}
	}
}

var emptyIsNil = cmp.Transformer("emptyIsNil", func(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
})

func TestQueryTruncatesLargeUDPAnswer(t *testing.T) {
	var records []mdns.RR
	for i := range 60 {
		records = append(records, mustRR(t, fmt.Sprintf("big.example.test. 60 IN A 192.0.2.%d", i+1)))
	}
	s, err := New(Config{Zone: testZone, Records: records})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	m := new(mdns.Msg)
	m.SetQuestion("big.example.test.", mdns.TypeA)
	if r := exchange(t, s.Addr(), "udp", m, "", ""); !r.Truncated {
		t.Errorf("UDP answer of %d RRs not truncated", len(r.Answer))
	}
	m = new(mdns.Msg)
	m.SetQuestion("big.example.test.", mdns.TypeA)
	if r := exchange(t, s.Addr(), "tcp", m, "", ""); r.Truncated || len(r.Answer) != 60 {
		t.Errorf("TCP answer: truncated=%v with %d RRs, want all 60", r.Truncated, len(r.Answer))
	}
}

func newUpdate() *mdns.Msg {
	m := new(mdns.Msg)
	m.SetUpdate(testZone)
	return m
}

func TestUpdateAuthentication(t *testing.T) {
	tests := []struct {
		name     string
		keys     map[string]string
		key      string
		secret   string
		rcode    int
		tsigErr  uint16
		hasTsig  bool
		verified bool // the response's TSIG verifies with the client's key
	}{
		{"unsigned refused", defaultKeys(), "", "", mdns.RcodeRefused, 0, false, false},
		{"wrong secret", defaultKeys(), testKey, "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==", mdns.RcodeNotAuth, mdns.RcodeBadSig, true, false},
		{"unknown key", defaultKeys(), "other-key.", testSecret, mdns.RcodeNotAuth, mdns.RcodeBadKey, true, false},
		{"server without keys", nil, testKey, testSecret, mdns.RcodeNotAuth, mdns.RcodeBadKey, true, false},
		{"signed", defaultKeys(), testKey, testSecret, mdns.RcodeSuccess, 0, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, tt.keys)
			m := newUpdate()
			m.Insert(rrs(t, "new.example.test. 60 IN A 192.0.2.99"))
			c := &mdns.Client{Net: "tcp", Timeout: 5 * time.Second}
			if tt.key != "" {
				c.TsigSecret = map[string]string{tt.key: tt.secret}
				m.SetTsig(tt.key, mdns.HmacSHA256, 300, time.Now().Unix())
			}
			r, _, err := c.Exchange(m, s.Addr())
			if r == nil {
				t.Fatalf("exchange: %v", err)
			}
			if r.Rcode != tt.rcode {
				t.Errorf("rcode = %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tt.rcode])
			}
			if got := r.IsTsig() != nil; got != tt.hasTsig {
				t.Fatalf("response has TSIG = %v, want %v", got, tt.hasTsig)
			}
			if tt.hasTsig && r.IsTsig().Error != tt.tsigErr {
				t.Errorf("TSIG error = %s, want %s", mdns.RcodeToString[int(r.IsTsig().Error)], mdns.RcodeToString[int(tt.tsigErr)])
			}
			if tt.hasTsig && (err == nil) != tt.verified {
				t.Errorf("response verification error = %v, want verified=%v", err, tt.verified)
			}
			got := strs(s.Records("new.example.test.", mdns.TypeA))
			var want []string
			if tt.rcode == mdns.RcodeSuccess {
				want = []string{"new.example.test.\t60\tIN\tA\t192.0.2.99"}
			}
			if diff := cmp.Diff(want, got, emptyIsNil); diff != "" {
				t.Errorf("zone (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpdateBadTime(t *testing.T) {
	s := startServer(t, defaultKeys())
	m := newUpdate()
	m.Insert(rrs(t, "new.example.test. 60 IN A 192.0.2.99"))
	c := &mdns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigSecret: defaultKeys()}
	m.SetTsig(testKey, mdns.HmacSHA256, 300, time.Now().Add(-time.Hour).Unix())
	r, _, err := c.Exchange(m, s.Addr())
	if r == nil {
		t.Fatalf("exchange: %v", err)
	}
	if r.Rcode != mdns.RcodeNotAuth || r.IsTsig() == nil || r.IsTsig().Error != mdns.RcodeBadTime {
		t.Fatalf("got rcode %s tsig %v, want NOTAUTH with BADTIME", mdns.RcodeToString[r.Rcode], r.IsTsig())
	}
	if got := s.Records("new.example.test.", mdns.TypeA); len(got) != 0 {
		t.Errorf("update applied despite BADTIME: %v", got)
	}
}

// TestPrerequisites checks every prerequisite kind of RFC 2136 section 2.4,
// holding and failing. Each update also adds a marker RR: it must be in the
// zone, with the serial bumped, exactly when the prerequisites hold.
func TestPrerequisites(t *testing.T) {
	anyRR := func(name string, rrtype, class uint16) mdns.RR {
		return &mdns.ANY{Hdr: mdns.RR_Header{Name: name, Rrtype: rrtype, Class: class}}
	}
	tests := []struct {
		name    string
		prereqs func(m *mdns.Msg)
		rcode   int
	}{
		{"yxrrset value-independent holds", func(m *mdns.Msg) {
			m.RRsetUsed(rrs(t, "app.example.test. 0 IN A 0.0.0.0"))
		}, mdns.RcodeSuccess},
		{"yxrrset value-independent fails", func(m *mdns.Msg) {
			m.RRsetUsed(rrs(t, "app.example.test. 0 IN AAAA ::"))
		}, mdns.RcodeNXRrset},
		{"yxrrset value-dependent holds", func(m *mdns.Msg) {
			m.Used(rrs(t, `_witness.app.example.test. 0 IN TXT "token=1 site=east"`))
		}, mdns.RcodeSuccess},
		{"yxrrset value-dependent holds for whole set in any order", func(m *mdns.Msg) {
			m.Used(rrs(t, "multi.example.test. 0 IN A 192.0.2.11", "multi.example.test. 0 IN A 192.0.2.10"))
		}, mdns.RcodeSuccess},
		{"yxrrset value-dependent fails on other value", func(m *mdns.Msg) {
			m.Used(rrs(t, `_witness.app.example.test. 0 IN TXT "token=0 site=east"`))
		}, mdns.RcodeNXRrset},
		{"yxrrset value-dependent fails on subset", func(m *mdns.Msg) {
			m.Used(rrs(t, "multi.example.test. 0 IN A 192.0.2.10"))
		}, mdns.RcodeNXRrset},
		{"yxrrset value-dependent fails on missing rrset", func(m *mdns.Msg) {
			m.Used(rrs(t, `_witness.new.example.test. 0 IN TXT "token=1 site=east"`))
		}, mdns.RcodeNXRrset},
		{"nxrrset holds", func(m *mdns.Msg) {
			m.RRsetNotUsed(rrs(t, "_witness.other.example.test. 0 IN TXT \"\""))
		}, mdns.RcodeSuccess},
		{"nxrrset fails", func(m *mdns.Msg) {
			m.RRsetNotUsed(rrs(t, "_witness.app.example.test. 0 IN TXT \"\""))
		}, mdns.RcodeYXRrset},
		{"yxdomain holds", func(m *mdns.Msg) {
			m.Answer = append(m.Answer, anyRR("www.example.test.", mdns.TypeANY, mdns.ClassANY))
		}, mdns.RcodeSuccess},
		{"yxdomain fails", func(m *mdns.Msg) {
			m.Answer = append(m.Answer, anyRR("nope.example.test.", mdns.TypeANY, mdns.ClassANY))
		}, mdns.RcodeNameError},
		{"yxdomain fails on empty non-terminal", func(m *mdns.Msg) {
			m.Answer = append(m.Answer, anyRR("c.example.test.", mdns.TypeANY, mdns.ClassANY))
		}, mdns.RcodeNameError},
		{"nxdomain holds", func(m *mdns.Msg) {
			m.Answer = append(m.Answer, anyRR("nope.example.test.", mdns.TypeANY, mdns.ClassNONE))
		}, mdns.RcodeSuccess},
		{"nxdomain fails", func(m *mdns.Msg) {
			m.Answer = append(m.Answer, anyRR("app.example.test.", mdns.TypeANY, mdns.ClassNONE))
		}, mdns.RcodeYXDomain},
		{"all hold", func(m *mdns.Msg) {
			m.Used(rrs(t, `_witness.app.example.test. 0 IN TXT "token=1 site=east"`))
			m.RRsetUsed(rrs(t, "app.example.test. 0 IN A 0.0.0.0"))
			m.Answer = append(m.Answer, anyRR("nope.example.test.", mdns.TypeANY, mdns.ClassNONE))
		}, mdns.RcodeSuccess},
		{"last of several fails", func(m *mdns.Msg) {
			m.Used(rrs(t, `_witness.app.example.test. 0 IN TXT "token=1 site=east"`))
			m.RRsetUsed(rrs(t, "app.example.test. 0 IN A 0.0.0.0"))
			m.Answer = append(m.Answer, anyRR("app.example.test.", mdns.TypeANY, mdns.ClassNONE))
		}, mdns.RcodeYXDomain},
		{"outside zone", func(m *mdns.Msg) {
			m.RRsetUsed(rrs(t, "app.example.org. 0 IN A 0.0.0.0"))
		}, mdns.RcodeNotZone},
		{"nonzero ttl", func(m *mdns.Msg) {
			m.Answer = append(m.Answer, &mdns.ANY{Hdr: mdns.RR_Header{Name: "app.example.test.", Rrtype: mdns.TypeA, Class: mdns.ClassANY, Ttl: 5}})
		}, mdns.RcodeFormatError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, defaultKeys())
			before := s.Serial()
			m := newUpdate()
			tt.prereqs(m)
			m.Insert(rrs(t, "marker.example.test. 60 IN A 192.0.2.200"))
			r := exchange(t, s.Addr(), "tcp", m, testKey, testSecret)
			if r.Rcode != tt.rcode {
				t.Errorf("rcode = %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tt.rcode])
			}
			applied := len(s.Records("marker.example.test.", mdns.TypeA)) == 1
			if want := tt.rcode == mdns.RcodeSuccess; applied != want {
				t.Errorf("update applied = %v, want %v", applied, want)
			}
			wantSerial := before
			if tt.rcode == mdns.RcodeSuccess {
				wantSerial++
			}
			if got := s.Serial(); got != wantSerial {
				t.Errorf("serial = %d, want %d", got, wantSerial)
			}
		})
	}
}

// TestUpdateOperations checks each kind of change of RFC 2136 section 2.5
// and the rules of section 3.4.2.
func TestUpdateOperations(t *testing.T) {
	tests := []struct {
		name    string
		update  func(m *mdns.Msg)
		rcode   int
		owner   string
		want    []string // all RRs at owner afterwards
		serialΔ uint32
	}{
		{"add to rrset", func(m *mdns.Msg) {
			m.Insert(rrs(t, "app.example.test. 60 IN A 192.0.2.2"))
		}, mdns.RcodeSuccess, "app.example.test.", []string{
			"app.example.test.\t60\tIN\tA\t192.0.2.1",
			"app.example.test.\t60\tIN\tA\t192.0.2.2",
			"app.example.test.\t60\tIN\tTXT\t\"hello\"",
		}, 1},
		{"add with new ttl changes the whole rrset", func(m *mdns.Msg) {
			m.Insert(rrs(t, "multi.example.test. 300 IN A 192.0.2.10"))
		}, mdns.RcodeSuccess, "multi.example.test.", []string{
			"multi.example.test.\t300\tIN\tA\t192.0.2.10",
			"multi.example.test.\t300\tIN\tA\t192.0.2.11",
		}, 1},
		{"add duplicate is no change", func(m *mdns.Msg) {
			m.Insert(rrs(t, "app.example.test. 60 IN A 192.0.2.1"))
		}, mdns.RcodeSuccess, "app.example.test.", []string{
			"app.example.test.\t60\tIN\tA\t192.0.2.1",
			"app.example.test.\t60\tIN\tTXT\t\"hello\"",
		}, 0},
		{"delete rrset then add replaces it", func(m *mdns.Msg) {
			m.RemoveRRset(rrs(t, "multi.example.test. 0 IN A 0.0.0.0"))
			m.Insert(rrs(t, "multi.example.test. 30 IN A 192.0.2.12"))
		}, mdns.RcodeSuccess, "multi.example.test.", []string{
			"multi.example.test.\t30\tIN\tA\t192.0.2.12",
		}, 1},
		{"delete one rr", func(m *mdns.Msg) {
			m.Remove(rrs(t, "multi.example.test. 0 IN A 192.0.2.10"))
		}, mdns.RcodeSuccess, "multi.example.test.", []string{
			"multi.example.test.\t60\tIN\tA\t192.0.2.11",
		}, 1},
		{"delete missing rr is no change", func(m *mdns.Msg) {
			m.Remove(rrs(t, "multi.example.test. 0 IN A 192.0.2.99"))
		}, mdns.RcodeSuccess, "multi.example.test.", []string{
			"multi.example.test.\t60\tIN\tA\t192.0.2.10",
			"multi.example.test.\t60\tIN\tA\t192.0.2.11",
		}, 0},
		{"delete name", func(m *mdns.Msg) {
			m.RemoveName(rrs(t, "app.example.test. 0 IN A 0.0.0.0"))
		}, mdns.RcodeSuccess, "app.example.test.", nil, 1},
		{"delete name at apex keeps SOA and NS", func(m *mdns.Msg) {
			m.Insert(rrs(t, "example.test. 60 IN TXT \"apex\""))
			m.RemoveName(rrs(t, "example.test. 0 IN A 0.0.0.0"))
		}, mdns.RcodeSuccess, "example.test.", []string{
			"example.test.\t3600\tIN\tNS\tns.example.test.",
			"example.test.\t3600\tIN\tSOA\tns.example.test. hostmaster.example.test. 101 3600 600 86400 30",
		}, 1},
		{"last apex NS is kept", func(m *mdns.Msg) {
			m.Remove(rrs(t, "example.test. 0 IN NS ns.example.test."))
		}, mdns.RcodeSuccess, "example.test.", []string{
			"example.test.\t3600\tIN\tNS\tns.example.test.",
			"example.test.\t3600\tIN\tSOA\tns.example.test. hostmaster.example.test. 100 3600 600 86400 30",
		}, 0},
		{"explicit SOA with higher serial replaces", func(m *mdns.Msg) {
			m.Insert(rrs(t, "example.test. 3600 IN SOA ns.example.test. hostmaster.example.test. 500 3600 600 86400 30"))
		}, mdns.RcodeSuccess, "example.test.", []string{
			"example.test.\t3600\tIN\tNS\tns.example.test.",
			"example.test.\t3600\tIN\tSOA\tns.example.test. hostmaster.example.test. 500 3600 600 86400 30",
		}, 400},
		{"cname onto data is ignored", func(m *mdns.Msg) {
			m.Insert(rrs(t, "app.example.test. 60 IN CNAME www.example.test."))
		}, mdns.RcodeSuccess, "app.example.test.", []string{
			"app.example.test.\t60\tIN\tA\t192.0.2.1",
			"app.example.test.\t60\tIN\tTXT\t\"hello\"",
		}, 0},
		{"data onto cname is ignored", func(m *mdns.Msg) {
			m.Insert(rrs(t, "www.example.test. 60 IN A 192.0.2.5"))
		}, mdns.RcodeSuccess, "www.example.test.", []string{
			"www.example.test.\t60\tIN\tCNAME\tapp.example.test.",
		}, 0},
		{"cname replaces cname", func(m *mdns.Msg) {
			m.Insert(rrs(t, "www.example.test. 60 IN CNAME multi.example.test."))
		}, mdns.RcodeSuccess, "www.example.test.", []string{
			"www.example.test.\t60\tIN\tCNAME\tmulti.example.test.",
		}, 1},
		{"name outside zone applies nothing", func(m *mdns.Msg) {
			m.Insert(rrs(t, "app.example.test. 60 IN A 192.0.2.2"))
			m.Insert(rrs(t, "app.example.org. 60 IN A 192.0.2.2"))
		}, mdns.RcodeNotZone, "app.example.test.", []string{
			"app.example.test.\t60\tIN\tA\t192.0.2.1",
			"app.example.test.\t60\tIN\tTXT\t\"hello\"",
		}, 0},
		{"meta type in add applies nothing", func(m *mdns.Msg) {
			m.Insert(rrs(t, "app.example.test. 60 IN A 192.0.2.2"))
			m.Ns = append(m.Ns, &mdns.ANY{Hdr: mdns.RR_Header{Name: "app.example.test.", Rrtype: mdns.TypeANY, Class: mdns.ClassINET, Ttl: 60}})
		}, mdns.RcodeFormatError, "app.example.test.", []string{
			"app.example.test.\t60\tIN\tA\t192.0.2.1",
			"app.example.test.\t60\tIN\tTXT\t\"hello\"",
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, defaultKeys())
			before := s.Serial()
			m := newUpdate()
			tt.update(m)
			r := exchange(t, s.Addr(), "tcp", m, testKey, testSecret)
			if r.Rcode != tt.rcode {
				t.Errorf("rcode = %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tt.rcode])
			}
			if diff := cmp.Diff(tt.want, strs(s.Records(tt.owner, mdns.TypeANY)), emptyIsNil); diff != "" {
				t.Errorf("records at %s (-want +got):\n%s", tt.owner, diff)
			}
			if got := s.Serial() - before; got != tt.serialΔ {
				t.Errorf("serial grew by %d, want %d", got, tt.serialΔ)
			}
			// What the server holds is what it answers.
			q := new(mdns.Msg)
			q.SetQuestion(tt.owner, mdns.TypeANY)
			a := exchange(t, s.Addr(), "tcp", q, "", "")
			var answered []string
			if a.Rcode == mdns.RcodeSuccess {
				answered = strs(a.Answer)
			}
			if diff := cmp.Diff(tt.want, answered, emptyIsNil); diff != "" {
				t.Errorf("answer for %s (-want +got):\n%s", tt.owner, diff)
			}
		})
	}
}

func TestUpdateZoneSection(t *testing.T) {
	s := startServer(t, defaultKeys())
	m := new(mdns.Msg)
	m.SetUpdate("example.org.")
	m.Insert(rrs(t, "app.example.org. 60 IN A 192.0.2.2"))
	if r := exchange(t, s.Addr(), "tcp", m, testKey, testSecret); r.Rcode != mdns.RcodeNotAuth {
		t.Errorf("rcode = %s, want NOTAUTH for a zone we do not serve", mdns.RcodeToString[r.Rcode])
	}
}

// TestConcurrentCompareAndSwap races updates that all expect the same fence
// value: the server serialises them, so exactly one wins.
func TestConcurrentCompareAndSwap(t *testing.T) {
	s := startServer(t, defaultKeys())
	const writers = 8
	rcodes := make([]int, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			m := newUpdate()
			m.Used(rrs(t, `_witness.app.example.test. 0 IN TXT "token=1 site=east"`))
			m.RemoveRRset(rrs(t, `_witness.app.example.test. 0 IN TXT ""`))
			m.Insert(rrs(t, fmt.Sprintf(`_witness.app.example.test. 60 IN TXT "token=%d site=west"`, i+2)))
			c := &mdns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigSecret: defaultKeys()}
			m.SetTsig(testKey, mdns.HmacSHA256, 300, time.Now().Unix())
			r, _, err := c.Exchange(m, s.Addr())
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
				return
			}
			rcodes[i] = r.Rcode
		})
	}
	wg.Wait()
	won := -1
	for i, rc := range rcodes {
		switch rc {
		case mdns.RcodeSuccess:
			if won >= 0 {
				t.Errorf("writers %d and %d both won", won, i)
			}
			won = i
		case mdns.RcodeNXRrset:
		default:
			t.Errorf("writer %d: rcode %s", i, mdns.RcodeToString[rc])
		}
	}
	if won < 0 {
		t.Fatal("no writer won")
	}
	want := []string{fmt.Sprintf("_witness.app.example.test.\t60\tIN\tTXT\t\"token=%d site=west\"", won+2)}
	if diff := cmp.Diff(want, strs(s.Records("_witness.app.example.test.", mdns.TypeTXT))); diff != "" {
		t.Errorf("fence (-want +got):\n%s", diff)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr error
	}{
		{"minimal", Config{Zone: "example.test"}, nil},
		{"no zone", Config{}, ErrInvalidConfig},
		{"bad secret", Config{Zone: "example.test", Keys: map[string]string{"k.": "not base64!"}}, ErrInvalidConfig},
		{"record outside zone", Config{Zone: "example.test", Records: rrs(t, "a.example.org. 60 IN A 192.0.2.1")}, ErrInvalidConfig},
		{"cname and data", Config{Zone: "example.test", Records: rrs(t,
			"a.example.test. 60 IN A 192.0.2.1", "a.example.test. 60 IN CNAME b.example.test.")}, ErrInvalidConfig},
		{"soa below apex", Config{Zone: "example.test", Records: rrs(t,
			"a.example.test. 60 IN SOA ns.example.test. h.example.test. 1 1 1 1 1")}, ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("New: error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestNewSynthesisesApex(t *testing.T) {
	s, err := New(Config{Zone: "Example.Test"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"example.test.\t3600\tIN\tNS\tns.example.test.",
		"example.test.\t3600\tIN\tSOA\tns.example.test. hostmaster.example.test. 1 3600 600 86400 60",
	}
	if diff := cmp.Diff(want, strs(s.Records("example.test.", mdns.TypeANY))); diff != "" {
		t.Errorf("apex (-want +got):\n%s", diff)
	}
}

func TestStartCloseLifecycle(t *testing.T) {
	s, err := New(Config{Zone: testZone})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start: %v, want ErrStarted", err)
	}
	addr := s.Addr()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	c := &mdns.Client{Net: "tcp", Timeout: time.Second}
	m := new(mdns.Msg)
	m.SetQuestion(testZone, mdns.TypeSOA)
	if _, _, err := c.Exchange(m, addr); err == nil {
		t.Error("closed server still answers over TCP")
	}
}
