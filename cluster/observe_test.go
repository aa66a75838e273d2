package cluster

import (
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/memberlist"

	"github.com/sitewitness/witness/clock"
	"github.com/sitewitness/witness/policy"
	"github.com/sitewitness/witness/probes"
)

func msg(t *testing.T, m obsMsg) []byte {
	t.Helper()
	return encodeObs(m)
}

func TestObservationGossip(t *testing.T) {
	s := newObservations("tiebreak-1", "tiebreak", slog.New(slog.NewTextHandler(io.Discard, nil)))
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) int64 { return t0.Add(d).UnixNano() }
	checked := func() map[string]time.Time {
		out := map[string]time.Time{}
		for _, o := range s.snapshot() {
			out[o.Observer+" "+o.State.String()] = o.CheckedAt
		}
		return out
	}

	// Garbage, another version, and our own echo are ignored.
	s.merge([]byte("{not json"))
	s.merge(msg(t, obsMsg{V: gossipVersion + 1, Node: "east-1", Site: "east", Ver: 1, Obs: []wireObs{{Group: "app", Site: "east", State: uint8(policy.Failing), At: at(0)}}}))
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "tiebreak-1", Site: "tiebreak", Ver: 9, Obs: []wireObs{{Group: "app", Site: "east", State: uint8(policy.Failing), At: at(0)}}}))
	if got := s.snapshot(); len(got) != 0 {
		t.Fatalf("ignored messages left observations: %v", got)
	}

	// A full state, then a heartbeat at the same version refreshes it.
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 3, Full: true, Obs: []wireObs{{Group: "app", Site: "east", State: uint8(policy.Healthy), At: at(0)}}}))
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 3, Beat: true, FreshAt: at(5 * time.Second)}))
	if got := checked()["west-1 healthy"]; !got.Equal(t0.Add(5 * time.Second)) {
		t.Fatalf("heartbeat did not refresh: checked at %v", got)
	}

	// A missed delta (version 4 lost, 5 arrives): the copy is out of sync,
	// so heartbeats no longer vouch for it and it goes stale.
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 5, Obs: []wireObs{{Group: "app", Site: "east", State: uint8(policy.Failing), At: at(6 * time.Second)}}}))
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 5, Beat: true, FreshAt: at(20 * time.Second)}))
	if got := checked()["west-1 failing"]; !got.Equal(t0.Add(6 * time.Second)) {
		t.Fatalf("out-of-sync copy refreshed by a heartbeat: checked at %v", got)
	}
	// The next full sync repairs it.
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 5, Full: true, Obs: []wireObs{{Group: "app", Site: "east", State: uint8(policy.Failing), At: at(21 * time.Second)}}}))
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 5, Beat: true, FreshAt: at(22 * time.Second)}))
	if got := checked()["west-1 failing"]; !got.Equal(t0.Add(22 * time.Second)) {
		t.Fatalf("after full sync: checked at %v", got)
	}
}

// A site is reported recovered when an observation of it, this witness's
// or one gossiped by another, turns healthy after it was not; not when it
// is first seen, nor when it stays healthy.
func TestRecoveredSitesAreReported(t *testing.T) {
	s := newObservations("west-1", "west", slog.New(slog.NewTextHandler(io.Discard, nil)))
	var got []string
	s.recovered = func(site string) { got = append(got, site) }
	t0 := time.Unix(1000, 0)
	local := func(site string, st probes.State, d time.Duration) {
		s.local(probes.Observation{Group: "app", Site: site, Name: "db", Kind: probes.KindPostgres, State: st, Since: t0, CheckedAt: t0.Add(d)})
	}
	remote := func(ver uint64, full bool, st policy.State, d time.Duration) {
		s.merge(msg(t, obsMsg{V: gossipVersion, Node: "tiebreak-1", Site: "tiebreak", Ver: ver, Full: full,
			Obs: []wireObs{{Group: "app", Site: "east", Probe: "web", State: uint8(st), At: t0.Add(d).UnixNano()}}}))
	}

	local("east", probes.StateHealthy, 0) // first seen
	local("east", probes.StateFailing, time.Second)
	local("east", probes.StateFailing, 2*time.Second)
	remote(1, true, policy.Healthy, 0) // first seen
	remote(2, false, policy.Failing, time.Second)
	if len(got) != 0 {
		t.Fatalf("reported %v before anything recovered", got)
	}
	local("east", probes.StateHealthy, 3*time.Second)
	local("east", probes.StateHealthy, 4*time.Second)
	remote(3, false, policy.Healthy, 3*time.Second)
	remote(3, true, policy.Healthy, 4*time.Second) // a full sync that changes nothing
	remote(4, false, policy.Failing, 5*time.Second)
	remote(4, true, policy.Healthy, 6*time.Second) // recovery seen only in a full sync
	if want := []string{"east", "east", "east"}; !slices.Equal(got, want) {
		t.Errorf("recovered %v, want %v (local, delta, full sync)", got, want)
	}
}

