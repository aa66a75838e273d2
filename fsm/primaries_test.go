package fsm_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// TestPrimaryPositions: the positions a lost primary was confirmed at are
// kept in the group's status from the entries that carry them anyway (a
// move, a proposal, a fence step), the furthest per site.
func TestPrimaryPositions(t *testing.T) {
	pos := func(site string, tli uint32, lsn uint64) *witnessv1.PrimaryPosition {
		return &witnessv1.PrimaryPosition{Site: site, Timeline: tli, WalLsn: lsn, AtUnixNano: 7}
	}
	f := fsm.New()
	put(t, f, spec("app", "east", "west"))
	primaries := func() []*witnessv1.PrimaryPosition {
		g, _ := f.Group("app")
		return g.GetStatus().GetPrimaries()
	}
	check := func(step string, want ...*witnessv1.PrimaryPosition) {
		t.Helper()
		if diff := cmp.Diff(want, primaries(), protocmp.Transform()); diff != "" {
			t.Fatalf("%s (-want +got):\n%s", step, diff)
		}
	}

	// A proposal (manual or observe mode) records where the leader had
	// seen the active site's primary; one of another site does not count.
	mustApply(t, f, &witnessv1.RecordProposalCommand{Group: "app", Proposal: &witnessv1.Proposal{Action: "pending", FromSite: "east", ToSite: "west",
		ExpectedToken: 1, FromPrimary: pos("east", 1, 0x3A000000)}})
	check("proposal", pos("east", 1, 0x3A000000))
	mustApply(t, f, &witnessv1.RecordProposalCommand{Group: "app", Proposal: &witnessv1.Proposal{Action: "pending", FromSite: "east", ToSite: "west",
		ExpectedToken: 1, FromPrimary: pos("west", 1, 0x5000000)}})
	check("proposal of a site not active", pos("east", 1, 0x3A000000))

	// A switchover's prepare carries an older position: kept as it was.
	res := mustApply(t, f, &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "west",
		FromPrimary: pos("east", 1, 0x39000000)}}, Kind: switchover, Prepare: true, Reason: "test", AtUnixNano: 3})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	check("prepare behind", pos("east", 1, 0x3A000000))

	// Its fence reads the final position, without a timeline: the held
	// one's is kept. A failed fence or a step of another kind does not count.
	for _, r := range []*witnessv1.StepResult{
		{Token: 2, Step: "fence", Ok: false, WalLsn: 0x4F000000},
		{Token: 2, Step: "catchup", Ok: true, WalLsn: 0x4F000000},
	} {
		if res := mustApply(t, f, &witnessv1.RecordStepCommand{Group: "app", Result: r}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	check("failed fence, catchup", pos("east", 1, 0x3A000000))
	mustApply(t, f, &witnessv1.RecordStepCommand{Group: "app", Result: &witnessv1.StepResult{Token: 2, Step: "fence", Ok: true, WalLsn: 0x3B4A0000, StartedUnixNano: 9}})
	check("fence", &witnessv1.PrimaryPosition{Site: "east", Timeline: 1, WalLsn: 0x3B4A0000, AtUnixNano: 9})

	// The move commits; a failover back from west later records west's.
	if res := phase(t, f, switchover, false, false, 2, "west"); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := move(t, f, failover, &witnessv1.Move{Group: "app", ExpectedToken: 3, ToSite: "east", FromPrimary: pos("west", 2, 0x3C000000)}); res.Err != nil {
		t.Fatal(res.Err)
	}
	check("failover", &witnessv1.PrimaryPosition{Site: "east", Timeline: 1, WalLsn: 0x3B4A0000, AtUnixNano: 9}, pos("west", 2, 0x3C000000))

	// A snapshot keeps them.
	g := fsm.New()
	if err := g.Restore(f.State()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f.State(), g.State(), protocmp.Transform()); diff != "" {
		t.Fatalf("restored (-want +got):\n%s", diff)
	}
}
