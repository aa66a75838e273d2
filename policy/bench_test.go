package policy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sitewitness/witness/policy"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// benchInput is groups × 3 sites × 5 witnesses (150,000 observations for
// 10,000 groups), half the groups active at east. With eastDown, the east
// witnesses are gone and the others have seen east failing for a minute,
// so half the groups fail over in one command.
func benchInput(groups int, eastDown bool) policy.Input {
	witnesses := []policy.Witness{
		{Name: "e1", Site: "east"}, {Name: "e2", Site: "east"},
		{Name: "w1", Site: "west"}, {Name: "w2", Site: "west"},
		{Name: "t1", Site: "tiebreak"},
	}
	in := policy.Input{Now: now, Live: witnesses, StaleAfter: 5 * time.Second}
	if eastDown {
		in.Live = witnesses[2:]
	}
	sites := []string{"east", "west", "tiebreak"}
	for i := range groups {
		name := fmt.Sprintf("group-%05d", i)
		order := sites
		if i%2 == 1 {
			order = []string{"west", "east", "tiebreak"}
		}
		in.Groups = append(in.Groups, group(name, uint64(i+1), order, withLagLimit(16<<20, 10_000)))
	}
	for _, w := range witnesses {
		for i := range groups {
			name := fmt.Sprintf("group-%05d", i)
			for _, s := range sites {
				o := see(w.Name, name, s, policy.Healthy, time.Hour)
				if eastDown && s == "east" {
					o.State, o.Since = policy.Failing, now.Add(-time.Minute)
				}
				if s == "west" {
					o.IsDatabase, o.Role, o.LagBytes = true, "standby", 1024
				}
				in.Observations = append(in.Observations, o)
			}
		}
	}
	return in
}

func BenchmarkEvaluate(b *testing.B) {
	for _, groups := range []int{100, 10_000} {
		for _, eastDown := range []bool{false, true} {
			b.Run(fmt.Sprintf("groups=%d/sites=3/witnesses=5/eastDown=%v", groups, eastDown), func(b *testing.B) {
				benchEvaluate(b, groups, eastDown)
			})
		}
	}
}

func benchEvaluate(b *testing.B, groups int, eastDown bool) {
	in := benchInput(groups, eastDown)
	out := policy.Evaluate(in)
	wantMoves := 0
	if eastDown {
		wantMoves = groups / 2
	}
	if got := movesOf(out.Proposals); got != wantMoves || len(out.Decisions) != groups {
		b.Fatalf("got %d moves and %d decisions, want %d and %d", got, len(out.Decisions), wantMoves, groups)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		policy.Evaluate(in)
	}
}

func movesOf(cmds []*witnessv1.TransitionCommand) int {
	n := 0
	for _, c := range cmds {
		n += len(c.GetMoves())
	}
	return n
}