// A restarted witness numbers its changes from 0 again. Its peers must take
// the new run's full sync and heartbeats although they applied a higher
// version of the earlier run, and ignore what the earlier run still says.
func TestRestartedWitnessIsHeard(t *testing.T) {
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	peer := newObservations("tiebreak-1", "tiebreak", discard)
	t0 := time.Unix(1000, 0)
	east := func(run *observations, st probes.State, d time.Duration) {
		run.local(probes.Observation{Group: "app", Site: "east", Name: "web", State: st, Since: t0, CheckedAt: t0.Add(d)})
	}
	beat := func(run *observations, d time.Duration) []byte {
		run.mu.Lock()
		defer run.mu.Unlock()
		return msg(t, obsMsg{V: gossipVersion, Node: run.self, Site: run.site, Inc: run.inc, Ver: run.ver[run.self], Beat: true, FreshAt: t0.Add(d).UnixNano()})
	}
	seen := func() (policy.State, time.Time) {
		for _, o := range peer.snapshot() {
			if o.Observer == "west-1" {
				return o.State, o.CheckedAt
			}
		}
		return policy.Unknown, time.Time{}
	}

	// The first run flaps a few times: the peer applies its version 6.
	first := newObservations("west-1", "west", discard)
	first.inc = 100
	for i := range 6 {
		east(first, []probes.State{probes.StateHealthy, probes.StateFailing}[i%2], time.Duration(i)*time.Second)
	}
	peer.merge(first.full())
	peer.merge(beat(first, 6*time.Second))
	if st, at := seen(); st != policy.Failing || !at.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("first run: west-1 sees east %v checked at %v", st, at)
	}

	// The witness restarts: the new run is at version 1 and sees east
	// healthy. Its full sync and heartbeat are taken.
	second := newObservations("west-1", "west", discard)
	second.inc = 200
	east(second, probes.StateHealthy, 10*time.Second)
	peer.merge(second.full())
	peer.merge(beat(second, 12*time.Second))
	if st, at := seen(); st != policy.Healthy || !at.Equal(t0.Add(12*time.Second)) {
		t.Fatalf("after restart: west-1 sees east %v checked at %v, want healthy at %v", st, at, t0.Add(12*time.Second))
	}

	// Late messages of the first run change nothing.
	east(first, probes.StateFailing, 13*time.Second)
	peer.merge(first.full())
	peer.merge(beat(first, 14*time.Second))
	if st, at := seen(); st != policy.Healthy || !at.Equal(t0.Add(12*time.Second)) {
		t.Fatalf("after a late message of the first run: west-1 sees east %v checked at %v", st, at)
	}

	// The new run's next change arrives as a delta and is applied in order.
	second.queue = &memberlist.TransmitLimitedQueue{NumNodes: func() int { return 2 }, RetransmitMult: 1}
	east(second, probes.StateFailing, 15*time.Second)
	second.flush(1 << 16) // as memberlist's next gossip does (delegate.GetBroadcasts)
	for _, b := range second.queue.GetBroadcasts(0, 1<<16) {
		peer.merge(b)
	}
	peer.merge(beat(second, 16*time.Second))
	if st, at := seen(); st != policy.Failing || !at.Equal(t0.Add(16*time.Second)) {
		t.Fatalf("after the new run's delta: west-1 sees east %v checked at %v", st, at)
	}
}

// Every run's incarnation is larger than the last, also when the clock
// went back between runs, and a lost data_dir falls back to the clock.
func TestIncarnationGrows(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Unix(1000, 0)
	var got []uint64
	for _, now := range []time.Time{t0, t0, t0.Add(-time.Hour), t0.Add(time.Hour)} {
		inc, err := nextIncarnation(dir, now)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, inc)
	}
	want := []uint64{uint64(t0.UnixNano()), uint64(t0.UnixNano()) + 1, uint64(t0.UnixNano()) + 2, uint64(t0.Add(time.Hour).UnixNano())}
	if !slices.Equal(got, want) {
		t.Errorf("incarnations %v, want %v", got, want)
	}
	lost, err := nextIncarnation(t.TempDir(), t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if lost != uint64(t0.Add(2*time.Hour).UnixNano()) {
		t.Errorf("with a new data_dir: %d, want the clock's %d", lost, t0.Add(2*time.Hour).UnixNano())
	}
}

// A witness's peers learn each run's incarnation through gossip: after a
// restart they follow the new run.
func TestRestartGossipsANewIncarnation(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	heard := func() uint64 {
		o := tc.nodes[2].obs
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.incOf[tc.cfgs[1].Name]
	}
	first := tc.nodes[1].obs.inc
	eventually(t, "tiebreak to hear west's first run", func() bool { return heard() == first })
	tc.stop(1)
	tc.start(1)
	second := tc.nodes[1].obs.inc
	if second <= first {
		t.Fatalf("incarnation after restart %d, not above %d", second, first)
	}
	eventually(t, "tiebreak to hear west's second run", func() bool { return heard() == second })
}

