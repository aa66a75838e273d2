package zoneserver

import (
	"fmt"
	"slices"

	mdns "github.com/miekg/dns"
)

// zone is the in-memory content of one zone: owner name (canonical) → type →
// RRset. A zone value is never modified once published; updates work on a
// clone and swap it in. RRs stored in it are never mutated either.
type zone struct {
	origin string
	nodes  map[string]map[uint16][]mdns.RR
}

func newZone(origin string) *zone {
	return &zone{origin: origin, nodes: make(map[string]map[uint16][]mdns.RR)}
}

// clone copies the maps and slices; the RRs are shared, as they are immutable.
func (z *zone) clone() *zone {
	c := newZone(z.origin)
	for name, node := range z.nodes {
		n := make(map[uint16][]mdns.RR, len(node))
		for t, rrs := range node {
			n[t] = slices.Clone(rrs)
		}
		c.nodes[name] = n
	}
	return c
}

func (z *zone) inZone(name string) bool {
	return mdns.IsSubDomain(z.origin, mdns.CanonicalName(name))
}

func (z *zone) rrset(name string, t uint16) []mdns.RR {
	return z.nodes[mdns.CanonicalName(name)][t]
}

func (z *zone) nameExists(name string) bool {
	return len(z.nodes[mdns.CanonicalName(name)]) > 0
}

// hasDescendant reports whether some owner name lies below name, which makes
// name an empty non-terminal (NODATA rather than NXDOMAIN).
func (z *zone) hasDescendant(name string) bool {
	for owner := range z.nodes {
		if owner != name && mdns.IsSubDomain(name, owner) {
			return true
		}
	}
	return false
}

func (z *zone) soa() *mdns.SOA {
	rrs := z.nodes[z.origin][mdns.TypeSOA]
	if len(rrs) == 0 {
		return nil
	}
	return rrs[0].(*mdns.SOA)
}

// negativeSOA is the SOA for the authority section of negative answers, with
// the TTL of RFC 2308: the lower of the SOA TTL and its MINIMUM field.
func (z *zone) negativeSOA() []mdns.RR {
	soa := z.soa()
	if soa == nil {
		return nil
	}
	c := mdns.Copy(soa).(*mdns.SOA)
	c.Hdr.Ttl = min(c.Hdr.Ttl, c.Minttl)
	return []mdns.RR{c}
}

// put stores rr (copied, owner canonical, class IN) without any of the RFC
// 2136 rules; the loader uses it after its own checks.
func (z *zone) put(rr mdns.RR) {
	c := mdns.Copy(rr)
	h := c.Header()
	h.Name = mdns.CanonicalName(h.Name)
	h.Class = mdns.ClassINET
	node := z.nodes[h.Name]
	if node == nil {
		node = make(map[uint16][]mdns.RR)
		z.nodes[h.Name] = node
	}
	node[h.Rrtype] = append(node[h.Rrtype], c)
}

// lookup answers a query. maxChase bounds CNAME chains inside the zone.
func (z *zone) lookup(qname string, qtype uint16) (answer, authority []mdns.RR, rcode int) {
	const maxChase = 8
	name := mdns.CanonicalName(qname)
	for hop := 0; ; hop++ {
		node := z.nodes[name]
		if len(node) == 0 {
			if len(answer) > 0 {
				// A CNAME inside the zone points at nothing: the chain
				// ends here; the CNAMEs are the answer.
				return answer, nil, mdns.RcodeSuccess
			}
			if z.hasDescendant(name) {
				return nil, z.negativeSOA(), mdns.RcodeSuccess
			}
			return nil, z.negativeSOA(), mdns.RcodeNameError
		}
		if qtype == mdns.TypeANY {
			for _, t := range sortedTypes(node) {
				answer = append(answer, node[t]...)
			}
			return answer, nil, mdns.RcodeSuccess
		}
		if rrs := node[qtype]; len(rrs) > 0 {
			return append(answer, rrs...), nil, mdns.RcodeSuccess
		}
		cname := node[mdns.TypeCNAME]
		if len(cname) == 0 {
			if len(answer) > 0 {
				return answer, nil, mdns.RcodeSuccess
			}
			return nil, z.negativeSOA(), mdns.RcodeSuccess
		}
		answer = append(answer, cname...)
		target := mdns.CanonicalName(cname[0].(*mdns.CNAME).Target)
		if hop >= maxChase || !z.inZone(target) {
			return answer, nil, mdns.RcodeSuccess
		}
		name = target
	}
}

