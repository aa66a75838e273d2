package policy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/sitewitness/witness/policy"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// TestDecisionsOnlyDecidesTheSame: an evaluation without the per-site
// views (as the leader's loop evaluates) decides for every group what the
// full evaluation decides, also where one group's views would leave
// something behind for the next in scratch space: groups with and
// without databases, lagging or not, active at different sites, failing
// or healthy, in turn.
func TestDecisionsOnlyDecidesTheSame(t *testing.T) {
	var groups []*witnessv1.Group
	var obs []policy.Observation
	for i := range 24 {
		name := fmt.Sprintf("g%02d", i)
		var opts []groupOpt
		if i%3 != 2 { // database observations only for i%3 == 0
			opts = append(opts, withPostgres(), withLagLimit(1<<20, 5_000))
		}
		if i%4 == 1 {
			opts = append(opts, failedOver(time.Hour))
		}
		if i%5 == 2 {
			opts = append(opts, withMode(witnessv1.Mode_MODE_OBSERVE))
		}
		sites := ew
		if i%2 == 1 {
			sites = ewn
		}
		groups = append(groups, group(name, uint64(i+1), sites, opts...))
		switch i % 4 {
		case 0:
			obs = append(obs, eastLost(name, time.Minute)...)
		case 1:
			obs = append(obs, seeAll([]string{"e1", "e2", "t1"}, name, "west", policy.Failing, time.Minute)...)
			obs = append(obs, seeAll([]string{"e1", "e2", "t1"}, name, "east", policy.Healthy, time.Hour)...)
		case 2:
			obs = append(obs, allHealthy(name, sites...)...)
		case 3:
			obs = append(obs, eastLost(name, 3*time.Second)...)
		}
		if i%3 == 0 {
			obs = append(obs, db("w1", name, "west", int64(i)<<19, float64(i%7), i%2 == 0), db("t1", name, "west", int64(i)<<19, 1, true))
		}
	}
	in := policy.Input{Now: now, Groups: groups, Observations: obs, Live: allLive, ObserverSites: []string{"east", "tiebreak", "west"}}
	want := policy.Evaluate(in)
	for name, d := range want.Decisions {
		if len(d.Sites) == 0 {
			t.Fatalf("%s: the full evaluation has no site views", name)
		}
		d.Sites = nil
		want.Decisions[name] = d
	}
	in.DecisionsOnly = true
	if diff := cmp.Diff(want, policy.Evaluate(in), protocmp.Transform()); diff != "" {
		t.Errorf("decisions without views (-full +without views):\n%s", diff)
	}
	states := map[policy.DecisionState]bool{}
	for _, d := range want.Decisions {
		states[d.State] = true
	}
	if len(states) < 3 {
		t.Errorf("the groups reach only the decision states %v: too few to compare", states)
	}
}
