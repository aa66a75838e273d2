package cluster

import (
	"cmp"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/policy"
	"github.com/sitewitness/witness/probes"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// fromScratch is the policy's view of s built afresh from what s holds,
// each observer's observations read by key (get) in the order of their
// keys, with their observer's site and freshness as they are now.
func fromScratch(s *observations) []policy.Observation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []policy.Observation
	for _, node := range slices.Sorted(maps.Keys(s.byOf)) {
		m := s.byOf[node]
		keys := slices.SortedFunc(maps.Keys(m), func(a, b obsKey) int {
			return cmp.Or(strings.Compare(a.group, b.group), strings.Compare(a.site, b.site), strings.Compare(a.probe, b.probe))
		})
		for _, k := range keys {
			w, _ := s.get(m, k)
			o := policy.Observation{Observer: node, ObserverSite: s.sites[node], Group: w.Group, Site: w.Site, State: policy.State(w.State),
				Since: time.Unix(0, w.rSince), IsDatabase: w.DB, Role: w.Role, LagBytes: w.LagBytes, LagSeconds: w.LagSecond, Streaming: w.Streaming,
				WAL: w.WAL, Replayed: w.Replayed, Timeline: w.Timeline, Detail: w.Detail, Node: w.Node}
			at := w.rAt
			if node != s.self && s.inSync[node] {
				at = max(at, s.freshAt[node])
			}
			if at != 0 {
				o.CheckedAt = time.Unix(0, at)
			}
			out = append(out, o)
		}
	}
	return out
}

