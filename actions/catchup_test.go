package actions_test

import (
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// stepsAt lists the results of step at token: "ok LSN" or "waits: …".
func stepsAt(l interface {
	Groups() []*witnessv1.Group
}, token uint64, step string) []string {
	var out []string
	for _, g := range l.Groups() {
		for _, s := range g.GetStatus().GetSteps() {
			if s.GetToken() != token || s.GetStep() != step {
				continue
			}
			if s.GetOk() {
				out = append(out, "ok "+strings.TrimSpace(formatLSN(s.GetWalLsn())))
			} else {
				out = append(out, "waits: "+s.GetError())
			}
		}
	}
	return out
}

func formatLSN(v uint64) string {
	const hex = "0123456789ABCDEF"
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v >>= 4 {
		b = append([]byte{hex[v&15]}, b...)
	}
	return string(b)
}

// A switchover commits its move only once the target has replayed the
// fenced primary's final position: while WAL to the target is held back,
// the group stays at east, fenced, and says how far west is; once west
// has it all, the move commits and west is promoted.
func TestSwitchoverWaitsForTheTargetToReplayTheFinalPosition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setup(t)
		r.SetPosition("east", 0x3B4A0000, false) // fenced over SQL, still answers
		r.SetPosition("west", 0x3A000000, true)
		prep := prepareSwitchover(t, l, "west")
		// Waiting is not failing: no backoff grows between looks.
		f := startFake(t, &actions.Reconciler{Leader: l, Runner: r, MaxBackoff: time.Minute})
		defer f.stop()
		f.until(5*time.Second, func() bool { return len(stepsAt(l, prep, actions.StepCatchUp)) > 0 })
		f.advance(10 * time.Second)
		g, _ := l.FSM.Group("app")
		if g.GetStatus().GetActiveSite() != "east" || g.GetStatus().GetToken() != prep {
			t.Fatalf("moved before west caught up: %s at token %d", g.GetStatus().GetActiveSite(), g.GetStatus().GetToken())
		}
		if got := stepsAt(l, prep, actions.StepFence); !slices.Equal(got, []string{"ok 3B4A0000"}) {
			t.Errorf("fence results %q, want one recording east's final position", got)
		}
		waits := stepsAt(l, prep, actions.StepCatchUp)
		if len(waits) == 0 || !strings.Contains(waits[0], "west replayed 0/3A000000 of east's final 0/3B4A0000") {
			t.Errorf("catch-up progress %q", waits)
		}
		if slices.Contains(callsFrom(r, prep), "promote app@3 west") {
			t.Fatal("west promoted before it caught up")
		}

		r.SetPosition("west", 0x3B4A0000, true)
		f.until(5*f.rec.Tick, func() bool {
			g, _ := l.FSM.Group("app")
			return g.GetStatus().GetActiveSite() == "west" && slices.Contains(steps(l), actions.StepSettle)
		})
		if got := stepsAt(l, prep, actions.StepCatchUp); got[len(got)-1] != "ok 3B4A0000" {
			t.Errorf("catch-up results %q, want the last ok at west's replayed position", got)
		}
	})
}

// A target that does not catch up within switchover_timeout: the
// switchover is aborted at a new token back at east, whose plan lifts the
// fence, and the reason says how far west got. West is never promoted.
func TestSwitchoverAbortedWhenTheTargetDoesNotCatchUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setup(t)
		r.SetPosition("east", 0x3B4A0000, false)
		r.SetPosition("west", 0x3A000000, true)
		prep := prepareSwitchover(t, l, "west")
		f := startFake(t, &actions.Reconciler{Leader: l, Runner: r})
		defer f.stop()
		f.until(5*time.Second, func() bool { return len(stepsAt(l, prep, actions.StepCatchUp)) > 0 })
		f.advance(actions.DefaultSwitchoverTimeout - time.Second)
		if g, _ := l.FSM.Group("app"); g.GetStatus().GetToken() != prep {
			t.Fatalf("gave up before switchover_timeout: token %d", g.GetStatus().GetToken())
		}
		f.until(5*time.Second, func() bool {
			g, _ := l.FSM.Group("app")
			return g.GetStatus().GetToken() == prep+1 && slices.Contains(steps(l), actions.StepSettle)
		})
		g, _ := l.FSM.Group("app")
		last := g.GetStatus().GetHistory()[len(g.GetStatus().GetHistory())-1]
		if last.GetPhase() != fsm.PhaseAbort || g.GetStatus().GetActiveSite() != "east" || g.GetStatus().GetPending() != nil {
			t.Fatalf("after the timeout: active %s, pending %v, last transition %v", g.GetStatus().GetActiveSite(), g.GetStatus().GetPending(), last)
		}
		if !strings.Contains(last.GetReason(), "did not catch up within switchover_timeout 30s") || !strings.Contains(last.GetReason(), "0/3A000000") {
			t.Errorf("abort reason %q does not say why", last.GetReason())
		}
		for _, c := range callsFrom(r, prep) {
			if strings.HasSuffix(c, " west") && strings.HasPrefix(c, "promote") {
				t.Errorf("west promoted: %q", callsFrom(r, prep))
			}
		}
		if !slices.Contains(callsFrom(r, prep), "promote app@3 east") {
			t.Errorf("east's fence not lifted by a promote at the new token: %q", callsFrom(r, prep))
		}
	})
}

// A catch-up that fails rather than waits (the target turns out to be a
// primary, an old primary never rebuilt) backs off, but not past switchover_timeout: the old primary is
// fenced meanwhile, and the abort that gives it back comes at the
// deadline, not at the end of a backoff that outgrew it.
func TestFailingCatchUpAbortsAtTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setup(t)
		r.SetPosition("east", 0x3B4A0000, false)
		r.SetPosition("west", 0x3B4A0000, false)
		prep := prepareSwitchover(t, l, "west")
		f := startFake(t, &actions.Reconciler{Leader: l, Runner: r, MinBackoff: 3 * time.Second, MaxBackoff: 10 * time.Minute})
		defer f.stop()
		f.until(5*time.Second, func() bool { return len(stepsAt(l, prep, actions.StepCatchUp)) > 0 })
		f.advance(actions.DefaultSwitchoverTimeout - time.Second)
		if g, _ := l.FSM.Group("app"); g.GetStatus().GetToken() != prep {
			t.Fatalf("gave up before switchover_timeout: token %d", g.GetStatus().GetToken())
		}
		f.until(3*time.Second, func() bool {
			g, _ := l.FSM.Group("app")
			return g.GetStatus().GetToken() == prep+1
		})
		g, _ := l.FSM.Group("app")
		if last := g.GetStatus().GetHistory()[len(g.GetStatus().GetHistory())-1]; last.GetPhase() != fsm.PhaseAbort {
			t.Fatalf("after the deadline: last transition %v, want an abort", last)
		}
	})
}
