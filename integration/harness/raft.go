package harness

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// raftPort is every witness's Raft port.
const raftPort = "7300"

// raftChain holds, in a site's namespace, the Raft faults: a filter chain
// hooked into INPUT and a nat chain of the same name hooked into
// PREROUTING. Flushing both (HealRaft) removes them.
const raftChain = "WH-RAFT"

func (e *Env) ensureRaftChains(site string) error {
	ns := netnsName(site)
	for _, c := range []struct{ table, hook string }{{"filter", "INPUT"}, {"nat", "PREROUTING"}} {
		if err := inNS(ns, "iptables", "-w", "-t", c.table, "-N", raftChain); err != nil && !strings.Contains(err.Error(), "exists") {
			return err
		}
		if inNS(ns, "iptables", "-w", "-t", c.table, "-C", c.hook, "-j", raftChain) != nil {
			if err := inNS(ns, "iptables", "-w", "-t", c.table, "-I", c.hook, "-j", raftChain); err != nil {
				return err
			}
		}
	}
	if e.raftFaults == nil {
		e.raftFaults = map[string]bool{}
	}
	e.raftFaults[site] = true
	return nil
}

// DropRaft drops every packet that other witnesses send to site's witness
// on its Raft port: the leader's AppendEntries and heartbeats alike, and
// other candidates' vote requests. Site's witness can still ask for votes
// (its own connections out, and their answers, pass), and gossip, probes,
// DNS and the databases are not touched. HealRaft or Heal undoes it.
func (e *Env) DropRaft(site string) error {
	if err := e.ensureRaftChains(site); err != nil {
		return err
	}
	addr := siteAddr[site]
	return inNS(netnsName(site), "iptables", "-w", "-A", raftChain,
		"-p", "tcp", "-d", addr, "--dport", raftPort, "!", "-s", addr, "-j", "DROP")
}

// DelayRaft delays by d every byte that other witnesses send to site's
// witness on its Raft port (AppendEntries, heartbeats, vote requests);
// what site's witness sends back is not delayed, and order within a
// connection is kept. Heartbeats and entries share those connections, so
// both are held back alike. Called again, it changes d for the bytes that
// arrive from then on. HealRaft or Heal undoes it.
//
// This machine's kernel has no netem, so a TCP proxy inside the site's
// namespace does the delaying: new connections to the Raft port are
// redirected to it (DNAT), and connections already open are reset, so
// that Raft reconnects through it.
func (e *Env) DelayRaft(site string, d time.Duration) error {
	if p := e.raftDelays[site]; p != nil {
		p.delay.Store(int64(d))
		return nil
	}
	if err := e.ensureRaftChains(site); err != nil {
		return err
	}
	ns, addr := netnsName(site), siteAddr[site]
	p, err := startRaftDelay(ns, addr, d)
	if err != nil {
		return err
	}
	if e.raftDelays == nil {
		e.raftDelays = map[string]*raftDelay{}
	}
	e.raftDelays[site] = p
	e.closers = append(e.closers, func() error { p.close(); return nil })
	rules := [][]string{
		{"-t", "nat", "-A", raftChain, "-p", "tcp", "-d", addr, "--dport", raftPort, "!", "-s", addr,
			"-j", "DNAT", "--to-destination", p.l.Addr().String()},
		// A packet that still reaches the Raft port from elsewhere belongs
		// to a connection opened before the redirect.
		{"-t", "filter", "-A", raftChain, "-p", "tcp", "-d", addr, "--dport", raftPort, "!", "-s", addr,
			"-j", "REJECT", "--reject-with", "tcp-reset"},
	}
	for _, r := range rules {
		if err := inNS(ns, append([]string{"iptables", "-w"}, r...)...); err != nil {
			return err
		}
	}
	return nil
}

// HealRaft removes site's Raft faults (DropRaft, DelayRaft); cuts and
// every other fault stay.
func (e *Env) HealRaft(site string) error {
	if !e.raftFaults[site] {
		return nil
	}
	var errs []error
	ns := netnsName(site)
	for _, table := range []string{"filter", "nat"} {
		if err := inNS(ns, "iptables", "-w", "-t", table, "-F", raftChain); err != nil {
			errs = append(errs, err)
		}
	}
	if p := e.raftDelays[site]; p != nil {
		p.close()
		delete(e.raftDelays, site)
	}
	if len(errs) > 0 {
		return fmt.Errorf("heal raft at %s: %w", site, errs[0])
	}
	delete(e.raftFaults, site)
	return nil
}

// raftDelay is the proxy behind DelayRaft: it listens in a site's
// namespace and forwards each connection to the site's Raft port, every
// chunk read from the client written on only when delay has passed since
// it arrived.
type raftDelay struct {
	l      net.Listener
	ns     string
	addr   string // the site's address; the Raft port's host
	delay  atomic.Int64
	stop   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func startRaftDelay(ns, addr string, d time.Duration) (*raftDelay, error) {
	l, err := listenIn(ns, net.JoinHostPort(addr, "0"))
	if err != nil {
		return nil, err
	}
	p := &raftDelay{l: l, ns: ns, addr: addr, stop: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	p.delay.Store(int64(d))
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.serve()
	}()
	return p, nil
}

func (p *raftDelay) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

// track records conns for close; false once the proxy is closed.
func (p *raftDelay) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *raftDelay) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		delete(p.conns, c)
	}
}

func (p *raftDelay) handle(c net.Conn) {
	defer c.Close()
	// From the site's own address, so that the reset rule lets it pass.
	var s net.Conn
	err := inNamespace(p.ns, func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(p.addr)}}
		s, err = d.Dial("tcp", net.JoinHostPort(p.addr, raftPort))
		return err
	})
	if err != nil {
		return
	}
	defer s.Close()
	if !p.track(c, s) {
		return
	}
	defer p.untrack(c, s)
	answers := make(chan struct{})
	go func() { // ended by closing c and s below
		defer close(answers)
		_, _ = io.Copy(c, s)
		c.Close()
	}()
	p.forward(s, c)
	s.Close()
	c.Close()
	<-answers
}

type chunk struct {
	b  []byte
	at time.Time
}

// forward copies src to dst, each chunk delay after it was read.
func (p *raftDelay) forward(dst, src net.Conn) {
	chunks := make(chan chunk, 1024)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case chunks <- chunk{b: buf[:n], at: time.Now()}:
				case <-quit:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer wg.Wait()
	defer src.Close() // ends the reader
	defer close(quit)
	for c := range chunks {
		t := time.NewTimer(time.Until(c.at.Add(time.Duration(p.delay.Load()))))
		select {
		case <-t.C:
		case <-p.stop:
			t.Stop()
			return
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

// close stops the proxy and ends its connections; Raft reconnects
// directly once the redirect is gone.
func (p *raftDelay) close() {
	p.once.Do(func() {
		close(p.stop)
		p.l.Close()
		p.mu.Lock()
		p.closed = true
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
}
