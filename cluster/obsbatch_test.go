package cluster

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/sitewitness/witness/policy"
	"github.com/sitewitness/witness/probes"
)

// TestSiteOutageGossipsInOneBatch: a thousand groups' observations that
// change at once go out as one batched delta (over TCP when too large for
// a gossip packet), not a message each; a peer that applies it stays in
// sync, so the next heartbeat vouches for every one of them.
func TestSiteOutageGossipsInOneBatch(t *testing.T) {
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	west := newObservations("west-1", "west", discard)
	west.queue = &memberlist.TransmitLimitedQueue{RetransmitMult: 3, NumNodes: func() int { return 3 }}
	var sent [][]byte
	west.reliable = func(b []byte) { sent = append(sent, b) }
	peer := newObservations("tiebreak-1", "tiebreak", discard)
	t0 := time.Unix(1000, 0)
	const n = 1000
	for i := range n {
		west.local(probes.Observation{Group: fmt.Sprintf("svc-%04d", i), Site: "east", Name: "0-tcp", State: probes.StateHealthy, Since: t0, CheckedAt: t0})
	}
	west.flush(1400)
	peer.merge(west.full())
	for i := range n {
		west.local(probes.Observation{Group: fmt.Sprintf("svc-%04d", i), Site: "east", Name: "0-tcp", State: probes.StateFailing, Since: t0.Add(time.Second), CheckedAt: t0.Add(time.Second)})
	}
	sent, before := nil, west.queue.NumQueued()
	west.flush(1400)
	if len(sent) != 1 || west.queue.NumQueued() != before {
		t.Fatalf("%d changes sent as %d TCP batches and %d gossip messages, want one batch", n, len(sent), west.queue.NumQueued()-before)
	}
	peer.merge(sent[0])
	west.mu.Lock()
	beat := obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: west.sentVer, Beat: true, FreshAt: t0.Add(2 * time.Second).UnixNano()}
	west.mu.Unlock()
	peer.merge(encodeObs(beat))
	failing := 0
	for _, o := range peer.snapshot() {
		if o.Observer == "west-1" && o.State == policy.Failing && o.CheckedAt.Equal(t0.Add(2*time.Second)) {
			failing++
		}
	}
	if failing != n {
		t.Errorf("the peer holds %d of %d groups failing and vouched for by the heartbeat", failing, n)
	}

	// A few changes fit in one gossip packet.
	west.local(probes.Observation{Group: "svc-0000", Site: "east", Name: "0-tcp", State: probes.StateHealthy, Since: t0.Add(3 * time.Second), CheckedAt: t0.Add(3 * time.Second)})
	west.local(probes.Observation{Group: "svc-0001", Site: "east", Name: "0-tcp", State: probes.StateHealthy, Since: t0.Add(3 * time.Second), CheckedAt: t0.Add(3 * time.Second)})
	sent, before = nil, west.queue.NumQueued()
	west.flush(1400)
	if len(sent) != 0 || west.queue.NumQueued() != before+1 {
		t.Errorf("two changes: %d TCP batches, %d gossip messages; want one gossip message", len(sent), west.queue.NumQueued()-before)
	}
}
