package cluster

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/sitewitness/witness/policy"
	"github.com/sitewitness/witness/probes"
)

// gossipPair is a sender whose broadcasts a test takes one by one, and a
// receiver that a test hands them to in any order.
type gossipPair struct {
	t        *testing.T
	from, to *observations
	t0       time.Time
	asked    []string // witnesses the receiver asked to sync with
}

func newGossipPair(t *testing.T) *gossipPair {
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := &gossipPair{t: t, t0: time.Unix(1000, 0)}
	p.from = newObservations("west-1", "west", discard)
	p.from.inc = 1
	p.from.queue = &memberlist.TransmitLimitedQueue{RetransmitMult: 1, NumNodes: func() int { return 1 }}
	p.to = newObservations("east-1", "east", discard)
	p.to.resync = func(node string) { p.asked = append(p.asked, node) }
	return p
}

// change records one of the sender's observations at t0+at.
func (p *gossipPair) change(group string, state probes.State, at time.Duration) {
	p.from.local(probes.Observation{Group: group, Site: "east", Name: "0-tcp", State: state, Since: p.t0, CheckedAt: p.t0.Add(at)})
}

// send flushes the sender's changes and returns the message gossip would
// carry.
func (p *gossipPair) send() []byte {
	p.t.Helper()
	p.from.flush(1400)
	got := p.from.queue.GetBroadcasts(0, 1400)
	if len(got) != 1 {
		p.t.Fatalf("%d broadcasts queued, want 1", len(got))
	}
	return got[0]
}

// beat hands the receiver the sender's heartbeat vouching for t0+at.
func (p *gossipPair) beat(at time.Duration) {
	p.from.mu.Lock()
	ver := p.from.sentVer
	p.from.mu.Unlock()
	p.to.merge(msg(p.t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Inc: 1, Ver: ver, Beat: true, FreshAt: p.t0.Add(at).UnixNano()}))
}

// vouched is how many of the sender's observations the receiver holds as
// checked at t0+at, that is refreshed by the heartbeat of at.
func (p *gossipPair) vouched(at time.Duration) int {
	n := 0
	for _, o := range p.to.snapshot() {
		if o.Observer == "west-1" && o.CheckedAt.Equal(p.t0.Add(at)) {
			n++
		}
	}
	return n
}

// TestDeltasOutOfOrderKeepTheCopyInSync: memberlist sends its least-sent
// broadcasts first, so a new delta overtakes the retransmission of the one
// before it. The receiver takes both, and the sender's next heartbeat
// vouches for its observations: they do not go stale for want of a full
// sync that may be many seconds away.
func TestDeltasOutOfOrderKeepTheCopyInSync(t *testing.T) {
	p := newGossipPair(t)
	p.change("app", probes.StateHealthy, 0)
	p.to.merge(p.send())
	p.change("app", probes.StateFailing, time.Second)
	second := p.send()
	p.change("db", probes.StateFailing, time.Second)
	third := p.send()

	p.to.merge(third)
	p.to.merge(second)
	p.beat(2 * time.Second)
	if got := p.vouched(2 * time.Second); got != 2 {
		t.Fatalf("%d of 2 observations vouched for by the heartbeat after deltas out of order", got)
	}
	for _, o := range p.to.snapshot() {
		if o.Group == "app" && o.State != policy.Failing {
			t.Errorf("app is %v at the receiver, want failing (the later delta)", o.State)
		}
	}
	if len(p.asked) != 0 {
		t.Errorf("asked for a sync with %v, nothing was lost", p.asked)
	}
}

// TestDroppedProbeLeavesNoGap: dropping a probe changes the sender's
// version without an observation to send. The next delta covers that
// version too, so the receiver does not wait for one that never comes.
func TestDroppedProbeLeavesNoGap(t *testing.T) {
	p := newGossipPair(t)
	p.change("app", probes.StateHealthy, 0)
	p.change("old", probes.StateHealthy, 0)
	p.to.merge(p.send())
	p.from.setTargets([]probes.Target{{Group: "app", Site: "east", Name: "0-tcp"}})
	p.change("app", probes.StateFailing, time.Second)
	p.to.merge(p.send())
	p.beat(2 * time.Second)
	if got := p.vouched(2 * time.Second); got == 0 {
		t.Fatal("after a dropped probe the receiver lost sync: no observation vouched for by the heartbeat")
	}
}

// TestLostDeltaAsksForASync: a delta that never arrives leaves the
// receiver behind; its observations go stale, and once two heartbeats in
// a row find it behind it asks the sender for a sync, which repairs it.
func TestLostDeltaAsksForASync(t *testing.T) {
	p := newGossipPair(t)
	p.change("app", probes.StateHealthy, 0)
	p.to.merge(p.send())
	p.change("app", probes.StateFailing, time.Second)
	_ = p.send() // lost
	p.change("db", probes.StateFailing, time.Second)
	p.to.merge(p.send())

	p.beat(2 * time.Second)
	if got := p.vouched(2 * time.Second); got != 0 {
		t.Fatalf("%d observations vouched for while a delta is missing", got)
	}
	if len(p.asked) != 0 {
		t.Fatalf("asked for a sync after one heartbeat: %v (the delta may only be late)", p.asked)
	}
	p.beat(3 * time.Second)
	if len(p.asked) != 1 || p.asked[0] != "west-1" {
		t.Fatalf("asked for a sync with %v after two heartbeats behind, want [west-1]", p.asked)
	}
	p.to.merge(p.from.full())
	p.beat(4 * time.Second)
	if got := p.vouched(4 * time.Second); got != 2 {
		t.Fatalf("%d of 2 observations vouched for after the full sync", got)
	}
}

// TestFullSyncOlderThanADeltaDoesNotVouchForIt: a delta beyond a gap is
// applied, then a full state made before that delta replaces the copy.
// The delta's change is gone from the copy, so the sender's heartbeat
// must not vouch for it as if it were held.
func TestFullSyncOlderThanADeltaDoesNotVouchForIt(t *testing.T) {
	p := newGossipPair(t)
	p.change("app", probes.StateHealthy, 0)
	p.to.merge(p.send())
	p.change("db", probes.StateHealthy, 0)
	_ = p.send() // late
	full := p.from.full()
	p.change("app", probes.StateFailing, time.Second)
	p.to.merge(p.send())
	p.to.merge(full)
	p.beat(2 * time.Second)
	for _, o := range p.to.snapshot() {
		if o.Group == "app" && o.CheckedAt.Equal(p.t0.Add(2*time.Second)) {
			t.Fatalf("app held %v and vouched for, but the sender sees it failing", o.State)
		}
	}
}
