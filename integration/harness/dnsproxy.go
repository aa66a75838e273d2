package harness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// natChain holds, in a site's namespace, the rule that sends its DNS
// traffic through the harness's proxy.
const natChain = "WH-NAT"

// UpdateHold is a TCP proxy in front of BIND, on the host's link, that
// passes queries at once and holds every dynamic update until Release:
// it stands for the moment a witness has read the fence and sent its
// update, but the update has not reached the server yet.
type UpdateHold struct {
	l      net.Listener
	server string
	held   chan struct{} // closed when the first update is held
	once   sync.Once
	mu     sync.Mutex
	open   bool
	wait   chan struct{} // closed by Release
	conns  []net.Conn
	wg     sync.WaitGroup
}

// HoldUpdates routes site's DNS traffic to BIND through a new UpdateHold.
func (e *Env) HoldUpdates(site string) (*UpdateHold, error) {
	l, err := net.Listen("tcp", hostIP+":0")
	if err != nil {
		return nil, err
	}
	h := &UpdateHold{l: l, server: siteAddr["dns"] + ":53", held: make(chan struct{}), wait: make(chan struct{}), open: true}
	h.wg.Add(1)
	go h.serve()
	ns := netnsName(site)
	if err := inNS(ns, "iptables", "-w", "-t", "nat", "-N", natChain); err != nil && !strings.Contains(err.Error(), "exists") {
		h.Close()
		return nil, err
	}
	rules := [][]string{
		{"-t", "nat", "-A", natChain, "-p", "tcp", "-d", siteAddr["dns"], "--dport", "53", "-j", "DNAT", "--to-destination", l.Addr().String()},
		{"-t", "nat", "-I", "OUTPUT", "-j", natChain},
	}
	for _, r := range rules {
		if err := inNS(ns, append([]string{"iptables", "-w"}, r...)...); err != nil {
			h.Close()
			return nil, err
		}
	}
	e.closers = append(e.closers, func() error {
		h.Close()
		_ = inNS(ns, "iptables", "-w", "-t", "nat", "-D", "OUTPUT", "-j", natChain)
		_ = inNS(ns, "iptables", "-w", "-t", "nat", "-F", natChain)
		return nil
	})
	return h, nil
}

// Held is closed once an update is being held.
func (h *UpdateHold) Held() <-chan struct{} { return h.held }

// Release lets the held updates (and any later ones) through.
func (h *UpdateHold) Release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.open {
		h.open = false
		close(h.wait)
	}
}

// Close releases everything and stops the proxy.
func (h *UpdateHold) Close() {
	h.Release()
	h.l.Close()
	h.mu.Lock()
	for _, c := range h.conns {
		c.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

func (h *UpdateHold) serve() {
	defer h.wg.Done()
	for {
		c, err := h.l.Accept()
		if err != nil {
			return
		}
		s, err := net.DialTimeout("tcp", h.server, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		h.mu.Lock()
		h.conns = append(h.conns, c, s)
		h.mu.Unlock()
		h.wg.Add(2)
		go func() {
			defer h.wg.Done()
			_, _ = io.Copy(c, s)
			c.Close()
		}()
		go func() {
			defer h.wg.Done()
			defer s.Close()
			_ = h.forward(c, s)
		}()
	}
}

// forward copies DNS-over-TCP messages from c to s, holding updates.
func (h *UpdateHold) forward(c, s net.Conn) error {
	var size [2]byte
	for {
		if _, err := io.ReadFull(c, size[:]); err != nil {
			return err
		}
		msg := make([]byte, binary.BigEndian.Uint16(size[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return err
		}
		if len(msg) < 4 {
			return errors.New("short DNS message")
		}
		if opcode := int(msg[2]>>3) & 0xf; opcode == mdns.OpcodeUpdate {
			h.once.Do(func() { close(h.held) })
			<-h.wait
		}
		if _, err := s.Write(append(size[:], msg...)); err != nil {
			return fmt.Errorf("to the server: %w", err)
		}
	}
}
