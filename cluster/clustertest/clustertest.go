// Package clustertest holds loopback network helpers for tests: free
// ports for witnesses, and peers that never answer. It depends on nothing
// of Witness, so any package's tests may use it.
package clustertest

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

// FreeAddr returns a 127.0.0.1 address whose port is free for both TCP and
// UDP at the time of the call (memberlist binds both on one port). The
// port is drawn below Linux's default ephemeral range (32768-60999): a
// port that the kernel picked for ":0" is free again once closed, and
// until the caller binds it, any outgoing connection on the machine (a
// database client, a gRPC dial, another test package) may be given it.
// Ports below the range are taken only by an explicit bind. A port is
// handed out once per process.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 200 {
		port := lowPortMin + rand.IntN(lowPortMax-lowPortMin)
		handedMu.Lock()
		taken := handed[port]
		handed[port] = true
		handedMu.Unlock()
		if taken {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return addr
	}
	t.Fatal("no free loopback port for TCP and UDP")
	return ""
}

// The ports FreeAddr draws from: below the ephemeral range.
const (
	lowPortMin = 20000
	lowPortMax = 32768
)

var (
	handedMu sync.Mutex
	handed   = map[int]bool{}
)

// Silent is a TCP server on loopback that accepts connections and reads
// what it is sent but never answers, like a peer behind a firewall that
// lets the handshake through or a host whose service hangs: every request
// to it waits for the caller's own timeout.
type Silent struct {
	lis   net.Listener
	heard chan struct{}
	once  sync.Once
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

// NewSilent starts a Silent server, stopped when the test ends.
func NewSilent(t testing.TB) *Silent {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Silent{lis: lis, heard: make(chan struct{})}
	s.wg.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Go(func() {
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					s.once.Do(func() { close(s.heard) })
				}
			})
		}
	})
	t.Cleanup(func() {
		lis.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// Addr is the server's address.
func (s *Silent) Addr() string { return s.lis.Addr().String() }

// Heard is closed when the first byte arrives.
func (s *Silent) Heard() <-chan struct{} { return s.heard }
