package fsm_test

import (
	"errors"
	"testing"

	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

func schedule(t *testing.T, f *fsm.FSM, to string, at int64) fsm.Result {
	t.Helper()
	return mustApply(t, f, &witnessv1.ScheduleSwitchoverCommand{Group: "app", AtUnixNano: 5,
		Switchover: &witnessv1.ScheduledSwitchover{ToSite: to, AtUnixNano: at, Reason: "maintenance", By: "alice", AskedUnixNano: 5}})
}

func scheduled(t *testing.T, f *fsm.FSM) (now, last *witnessv1.ScheduledSwitchover) {
	t.Helper()
	g, _ := f.Group("app")
	return g.GetStatus().GetScheduled(), g.GetStatus().GetLastScheduled()
}

// A scheduled switchover waits in the state until a transition ends it:
// the switchover that carries it out, another transition that drops it,
// or a cancel. Bad requests change nothing.
func TestScheduledSwitchover(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("app", "east", "west", "tiebreak"))
	for _, bad := range []struct {
		to   string
		at   int64
		want error
	}{{"north", 100, fsm.ErrUnknownSite}, {"east", 100, fsm.ErrSameSite}, {"west", 0, fsm.ErrInvalid}} {
		if res := schedule(t, f, bad.to, bad.at); !errors.Is(res.Err, bad.want) {
			t.Errorf("schedule to %q at %d: %v, want %v", bad.to, bad.at, res.Err, bad.want)
		}
	}
	if res := mustApply(t, f, &witnessv1.ScheduleSwitchoverCommand{Group: "app", Outcome: "cancelled"}); !errors.Is(res.Err, fsm.ErrNotScheduled) {
		t.Errorf("cancel with nothing scheduled: %v", res.Err)
	}
	if now, last := scheduled(t, f); now != nil || last != nil {
		t.Fatalf("refused requests left %v, %v", now, last)
	}

	// Carried out by the switchover that says so.
	if res := schedule(t, f, "west", 100); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := schedule(t, f, "tiebreak", 200); !errors.Is(res.Err, fsm.ErrScheduled) {
		t.Errorf("a second schedule: %v, want %v", res.Err, fsm.ErrScheduled)
	}
	mustApply(t, f, &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "west"}},
		Kind: witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER, Prepare: true, Scheduled: true, AtUnixNano: 100})
	now, last := scheduled(t, f)
	if now != nil || last.GetOutcome() != "started at token 2" || last.GetToSite() != "west" || last.GetEndedUnixNano() != 100 {
		t.Errorf("after the start: scheduled %v, last %v", now, last)
	}

	// Dropped by a failover before its time.
	mustApply(t, f, &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 2, ToSite: "west"}},
		Kind: witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER, AtUnixNano: 110})
	if res := schedule(t, f, "east", 300); res.Err != nil {
		t.Fatal(res.Err)
	}
	phase(t, f, witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER, false, false, 3, "tiebreak")
	if now, last := scheduled(t, f); now != nil || last.GetOutcome() != "dropped: failover west→tiebreak at token 4" {
		t.Errorf("after a failover: scheduled %v, last %v", now, last)
	}

	// Cancelled.
	if res := schedule(t, f, "east", 400); res.Err != nil {
		t.Fatal(res.Err)
	}
	mustApply(t, f, &witnessv1.ScheduleSwitchoverCommand{Group: "app", Outcome: "cancelled by bob", AtUnixNano: 7})
	if now, last := scheduled(t, f); now != nil || last.GetOutcome() != "cancelled by bob" || last.GetAtUnixNano() != 400 {
		t.Errorf("after a cancel: scheduled %v, last %v", now, last)
	}
}