// Freshness is judged by the receiver's clock at receipt: a peer whose
// clock is 10 s ahead or behind neither keeps a stale observation fresh
// nor makes a fresh one stale, nor moves when a site began failing.
func TestObservationFreshnessByReceiptTime(t *testing.T) {
	for _, skew := range []time.Duration{10 * time.Second, -10 * time.Second} {
		t.Run("peer clock "+skew.String(), func(t *testing.T) {
			recv := clock.NewFake(time.Unix(10000, 0))
			s := newObservations("tiebreak-1", "tiebreak", slog.New(slog.NewTextHandler(io.Discard, nil)))
			s.clock = recv
			peer := func(d time.Duration) int64 { return recv.Now().Add(skew + d).UnixNano() } // the peer's clock, d from now
			west := func() policy.Observation {
				t.Helper()
				for _, o := range s.snapshot() {
					if o.Observer == "west-1" {
						return o
					}
				}
				t.Fatal("no observation of west-1")
				return policy.Observation{}
			}
			// The policy's rule: fresh unless checked more than StaleAfter ago.
			fresh := func() bool { return !west().CheckedAt.Before(recv.Now().Add(-policy.DefaultStaleAfter)) }

			// Checked just now, failing for 3 s, by the peer's clock.
			s.merge(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 1, Full: true, Sent: peer(0),
				Obs: []wireObs{{Group: "app", Site: "east", State: uint8(policy.Failing), Since: peer(-3 * time.Second), At: peer(0)}}}))
			if !fresh() {
				t.Errorf("an observation checked just now is stale: checked at %v, receiver's clock %v", west().CheckedAt, recv.Now())
			}
			if got := recv.Now().Sub(west().Since); got != 3*time.Second {
				t.Errorf("failing for %s by the receiver's clock, want 3s", got)
			}

			recv.Advance(4 * time.Second)
			// The heartbeat vouches for observations checked 1 s ago.
			s.merge(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 1, Beat: true, Sent: peer(0), FreshAt: peer(-time.Second)}))
			if !fresh() {
				t.Errorf("refreshed by a heartbeat, yet stale: checked at %v, receiver's clock %v", west().CheckedAt, recv.Now())
			}
			recv.Advance(4500 * time.Millisecond) // 5.5 s after that check
			if fresh() {
				t.Errorf("an observation checked 5.5s ago is fresh: checked at %v, receiver's clock %v", west().CheckedAt, recv.Now())
			}
			// A peer whose probes stopped: its heartbeat vouches for a
			// check 6 s old by its own clock.
			s.merge(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 1, Beat: true, Sent: peer(0), FreshAt: peer(-6 * time.Second)}))
			if fresh() {
				t.Errorf("a heartbeat vouching for a 6s-old check made it fresh: checked at %v, receiver's clock %v", west().CheckedAt, recv.Now())
			}
		})
	}
}

// Every witness keeps the furthest position each primary was seen at, its
// own probe's or a gossiped one, after the primary is lost: the data-loss
// guard of a leader elected after the loss measures against it. A new
// timeline starts over.
func TestPrimaryPositionsOutliveThePrimary(t *testing.T) {
	s := newObservations("west-1", "west", slog.New(slog.NewTextHandler(io.Discard, nil)))
	t0 := time.Unix(1000, 0)
	s.local(probes.Observation{Group: "app", Site: "east", Name: "db", Kind: probes.KindPostgres, State: probes.StateHealthy, CheckedAt: t0,
		Role: probes.RolePrimary, WAL: 0x3A000000, Replayed: 0x3A000000, Timeline: 1})
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "tiebreak-1", Site: "tiebreak", Ver: 1, Obs: []wireObs{{Group: "app", Site: "east", Probe: "db",
		State: uint8(policy.Healthy), At: t0.Add(time.Second).UnixNano(), DB: true, Role: probes.RolePrimary, WAL: 0x3B4A0000, Timeline: 1}}}))
	// The primary is lost: its observations fail and carry no position.
	s.local(probes.Observation{Group: "app", Site: "east", Name: "db", Kind: probes.KindPostgres, State: probes.StateFailing, CheckedAt: t0.Add(2 * time.Second)})
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "tiebreak-1", Site: "tiebreak", Ver: 2, Obs: []wireObs{{Group: "app", Site: "east", Probe: "db",
		State: uint8(policy.Failing), At: t0.Add(3 * time.Second).UnixNano(), DB: true}}}))
	want := map[policy.GroupSite]policy.Position{{Group: "app", Site: "east"}: {Timeline: 1, WAL: 0x3B4A0000, At: t0.Add(time.Second)}}
	if diff := cmp.Diff(want, s.primaryPositions()); diff != "" {
		t.Errorf("positions after the loss (-want +got):\n%s", diff)
	}
	// Promoted on a new timeline from an earlier position: that is now
	// where the primary is.
	s.local(probes.Observation{Group: "app", Site: "east", Name: "db", Kind: probes.KindPostgres, State: probes.StateHealthy, CheckedAt: t0.Add(4 * time.Second),
		Role: probes.RolePrimary, WAL: 0x39000000, Timeline: 2})
	want[policy.GroupSite{Group: "app", Site: "east"}] = policy.Position{Timeline: 2, WAL: 0x39000000, At: t0.Add(4 * time.Second)}
	if diff := cmp.Diff(want, s.primaryPositions()); diff != "" {
		t.Errorf("positions on a new timeline (-want +got):\n%s", diff)
	}
}
