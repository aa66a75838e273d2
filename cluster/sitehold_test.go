package cluster

import (
	"testing"
	"time"

	"github.com/sitewitness/witness/policy"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

func siteOutput(due, waiting []string) policy.Output {
	out := policy.Output{Decisions: map[string]policy.Decision{}}
	cmd := &witnessv1.TransitionCommand{Kind: witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER}
	for _, g := range due {
		out.Decisions[g] = policy.Decision{Action: policy.ActionFailover, State: policy.DecisionFailingOver, From: "east", To: "west"}
		cmd.Moves = append(cmd.Moves, &witnessv1.Move{Group: g, ToSite: "west"})
	}
	for _, g := range waiting {
		out.Decisions[g] = policy.Decision{State: policy.DecisionWaiting, From: "east"}
	}
	if len(cmd.Moves) > 0 {
		out.Proposals = []*witnessv1.TransitionCommand{cmd}
	}
	return out
}

// TestSiteHold: the first groups of a failing site to become due wait,
// at most one probe interval, for the groups of that site still counting
// down, so that they all move in one entry; with none counting down they
// go at once.
func TestSiteHold(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var h siteHold
	ready, wake := h.release(t0, siteOutput([]string{"a"}, []string{"b", "c"}))
	if len(ready) != 0 || !wake.Equal(t0.Add(siteHoldMax)) {
		t.Fatalf("with b and c counting down: ready %v, wake %v; want held until %v", ready, wake, t0.Add(siteHoldMax))
	}
	ready, _ = h.release(t0.Add(300*time.Millisecond), siteOutput([]string{"a", "b"}, []string{"c"}))
	if len(ready) != 0 {
		t.Fatalf("c still counting down within the hold: %v released", ready)
	}
	ready, wake = h.release(t0.Add(600*time.Millisecond), siteOutput([]string{"a", "b", "c"}, nil))
	if len(ready) != 1 || len(ready[0].GetMoves()) != 3 || !wake.IsZero() {
		t.Fatalf("all due: ready %v, wake %v; want one entry of three moves", ready, wake)
	}

	// A group that keeps counting down does not hold the others past the
	// bound.
	h = siteHold{}
	h.release(t0, siteOutput([]string{"a"}, []string{"slow"}))
	if ready, _ := h.release(t0.Add(siteHoldMax), siteOutput([]string{"a"}, []string{"slow"})); len(ready) != 1 {
		t.Fatalf("past the bound: %v, want a released", ready)
	}

	// Nothing counting down: at once.
	h = siteHold{}
	if ready, _ := h.release(t0, siteOutput([]string{"a"}, nil)); len(ready) != 1 {
		t.Fatalf("nothing waiting: %v, want a released at once", ready)
	}
}
