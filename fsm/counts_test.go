package fsm_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Transition counts go on past the bounded history and come back from a
// snapshot: the transitions counter is derived from them.
func TestTransitionCountsOutliveHistoryAndSnapshot(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("app", "east", "west"))
	sites := []string{"west", "east"}
	moves := fsm.HistoryLimit + 5
	for i := range moves {
		_, tok := status(t, f, "app")
		if res := move(t, f, switchover, &witnessv1.Move{Group: "app", ExpectedToken: tok, ToSite: sites[i%2]}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	want := []*witnessv1.TransitionCount{
		{Kind: witnessv1.TransitionKind_TRANSITION_KIND_INITIAL, ToSite: "east", Count: 1},
		{Kind: switchover, FromSite: "east", ToSite: "west", Count: uint64(moves+1) / 2},
		{Kind: switchover, FromSite: "west", ToSite: "east", Count: uint64(moves) / 2},
	}
	g, _ := f.Group("app")
	if diff := cmp.Diff(want, g.GetStatus().GetTransitionCounts(), protocmp.Transform()); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if n := len(g.GetStatus().GetHistory()); n != fsm.HistoryLimit {
		t.Fatalf("history holds %d transitions, want the limit %d", n, fsm.HistoryLimit)
	}

	b, err := fsm.MarshalSnapshot(f.State())
	if err != nil {
		t.Fatal(err)
	}
	s, err := fsm.UnmarshalSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	r := fsm.New()
	if err := r.Restore(s); err != nil {
		t.Fatal(err)
	}
	rg, _ := r.Group("app")
	if diff := cmp.Diff(want, rg.GetStatus().GetTransitionCounts(), protocmp.Transform()); diff != "" {
		t.Errorf("counts after restore (-want +got):\n%s", diff)
	}
}
