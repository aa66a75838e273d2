package harness

import (
	"fmt"
	"slices"
	"strings"
)

// faultChain is the iptables chain, in every site's namespace, that holds
// the harness's faults; flushing it heals the site.
const faultChain = "WH-FAULT"

func (e *Env) ensureChain(site string) error {
	ns := netnsName(site)
	if err := inNS(ns, "iptables", "-w", "-N", faultChain); err != nil && !strings.Contains(err.Error(), "exists") {
		return err
	}
	for _, hook := range []string{"INPUT", "OUTPUT"} {
		if inNS(ns, "iptables", "-w", "-C", hook, "-j", faultChain) != nil {
			if err := inNS(ns, "iptables", "-w", "-I", hook, "-j", faultChain); err != nil {
				return err
			}
		}
	}
	return nil
}

// Cut drops all traffic between sites a and b, both ways, in both
// namespaces. The host keeps its link to both.
func (e *Env) Cut(a, b string) error {
	for _, pair := range [][2]string{{a, b}, {b, a}} {
		if err := e.ensureChain(pair[0]); err != nil {
			return err
		}
		peer := siteAddr[pair[1]]
		ns := netnsName(pair[0])
		if err := inNS(ns, "iptables", "-w", "-A", faultChain, "-s", peer, "-j", "DROP"); err != nil {
			return err
		}
		if err := inNS(ns, "iptables", "-w", "-A", faultChain, "-d", peer, "-j", "DROP"); err != nil {
			return err
		}
	}
	return nil
}

// Isolate cuts site from every other site (DNS included).
func (e *Env) Isolate(site string) error {
	for _, other := range e.otherSites(site) {
		if err := e.Cut(site, other); err != nil {
			return err
		}
	}
	return nil
}

// Heal removes every fault of every site.
func (e *Env) Heal() error {
	for s := range siteAddr {
		if err := e.ensureChain(s); err != nil {
			return err
		}
		if err := inNS(netnsName(s), "iptables", "-w", "-F", faultChain); err != nil {
			return err
		}
	}
	return nil
}

func (e *Env) otherSites(site string) []string {
	var out []string
	for s := range siteAddr {
		if s != site {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// ServiceDown makes site's HTTP service answer 503 (down true) or 200.
func (e *Env) ServiceDown(site string, down bool) error {
	s, ok := e.services[site]
	if !ok {
		return fmt.Errorf("no service at %s", site)
	}
	s.down.Store(down)
	return nil
}

// Addr is a site's address on the bridge.
func Addr(site string) string { return siteAddr[site] }

// RecordValue is the record's answer for site.
func RecordValue(site string) string { return recordValue[site] }
