package policy_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/sitewitness/witness/fsm"
	"github.com/sitewitness/witness/policy"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

func apply(t *testing.T, f *fsm.FSM, cmd proto.Message) fsm.Result {
	t.Helper()
	entry, err := fsm.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return f.Apply(entry)
}

func specOf(name string, sites ...string) *witnessv1.GroupSpec {
	s := &witnessv1.GroupSpec{Name: name, Policy: &witnessv1.Policy{
		Mode: witnessv1.Mode_MODE_AUTO, FailoverAfterMs: 10_000, FenceAfterMs: 5_000,
	}}
	for _, site := range sites {
		s.Sites = append(s.Sites, &witnessv1.SiteSpec{Name: site})
	}
	return s
}

// TestSiteLossThroughTheFSM: the proposal is accepted by the real state
// machine, and evaluating the committed state again proposes nothing, even
// when east returns and west fails.
func TestSiteLossThroughTheFSM(t *testing.T) {
	f := fsm.New()
	created := now.Add(-time.Hour)
	if res := apply(t, f, &witnessv1.PutGroupsCommand{
		Specs:      []*witnessv1.GroupSpec{specOf("api", "east", "west"), specOf("db", "west", "east"), specOf("web", "east", "west")},
		AtUnixNano: created.UnixNano(),
	}); res.Err != nil {
		t.Fatal(res.Err)
	}
	obs := cat(eastLost("api", 11*time.Second), eastLost("db", 11*time.Second), eastLost("web", 11*time.Second))
	in := policy.Input{Now: now, Groups: f.Groups(), Observations: obs, Live: live("w1", "w2", "t1")}

	out := policy.Evaluate(in)
	want := []*witnessv1.TransitionCommand{{
		Moves: []*witnessv1.Move{
			{Group: "api", ExpectedToken: 1, ToSite: "west"},
			{Group: "web", ExpectedToken: 3, ToSite: "west"},
		},
		Kind:       witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER,
		Reason:     "site east down: 2 groups fail over",
		AtUnixNano: now.UnixNano(),
	}}
	if diff := cmp.Diff(want, out.Proposals, protocmp.Transform()); diff != "" {
		t.Fatalf("proposals (-want +got):\n%s", diff)
	}
	res := apply(t, f, out.Proposals[0])
	if res.Err != nil {
		t.Fatalf("fsm refused the proposal: %v", res.Err)
	}
	if diff := cmp.Diff(map[string]uint64{"api": 4, "web": 5}, res.Tokens); diff != "" {
		t.Errorf("new tokens (-want +got):\n%s", diff)
	}

	tests := []struct {
		name string
		now  time.Time
		obs  []policy.Observation
		live []policy.Witness
	}{
		{"same gossip a tick later", now.Add(250 * time.Millisecond), obs, live("w1", "w2", "t1")},
		{"east returns and west fails", now.Add(time.Hour), cat(
			allHealthy("api", "east"), seeAll(all, "api", "west", policy.Failing, time.Minute),
			allHealthy("web", "east"), seeAll(all, "web", "west", policy.Failing, time.Minute),
			allHealthy("db", "east", "west"),
		), allLive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := policy.Evaluate(policy.Input{Now: tt.now, Groups: f.Groups(), Observations: tt.obs, Live: tt.live})
			if len(out.Proposals) != 0 {
				t.Errorf("proposals after the failover: %v", out.Proposals)
			}
			for name, tok := range map[string]uint64{"api": 4, "web": 5} {
				d := out.Decisions[name]
				want := policy.Decision{Action: policy.ActionNone, From: "west", Reason: "disarmed after failover at token " + strconv.FormatUint(tok, 10), State: policy.DecisionDisarmed}
				if diff := cmp.Diff(want, d, cmpIgnoreSites); diff != "" {
					t.Errorf("%s (-want +got):\n%s", name, diff)
				}
			}
		})
	}

	// The same move proposed by a leader that had not seen the commit is
	// refused by the compare-and-swap on the token.
	if res := apply(t, f, want[0]); res.Err == nil {
		t.Error("a second failover with the old tokens was applied")
	}
}

