package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/sitewitness/witness/cluster/clustertest"
	"github.com/sitewitness/witness/config"
)

// A witness whose peers never answer stops without waiting for Raft's 5 s
// transport timeout or gossip's join timeout: its dials and connections end
// with Close.
func TestCloseDoesNotWaitForSilentPeers(t *testing.T) {
	checkLeaks(t)
	c := nodeConfig(t, "east-1", "east")
	c.InitialVoters = []config.Voter{{Name: c.Name, RaftAddr: c.RaftAddr, GossipAddr: c.GossipAddr}}
	var raftPeers []*clustertest.Silent
	for _, name := range []string{"west-1", "tiebreak-1"} {
		r, g := clustertest.NewSilent(t), clustertest.NewSilent(t)
		raftPeers = append(raftPeers, r)
		c.InitialVoters = append(c.InitialVoters, config.Voter{Name: name, RaftAddr: r.Addr(), GossipAddr: g.Addr()})
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
		case <-p.Heard():
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