func sortedTypes(node map[uint16][]mdns.RR) []uint16 {
	ts := make([]uint16, 0, len(node))
	for t := range node {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

// sameRdata reports whether a and b have the same type and rdata; owner,
// class and TTL are ignored.
func sameRdata(a, b mdns.RR) bool {
	if a.Header().Rrtype != b.Header().Rrtype {
		return false
	}
	c := mdns.Copy(b)
	*c.Header() = *a.Header()
	return mdns.IsDuplicate(a, c)
}

// checkPrerequisites evaluates the prerequisite section of an update (RFC
// 2136 section 3.2) and returns the rcode: NOERROR when all hold.
func (z *zone) checkPrerequisites(prereqs []mdns.RR) int {
	type key struct {
		name string
		t    uint16
	}
	var order []key
	valueDependent := make(map[key][]mdns.RR)
	for _, rr := range prereqs {
		h := rr.Header()
		if h.Ttl != 0 {
			return mdns.RcodeFormatError
		}
		if !z.inZone(h.Name) {
			return mdns.RcodeNotZone
		}
		name := mdns.CanonicalName(h.Name)
		switch h.Class {
		case mdns.ClassANY:
			if h.Rdlength != 0 {
				return mdns.RcodeFormatError
			}
			if h.Rrtype == mdns.TypeANY {
				if !z.nameExists(name) {
					return mdns.RcodeNameError // NXDOMAIN: name not in use
				}
			} else if len(z.rrset(name, h.Rrtype)) == 0 {
				return mdns.RcodeNXRrset
			}
		case mdns.ClassNONE:
			if h.Rdlength != 0 {
				return mdns.RcodeFormatError
			}
			if h.Rrtype == mdns.TypeANY {
				if z.nameExists(name) {
					return mdns.RcodeYXDomain
				}
			} else if len(z.rrset(name, h.Rrtype)) > 0 {
				return mdns.RcodeYXRrset
			}
		case mdns.ClassINET:
			if isMeta(h.Rrtype) {
				return mdns.RcodeFormatError
			}
			k := key{name, h.Rrtype}
			if _, seen := valueDependent[k]; !seen {
				order = append(order, k)
			}
			valueDependent[k] = append(valueDependent[k], rr)
		default:
			return mdns.RcodeFormatError
		}
	}
	// Value-dependent prerequisites: the zone's RRset must equal, as a set of
	// rdata, the RRs given for that name and type.
	for _, k := range order {
		if !sameSet(z.rrset(k.name, k.t), valueDependent[k]) {
			return mdns.RcodeNXRrset
		}
	}
	return mdns.RcodeSuccess
}

func sameSet(have, want []mdns.RR) bool {
	if len(have) == 0 {
		return false
	}
	contains := func(set []mdns.RR, rr mdns.RR) bool {
		return slices.ContainsFunc(set, func(x mdns.RR) bool { return sameRdata(x, rr) })
	}
	for _, w := range want {
		if !contains(have, w) {
			return false
		}
	}
	for _, h := range have {
		if !contains(want, h) {
			return false
		}
	}
	return true
}

// isMeta reports types that may not be stored in a zone.
func isMeta(t uint16) bool {
	switch t {
	case mdns.TypeANY, mdns.TypeAXFR, mdns.TypeIXFR, mdns.TypeMAILA, mdns.TypeMAILB,
		mdns.TypeOPT, mdns.TypeTSIG, mdns.TypeTKEY, mdns.TypeNone:
		return true
	}
	return false
}

// prescan checks the update section before anything is applied (RFC 2136
// section 3.4.1.3) and returns the rcode.
func (z *zone) prescan(updates []mdns.RR) int {
	for _, rr := range updates {
		h := rr.Header()
		if !z.inZone(h.Name) {
			return mdns.RcodeNotZone
		}
		switch h.Class {
		case mdns.ClassINET:
			if isMeta(h.Rrtype) {
				return mdns.RcodeFormatError
			}
		case mdns.ClassANY:
			if h.Ttl != 0 || h.Rdlength != 0 || (isMeta(h.Rrtype) && h.Rrtype != mdns.TypeANY) {
				return mdns.RcodeFormatError
			}
		case mdns.ClassNONE:
			if h.Ttl != 0 || isMeta(h.Rrtype) {
				return mdns.RcodeFormatError
			}
		default:
			return mdns.RcodeFormatError
		}
	}
	return mdns.RcodeSuccess
}

// applyUpdates applies a prescanned update section to z (which must be a
// private clone) following RFC 2136 section 3.4.2 and reports whether the
// zone changed and whether the SOA was replaced explicitly.
func (z *zone) applyUpdates(updates []mdns.RR) (changed, soaReplaced bool) {
	for _, rr := range updates {
		h := rr.Header()
		name := mdns.CanonicalName(h.Name)
		apex := name == z.origin
		switch h.Class {
		case mdns.ClassINET:
			c, s := z.add(name, rr)
			changed = changed || c
			soaReplaced = soaReplaced || s
		case mdns.ClassANY:
			node := z.nodes[name]
			if len(node) == 0 {
				continue
			}
			for t := range node {
				if h.Rrtype != mdns.TypeANY && t != h.Rrtype {
					continue
				}
				if apex && (t == mdns.TypeSOA || t == mdns.TypeNS) {
					continue
				}
				delete(node, t)
				changed = true
			}
			if len(node) == 0 {
				delete(z.nodes, name)
			}
		case mdns.ClassNONE:
			if apex && h.Rrtype == mdns.TypeSOA {
				continue
			}
			node := z.nodes[name]
			rrs := node[h.Rrtype]
			i := slices.IndexFunc(rrs, func(x mdns.RR) bool { return sameRdata(x, rr) })
			if i < 0 {
				continue
			}
			if apex && h.Rrtype == mdns.TypeNS && len(rrs) == 1 {
				continue // never delete the last NS at the apex
			}
			rrs = slices.Delete(slices.Clone(rrs), i, i+1)
			changed = true
			if len(rrs) == 0 {
				delete(node, h.Rrtype)
				if len(node) == 0 {
					delete(z.nodes, name)
				}
			} else {
				node[h.Rrtype] = rrs
			}
		}
	}
	return changed, soaReplaced
}

// add adds one RR under the RFC 2136 rules: CNAME and other data do not mix
// (the conflicting add is ignored), an SOA replaces the old one only at the
// apex and with a greater serial, an RR with the rdata of an existing one
// replaces it, and the RRset takes the TTL of the added RR.
func (z *zone) add(name string, rr mdns.RR) (changed, soaReplaced bool) {
	h := rr.Header()
	node := z.nodes[name]
	if node == nil {
		node = make(map[uint16][]mdns.RR)
		z.nodes[name] = node
	}
	defer func() {
		if len(node) == 0 {
			delete(z.nodes, name)
		}
	}()
	c := mdns.Copy(rr)
	ch := c.Header()
	ch.Name = name
	ch.Class = mdns.ClassINET
	switch h.Rrtype {
	case mdns.TypeCNAME:
		for t := range node {
			if t != mdns.TypeCNAME {
				return false, false
			}
		}
		if old := node[mdns.TypeCNAME]; len(old) == 1 && sameRdata(old[0], c) && old[0].Header().Ttl == ch.Ttl {
			return false, false
		}
		node[mdns.TypeCNAME] = []mdns.RR{c}
		return true, false
	case mdns.TypeSOA:
		old := node[mdns.TypeSOA]
		if name != z.origin || len(old) == 0 {
			return false, false
		}
		if !serialGreater(c.(*mdns.SOA).Serial, old[0].(*mdns.SOA).Serial) {
			return false, false
		}
		node[mdns.TypeSOA] = []mdns.RR{c}
		return true, true
	}
	if len(node[mdns.TypeCNAME]) > 0 {
		return false, false
	}
	old := node[h.Rrtype]
	next := make([]mdns.RR, 0, len(old)+1)
	found := false
	for _, o := range old {
		if sameRdata(o, c) {
			found = true
			if o.Header().Ttl == ch.Ttl {
				next = append(next, o)
			} else {
				next = append(next, c)
				changed = true
			}
			continue
		}
		if o.Header().Ttl != ch.Ttl {
			o = mdns.Copy(o)
			o.Header().Ttl = ch.Ttl
			changed = true
		}
		next = append(next, o)
	}
	if !found {
		next = append(next, c)
		changed = true
	}
	node[h.Rrtype] = next
	return changed, false
}

// serialGreater compares SOA serials with RFC 1982 arithmetic.
func serialGreater(a, b uint32) bool {
	return a != b && int32(a-b) > 0
}

// bumpSerial replaces the SOA with one whose serial is one higher.
func (z *zone) bumpSerial() {
	soa := z.soa()
	if soa == nil {
		return
	}
	c := mdns.Copy(soa).(*mdns.SOA)
	c.Serial++
	z.nodes[z.origin][mdns.TypeSOA] = []mdns.RR{c}
}

// load builds a zone from configured records, rejecting what RFC 2136 would
// silently ignore, so that a mistake in a test or demo is seen at once.
func load(origin string, records []mdns.RR) (*zone, error) {
	z := newZone(origin)
	for i, rr := range records {
		if rr == nil {
			return nil, fmt.Errorf("records[%d]: nil record: %w", i, ErrInvalidConfig)
		}
		h := rr.Header()
		name := mdns.CanonicalName(h.Name)
		switch {
		case !z.inZone(name):
			return nil, fmt.Errorf("records[%d]: %s is outside zone %s: %w", i, name, origin, ErrInvalidConfig)
		case h.Class != mdns.ClassINET && h.Class != 0:
			return nil, fmt.Errorf("records[%d]: class %s, want IN: %w", i, mdns.Class(h.Class), ErrInvalidConfig)
		case isMeta(h.Rrtype):
			return nil, fmt.Errorf("records[%d]: type %s cannot be stored: %w", i, mdns.Type(h.Rrtype), ErrInvalidConfig)
		case h.Rrtype == mdns.TypeSOA && (name != origin || z.soa() != nil):
			return nil, fmt.Errorf("records[%d]: one SOA at the apex only: %w", i, ErrInvalidConfig)
		case h.Rrtype == mdns.TypeCNAME && z.nameExists(name),
			h.Rrtype != mdns.TypeCNAME && len(z.rrset(name, mdns.TypeCNAME)) > 0:
			return nil, fmt.Errorf("records[%d]: CNAME and other data at %s: %w", i, name, ErrInvalidConfig)
		}
		z.put(rr)
	}
	if z.soa() == nil {
		z.put(&mdns.SOA{
			Hdr:     mdns.RR_Header{Name: origin, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: 3600},
			Ns:      "ns." + origin,
			Mbox:    "hostmaster." + origin,
			Serial:  1,
			Refresh: 3600,
			Retry:   600,
			Expire:  86400,
			Minttl:  60,
		})
	}
	if len(z.rrset(origin, mdns.TypeNS)) == 0 {
		z.put(&mdns.NS{
			Hdr: mdns.RR_Header{Name: origin, Rrtype: mdns.TypeNS, Class: mdns.ClassINET, Ttl: 3600},
			Ns:  "ns." + origin,
		})
	}
	return z, nil
}
