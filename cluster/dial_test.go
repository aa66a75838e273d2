package cluster

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sitewitness/witness/config"
)

// silentPeer accepts connections and reads what it is sent but never
// answers, like a peer behind a firewall that lets the handshake through:
// every request to it waits for the caller's own timeout.
type silentPeer struct {
	lis   net.Listener
	mu    sync.Mutex
	conns []net.Conn
	heard chan struct{} // closed at the first byte received
	once  sync.Once
	wg    sync.WaitGroup
}

func newSilentPeer(t *testing.T) *silentPeer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silentPeer{lis: lis, heard: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					p.once.Do(func() { close(p.heard) })
				}
			}()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *silentPeer) addr() string { return p.lis.Addr().String() }

// A witness whose peers never answer stops without waiting for Raft's 5 s
// transport timeout or gossip's join timeout: its dials and connections end
// with Close.
func TestCloseDoesNotWaitForSilentPeers(t *testing.T) {
	checkLeaks(t)
	c := nodeConfig(t, "east-1", "east")
	c.InitialVoters = []config.Voter{{Name: c.Name, RaftAddr: c.RaftAddr, GossipAddr: c.GossipAddr}}
	var raftPeers []*silentPeer
	for _, name := range []string{"west-1", "tiebreak-1"} {
		r, g := newSilentPeer(t), newSilentPeer(t)
		raftPeers = append(raftPeers, r)
		c.InitialVoters = append(c.InitialVoters, config.Voter{Name: name, RaftAddr: r.addr(), GossipAddr: g.addr()})
	}
	n, err := Start(context.Background(), Options{Config: c, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// Wait until a vote request is on its way to each silent peer: Raft
	// now waits for answers that do not come.
	for _, p := range raftPeers {
		select {
		case <-p.heard:
		case <-time.After(20 * time.Second):
			t.Fatal("no vote request reached a silent peer")
		}
	}
	began := time.Now()
	if err := n.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	// Without cancellable dials Close waits for the transport's 5 s I/O
	// timeout of the requests in flight.
	if took := time.Since(began); took > 2500*time.Millisecond {
		t.Errorf("Close took %s with silent peers; it must not wait for network timeouts", took)
	}
}
