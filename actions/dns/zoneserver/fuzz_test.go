package zoneserver

import (
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzHandle feeds arbitrary messages to the request handler as if their
// TSIG had verified, and checks that it never panics, that the apex keeps
// its SOA and NS, and that the serial only moves when the zone changed.
func FuzzHandle(f *testing.F) {
	seed := func(build func(m *mdns.Msg)) {
		m := new(mdns.Msg)
		m.SetUpdate(testZone)
		build(m)
		m.SetTsig(testKey, mdns.HmacSHA256, 300, 0)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	rr := func(s string) mdns.RR {
		r, err := mdns.NewRR(s)
		if err != nil {
			f.Fatal(err)
		}
		return r
	}
	seed(func(m *mdns.Msg) {
		m.Used([]mdns.RR{rr(`_witness.app.example.test. 0 IN TXT "token=1 site=east"`)})
		m.RemoveRRset([]mdns.RR{rr("app.example.test. 0 IN A 0.0.0.0")})
		m.Insert([]mdns.RR{rr("app.example.test. 60 IN A 192.0.2.9")})
	})
	seed(func(m *mdns.Msg) {
		m.RRsetNotUsed([]mdns.RR{rr(`new.example.test. 0 IN TXT ""`)})
		m.NameNotUsed([]mdns.RR{rr("new.example.test. 0 IN A 0.0.0.0")})
		m.RemoveName([]mdns.RR{rr("example.test. 0 IN A 0.0.0.0")})
		m.Remove([]mdns.RR{rr("example.test. 0 IN NS ns.example.test.")})
	})
	seed(func(m *mdns.Msg) {
		m.NameUsed([]mdns.RR{rr("www.example.test. 0 IN A 0.0.0.0")})
		m.Insert([]mdns.RR{rr("example.test. 60 IN SOA a. b. 4000000000 1 1 1 1"), rr("www.example.test. 60 IN A 192.0.2.1")})
	})
	q := new(mdns.Msg)
	q.SetQuestion("www.example.test.", mdns.TypeA)
	if b, err := q.Pack(); err == nil {
		f.Add(b)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		req := new(mdns.Msg)
		if err := req.Unpack(data); err != nil {
			return
		}
		s, err := New(Config{Zone: testZone, Keys: defaultKeys(), Records: baseRecords(t)})
		if err != nil {
			t.Fatal(err)
		}
		before := s.zone
		serial := s.Serial()
		resp := s.handle(req, nil)
		if resp == nil {
			t.Fatal("no response")
		}
		if _, err := resp.Pack(); err != nil && req.IsTsig() == nil {
			t.Fatalf("response does not pack: %v", err)
		}
		after := s.zone
		if len(after.rrset(testZone, mdns.TypeSOA)) != 1 || len(after.rrset(testZone, mdns.TypeNS)) == 0 {
			t.Fatalf("apex lost its SOA or NS: %v", s.Records(testZone, mdns.TypeANY))
		}
		if after == before && s.Serial() != serial {
			t.Fatal("serial moved without a change")
		}
		if after != before && resp.Rcode != mdns.RcodeSuccess {
			t.Fatalf("zone changed by a refused update (%s)", mdns.RcodeToString[resp.Rcode])
		}
		if after != before && s.Serial() == serial {
			t.Fatal("zone changed without a new serial")
		}
		for name, node := range after.nodes {
			if len(node) == 0 {
				t.Fatalf("empty node %s left in the zone", name)
			}
			if len(node[mdns.TypeCNAME]) > 0 && len(node) > 1 {
				t.Fatalf("CNAME and other data at %s", name)
			}
		}
	})
}