// cmpIgnoreSites ignores the per-site views and the count of targets
// (shown in testdata/targets.txt).
var cmpIgnoreSites = cmp.FilterPath(func(p cmp.Path) bool {
	switch p.Last().String() {
	case ".Sites", ".Targets", ".NoTarget":
		return true
	}
	return false
}, cmp.Ignore())

// TestFreshLeaderDecidesTheSame: Evaluate keeps nothing between calls and
// does not depend on the order of its inputs, so a newly elected leader
// with the same state and gossip reaches the same decisions.
func TestFreshLeaderDecidesTheSame(t *testing.T) {
	groups := []*witnessv1.Group{
		group("a", 1, ew), group("b", 2, ew, withMode(witnessv1.Mode_MODE_MANUAL)),
		group("c", 3, []string{"west", "east"}), group("d", 4, ewn, withLagLimit(1000, 0)),
		group("e", 5, ew, failedOver(time.Hour), withRearm(witnessv1.Rearm_REARM_AUTO, time.Minute)),
	}
	var obs []policy.Observation
	for _, g := range []string{"a", "b", "c", "d", "e"} {
		obs = append(obs, eastLost(g, 30*time.Second)...)
		obs = append(obs, seeAll([]string{"w1", "w2", "t1"}, g, "north", policy.Healthy, time.Hour)...)
	}
	obs = append(obs, db("t1", "d", "west", 5000, 0, false))
	in := policy.Input{Now: now, Groups: groups, Observations: obs, Live: live("w1", "w2", "t1")}

	first := policy.Evaluate(in)
	if len(first.Proposals) == 0 || len(first.Rearm) == 0 {
		t.Fatalf("scenario decides nothing: %+v", summarize(first))
	}
	shuffled := policy.Input{
		Now:          now,
		Groups:       reversed(groups),
		Observations: reversed(obs),
		Live:         reversed(in.Live),
	}
	for name, in := range map[string]policy.Input{"again": in, "inputs reordered": shuffled} {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(first, policy.Evaluate(in), protocmp.Transform()); diff != "" {
				t.Errorf("second evaluation (-first +second):\n%s", diff)
			}
		})
	}
}

func reversed[T any](s []T) []T {
	s = slices.Clone(s)
	slices.Reverse(s)
	return s
}

// TestSiteViews: who sees what, per site, as witnessctl shows it.
func TestSiteViews(t *testing.T) {
	obs := cat(
		seeAll(westW, "app", "east", policy.Failing, time.Minute),
		seeAll(append(eastW, "t1"), "app", "east", policy.Healthy, time.Hour),
		seeAll([]string{"e1"}, "app", "west", policy.Failing, 2*time.Minute),
		seeAll([]string{"e2"}, "app", "west", policy.Healthy, time.Hour),
		seeAll(append(westW, "t1"), "app", "west", policy.Healthy, time.Hour),
		[]policy.Observation{db("w1", "app", "west", 1200, 0.5, true)},
	)
	out := policy.Evaluate(policy.Input{Now: now, Groups: []*witnessv1.Group{group("app", 1, ew)}, Observations: obs, Live: allLive})
	want := []policy.SiteView{
		{Site: "east", Active: true, Observers: []policy.ObserverView{
			{Site: "east", State: policy.Healthy, Since: now.Add(-time.Hour), Witnesses: 2, Own: true},
			{Site: "tiebreak", State: policy.Healthy, Since: now.Add(-time.Hour), Witnesses: 1},
			{Site: "west", State: policy.Failing, Since: now.Add(-time.Minute), Witnesses: 2},
		}},
		{Site: "west", Observers: []policy.ObserverView{
			{Site: "east", State: policy.Unknown, Witnesses: 2},
			{Site: "tiebreak", State: policy.Healthy, Since: now.Add(-time.Hour), Witnesses: 1},
			{Site: "west", State: policy.Healthy, Since: now.Add(-time.Hour), Witnesses: 2, Own: true},
		}, Database: true, Role: "standby", LagBytes: 1200, LagSeconds: 0.5, Streaming: true},
	}
	if diff := cmp.Diff(want, out.Decisions["app"].Sites); diff != "" {
		t.Errorf("site views (-want +got):\n%s", diff)
	}
}
