package harness

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
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
// namespaces; each still reaches every other site (Cut("east", "west")
// leaves both in contact with tiebreak and DNS). The host keeps its link
// to both. Uncut undoes it.
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

// Uncut lets traffic between sites a and b through again, however many
// times Cut or Isolate dropped it; every other fault stays (a Raft delay,
// other sites' cuts).
func (e *Env) Uncut(a, b string) error {
	for _, pair := range [][2]string{{a, b}, {b, a}} {
		ns, peer := netnsName(pair[0]), siteAddr[pair[1]]
		for _, dir := range []string{"-s", "-d"} {
			rule := []string{faultChain, dir, peer, "-j", "DROP"}
			for inNS(ns, append([]string{"iptables", "-w", "-C"}, rule...)...) == nil {
				if err := inNS(ns, append([]string{"iptables", "-w", "-D"}, rule...)...); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Reconnect undoes Isolate: site reaches every other site again, while
// its Raft faults stay. With DelayRaft or DropRaft set first, the link
// comes back with log replication to site still held back.
func (e *Env) Reconnect(site string) error {
	for _, other := range e.otherSites(site) {
		if err := e.Uncut(site, other); err != nil {
			return err
		}
	}
	return nil
}

// Freeze stops w's process with SIGSTOP, as a VM pause or a long GC
// would: it keeps its sockets and state and does nothing until Thaw. The
// harness's Leader skips a frozen witness; Close resumes it to stop it.
//
// It returns once every process of the witness's process group is
// stopped: SIGSTOP is delivered asynchronously, and on a loaded machine a
// witness can still answer a call for a moment after the signal was sent.
func (w *Witness) Freeze() error {
	if err := w.Proc.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	return waitStopped(w.Proc.Pid(), 5*time.Second)
}

// waitStopped waits until every process in process group pgid is in the
// stopped state (T in /proc/PID/stat).
func waitStopped(pgid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		running, err := groupRunning(pgid)
		if err != nil || running == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process group %d: %d processes not stopped %s after SIGSTOP", pgid, running, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// groupRunning counts the processes of group pgid that are not stopped.
func groupRunning(pgid int) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
		rest := string(b[bytes.LastIndexByte(b, ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 3 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		switch f[0] {
		case "T", "t", "Z", "X": // stopped, or exited
		default:
			n++
		}
	}
	return n, nil
}

// Thaw resumes a frozen witness (SIGCONT).
func (w *Witness) Thaw() error { return w.Proc.Signal(syscall.SIGCONT) }

// KillSite SIGKILLs every process of site that the harness runs (its
// witnesses and its database), as a watchdog that resets the site's host
// would; a test's stand-in for a hardware watchdog, which must never be
// loaded on a test machine. The site's network, faults and HTTP service
// stay (ServiceDown takes the service down). Start them again with
// Proc.Start and Postgres.Start.
func (e *Env) KillSite(site string) error {
	var errs []error
	for _, w := range e.Witnesses {
		if w.Site == site {
			if err := w.Proc.Kill(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if pg := e.PG[site]; pg != nil {
		if err := pg.Kill(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Heal removes every fault of every site: cuts and Raft faults.
func (e *Env) Heal() error {
	for s := range e.raftFaults {
		if err := e.HealRaft(s); err != nil {
			return err
		}
	}
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

// CanReach reports whether a TCP connection from site from to port on
// site to opens within two seconds: a check that a fault cuts what it
// should and no more.
func (e *Env) CanReach(from, to, port string) bool {
	c, err := dialIn(netnsName(from), net.JoinHostPort(siteAddr[to], port), 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