// TestKeptViewFollowsEveryChange: the view of the observations kept
// between evaluations is, after every kind of change (this witness's
// probes, gossiped deltas, heartbeats, a missed delta, full states with
// the same keys or others, a target dropped, a restarted witness), what
// building it afresh gives, and the next evaluation decides on the
// change.
func TestKeptViewFollowsEveryChange(t *testing.T) {
	s := newObservations("tiebreak-1", "tiebreak", slog.New(slog.NewTextHandler(io.Discard, nil)))

	t0 := time.Unix(10_000, 0)
	at := func(d time.Duration) int64 { return t0.Add(d).UnixNano() }
	groups := []string{"a", "b", "c"}
	local := func(group, site string, st probes.State, d time.Duration) {
		s.local(probes.Observation{Group: group, Site: site, Name: "0-tcp", State: st, Since: t0, CheckedAt: t0.Add(d)})
	}
	obs := func(group, site string, st policy.State, since, d time.Duration) wireObs {
		return wireObs{Group: group, Site: site, Probe: "0-tcp", State: uint8(st), Since: at(since), At: at(d)}
	}
	every := func(st policy.State, d time.Duration) []wireObs {
		var out []wireObs
		for _, g := range groups {
			for _, site := range []string{"east", "west"} {
				out = append(out, obs(g, site, st, 0, d))
			}
		}
		return out
	}
	var gs []*witnessv1.Group
	probe := []*witnessv1.ProbeSpec{{Kind: "tcp"}}
	for _, g := range groups {
		gs = append(gs, &witnessv1.Group{
			Spec:   &witnessv1.GroupSpec{Name: g, Sites: []*witnessv1.SiteSpec{{Name: "east", Probes: probe}, {Name: "west", Probes: probe}}, Policy: &witnessv1.Policy{FailoverAfterMs: 5000}},
			Status: &witnessv1.GroupStatus{ActiveSite: "east", Token: 1, Armed: true},
		})
	}
	live := []policy.Witness{{Name: "east-1", Site: "east"}, {Name: "west-1", Site: "west"}, {Name: "tiebreak-1", Site: "tiebreak"}}
	decide := func(now time.Duration) map[string]policy.DecisionState {
		in := policy.Input{Now: t0.Add(now), Groups: gs, Live: live, ObserverSites: []string{"east", "tiebreak", "west"}}
		var out policy.Output
		s.read(func(o []policy.Observation) {
			in.Observations = o
			out = policy.Evaluate(in)
		})
		got := map[string]policy.DecisionState{}
		for g, d := range out.Decisions {
			got[g] = d.State
		}
		return got
	}
	states := func(a, b, c policy.DecisionState) map[string]policy.DecisionState {
		return map[string]policy.DecisionState{"a": a, "b": b, "c": c}
	}
	// down: failing for failover_after, and west, seen healthy by
	// west-1 alone, is no target.
	healthy, waiting, down := policy.DecisionHealthy, policy.DecisionWaiting, policy.DecisionNoTarget

	for _, g := range groups {
		local(g, "east", probes.StateHealthy, 0)
		local(g, "west", probes.StateHealthy, 0)
	}
	s.apply(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 1, Full: true, Obs: every(policy.Healthy, 0)}))
	s.apply(msg(t, obsMsg{V: gossipVersion, Node: "east-1", Site: "east", Ver: 1, Full: true, Obs: every(policy.Healthy, 0)}))

	steps := []struct {
		name   string
		change func()
		now    time.Duration
		want   map[string]policy.DecisionState
	}{
		{"all healthy", func() {}, time.Second, states(healthy, healthy, healthy)},
		{"this witness sees a/east failing", func() { local("a", "east", probes.StateFailing, 2*time.Second) },
			2 * time.Second, states(healthy, healthy, healthy)},
		{"west-1 sees a/east failing, in a delta", func() {
			s.apply(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 2, Obs: []wireObs{obs("a", "east", policy.Failing, 2*time.Second, 2*time.Second)}}))
		}, 3 * time.Second, states(waiting, healthy, healthy)},
		{"observations go stale", func() {}, 7500 * time.Millisecond, states(healthy, healthy, healthy)},
		{"heartbeats vouch for them again", func() {
			local("a", "east", probes.StateFailing, 7*time.Second)
			s.apply(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 2, Beat: true, FreshAt: at(7 * time.Second)}))
		}, 7500 * time.Millisecond, states(down, healthy, healthy)},
		// The heartbeat of 7 s still vouches for what west-1 held then;
		// the later one, past the gap, does not.
		{"a missed delta: west-1's heartbeats past it do not count", func() {
			s.apply(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 4, Obs: []wireObs{obs("b", "west", policy.Healthy, 0, 7*time.Second)}}))
			s.apply(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 4, Beat: true, FreshAt: at(12 * time.Second)}))
			local("a", "east", probes.StateFailing, 12*time.Second)
		}, 12500 * time.Millisecond, states(healthy, healthy, healthy)},
		{"a full state with the same keys repairs it", func() {
			all := every(policy.Healthy, 9*time.Second)
			all[0] = obs("a", "east", policy.Failing, 2*time.Second, 9*time.Second)
			s.apply(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 4, Full: true, Obs: all}))
			local("a", "east", probes.StateFailing, 9*time.Second)
		}, 9 * time.Second, states(down, healthy, healthy)},
		{"a full state with a key more and one less", func() {
			all := every(policy.Healthy, 10*time.Second)[1:]
			all = append(all, obs("d", "east", policy.Failing, 0, 10*time.Second))
			s.apply(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 5, Full: true, Obs: all}))
		}, 10 * time.Second, states(healthy, healthy, healthy)},
		{"this witness drops a target", func() {
			s.setTargets([]probes.Target{{Group: "a", Site: "east", Name: "0-tcp"}, {Group: "a", Site: "west", Name: "0-tcp"}})
		}, 10 * time.Second, states(healthy, healthy, healthy)},
		{"east-1 restarts and sees c/east failing", func() {
			s.apply(msg(t, obsMsg{V: gossipVersion, Node: "east-1", Site: "east", Inc: 2, Ver: 1, Full: true, Obs: []wireObs{obs("c", "east", policy.Failing, 0, 10*time.Second)}}))
			s.apply(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 6, Obs: []wireObs{obs("c", "east", policy.Failing, 0, 10*time.Second)}}))
			local("c", "east", probes.StateFailing, 10*time.Second)
		}, 10 * time.Second, states(healthy, healthy, down)},
	}
	for i, step := range steps {
		step.change()
		if diff := gocmp.Diff(fromScratch(s), s.snapshot()); diff != "" {
			t.Fatalf("step %d (%s): kept view differs from one built afresh (-fresh +kept):\n%s", i, step.name, diff)
		}
		if diff := gocmp.Diff(step.want, decide(step.now)); diff != "" {
			t.Errorf("step %d (%s): decisions (-want +got):\n%s", i, step.name, diff)
		}
	}
}

// TestViewStaysBoundedWithoutReads: keys that come and go with no read
// between (here a witness that restarts fifty times, each run sending
// its full state) do not grow the view for good, and the view read after
// is the one built afresh.
func TestViewStaysBoundedWithoutReads(t *testing.T) {
	s := newObservations("tiebreak-1", "tiebreak", slog.New(slog.NewTextHandler(io.Discard, nil)))
	t0 := time.Unix(10_000, 0).UnixNano()
	const keys = 100
	for run := range 50 {
		var all []wireObs
		for i := range keys {
			all = append(all, wireObs{Group: fmt.Sprintf("g%03d", i), Site: "east", Probe: "0-tcp", State: uint8(policy.Healthy), Since: t0, At: t0 + int64(run)})
		}
		s.apply(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Inc: uint64(run + 1), Ver: 1, Full: true, Sent: t0 + int64(run), Obs: all}))
		if n := len(s.view); n > 2*keys+1 {
			t.Fatalf("run %d: the view holds %d slots for %d observations", run, n, keys)
		}
	}
	got := s.snapshot()
	if len(got) != keys {
		t.Fatalf("%d observations read, want %d", len(got), keys)
	}
	if diff := gocmp.Diff(fromScratch(s), got); diff != "" {
		t.Errorf("view differs from one built afresh (-fresh +view):\n%s", diff)
	}
}
