package actions_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/actionstest"
	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// setupDataDir is setup with a data_dir at both sites: a witness there
// can demote the database.
func setupDataDir(t *testing.T) (*actionstest.Leader, *actionstest.Runner) {
	t.Helper()
	spec := pgDNSGroup("app")
	spec.Actions.Postgres.DataDir = map[string]string{"east": "/var/lib/postgresql/15/main", "west": "/var/lib/postgresql/15/main"}
	l := &actionstest.Leader{FSM: fsm.New()}
	if _, err := l.Apply(context.Background(), &witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{spec}}); err != nil {
		t.Fatal(err)
	}
	return l, actionstest.NewRunner()
}

// fenceResult is the successful fence step's result at token, or nil.
func fenceResult(l *actionstest.Leader, token uint64) *witnessv1.StepResult {
	g, _ := l.FSM.Group("app")
	for _, s := range g.GetStatus().GetSteps() {
		if s.GetToken() == token && s.GetStep() == actions.StepFence && s.GetOk() {
			return s
		}
	}
	return nil
}

// A switchover fences the old primary over SQL first, which leaves it
// running so that WAL still on its way reaches the target, then, at the
// move's token and before the target is promoted, asks the old site's
// witness to demote it with a fast stop. Both are recorded with their
// layer.
func TestSwitchoverFencesOverSQLThenDemotesAtTheMove(t *testing.T) {
	l, r := setupDataDir(t)
	prep := prepareSwitchover(t, l, "west")
	runUntil(t, l, r, func() bool {
		g, _ := l.FSM.Group("app")
		return g.GetStatus().GetActiveSite() == "west" && slices.Contains(steps(l), actions.StepSettle)
	})
	want := []string{"fence app@2 east", "demote app@3 east fast", "promote app@3 west", "dns app@3 west", "settle app@3 west"}
	if diff := cmp.Diff(want, callsFrom(r, prep)); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if got := fenceResult(l, prep).GetFencedBy(); got != actions.FencedBySQL {
		t.Errorf("first phase's fence confirmed by %q, want %q", got, actions.FencedBySQL)
	}
	if got := fenceResult(l, prep+1).GetFencedBy(); got != actions.FencedByDemote {
		t.Errorf("move's fence confirmed by %q, want %q", got, actions.FencedByDemote)
	}
	if diff := cmp.Diff([]string{"ok " + actions.RuleFenceConfirmed}, promoteResults(l)); diff != "" {
		t.Errorf("promote results (-want +got):\n%s", diff)
	}
}

// When the SQL fence of the first phase fails (a role that cannot be
// fenced), the old site's witness demotes the database instead, and the
// move needs no second fence.
func TestSwitchoverDemotesWhenTheSQLFenceFails(t *testing.T) {
	l, r := setupDataDir(t)
	r.Fail(actions.StepFence, errors.New("role app is a superuser"))
	prep := prepareSwitchover(t, l, "west")
	runUntil(t, l, r, func() bool {
		g, _ := l.FSM.Group("app")
		return g.GetStatus().GetActiveSite() == "west" && slices.Contains(steps(l), actions.StepSettle)
	})
	want := []string{"demote app@2 east fast", "promote app@3 west", "dns app@3 west", "settle app@3 west"}
	if diff := cmp.Diff(want, callsFrom(r, prep)); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if got := fenceResult(l, prep).GetFencedBy(); got != actions.FencedByDemote {
		t.Errorf("fence confirmed by %q, want %q", got, actions.FencedByDemote)
	}
}

// A failover asks for an immediate stop.
func TestFailoverDemotesWithAnImmediateStop(t *testing.T) {
	l, r := setupDataDir(t)
	tok := failover(t, l, "west")
	runUntil(t, l, r, func() bool { return slices.Contains(steps(l), actions.StepSettle) })
	want := []string{"demote app@2 east immediate", "promote app@2 west", "dns app@2 west", "settle app@2 west"}
	if diff := cmp.Diff(want, callsFrom(r, tok)); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if got := fenceResult(l, tok).GetFencedBy(); got != actions.FencedByDemote {
		t.Errorf("fence confirmed by %q, want %q", got, actions.FencedByDemote)
	}
}

// A demotion that is refused or gets no answer falls back to the SQL
// fence, which confirms the fence on its own: at the move's token, after
// the first phase's SQL fence.
func TestRefusedDemotionFallsBackToTheSQLFence(t *testing.T) {
	l, r := setupDataDir(t)
	r.Fail(actionstest.StepDemote, errors.New("no live witness at the site"))
	prep := prepareSwitchover(t, l, "west")
	runUntil(t, l, r, func() bool { return slices.Contains(steps(l), actions.StepSettle) })
	want := []string{"fence app@2 east", "fence app@3 east", "promote app@3 west", "dns app@3 west", "settle app@3 west"}
	if diff := cmp.Diff(want, callsFrom(r, prep)); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if got := fenceResult(l, prep+1).GetFencedBy(); got != actions.FencedBySQL {
		t.Errorf("move's fence confirmed by %q, want %q", got, actions.FencedBySQL)
	}
}

// Without a data_dir for the old site there is nothing to ask its
// witness: the SQL fence is the fence.
func TestNoDataDirFencesOverSQL(t *testing.T) {
	l, r := setup(t)
	prep := prepareSwitchover(t, l, "west")
	runUntil(t, l, r, func() bool { return slices.Contains(steps(l), actions.StepSettle) })
	if got := r.Tries(actionstest.StepDemote); got != 0 {
		t.Errorf("demotion asked %d times of a site without a data_dir", got)
	}
	if got := fenceResult(l, prep).GetFencedBy(); got != actions.FencedBySQL {
		t.Errorf("fence confirmed by %q, want %q", got, actions.FencedBySQL)
	}
}

// When neither layer confirms the fence, a switchover promotes nothing:
// the demotion refused for a stale token (the site's witness holds a newer
// one) or unreachable, and the SQL fence failing. It ends in an abort at
// east, whose reason names both failures.
func TestSwitchoverNotPromotedWhenNeitherLayerFences(t *testing.T) {
	for _, tt := range []struct {
		name    string
		arrange func(r *actionstest.Runner)
		want    string
	}{
		{"stale token refused by the witness", func(r *actionstest.Runner) { r.SetSiteToken("east", 99) }, "stale token"},
		{"witness unreachable", func(r *actionstest.Runner) { r.Fail(actionstest.StepDemote, errors.New("no witness of east answered")) }, "no witness of east answered"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, r := setupDataDir(t)
			tt.arrange(r)
			r.Fail(actions.StepFence, errors.New("role app is a superuser"))
			prep := prepareSwitchover(t, l, "west")
			runUntil(t, l, r, func() bool {
				g, _ := l.FSM.Group("app")
				return g.GetStatus().GetToken() == prep+1 && slices.Contains(steps(l), actions.StepSettle)
			})
			g, _ := l.FSM.Group("app")
			last := g.GetStatus().GetHistory()[len(g.GetStatus().GetHistory())-1]
			if g.GetStatus().GetActiveSite() != "east" || last.GetPhase() != fsm.PhaseAbort {
				t.Fatalf("active at %s, last transition %v; want an abort at east", g.GetStatus().GetActiveSite(), last)
			}
			if !strings.Contains(last.GetReason(), "superuser") || !strings.Contains(last.GetReason(), tt.want) {
				t.Errorf("abort reason %q does not name both layers' failures", last.GetReason())
			}
			if got := r.Tries(actionstest.StepDemote); got != actions.SwitchoverFenceAttempts {
				t.Errorf("demotion asked %d times, want %d", got, actions.SwitchoverFenceAttempts)
			}
			for _, c := range r.Calls() {
				if c.Site == "west" {
					t.Errorf("%v ran although east was never fenced", c)
				}
			}
		})
	}
}

// operatorFailover commits an operator's failover to west, attesting the
// old site down or not.
func operatorFailover(t *testing.T, l *actionstest.Leader, oldSiteDown bool) uint64 {
	t.Helper()
	g, _ := l.FSM.Group("app")
	res, err := l.Apply(context.Background(), &witnessv1.TransitionCommand{
		Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: g.GetStatus().GetToken(), ToSite: "west"}},
		Kind:  witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER, Operator: true, OldSiteDown: oldSiteDown,
		Reason: "east lost power; facilities confirmed", By: "alice",
	})
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	return res.Tokens["app"]
}

// An operator's failover of a site that can be neither fenced nor shown
// to have fenced itself waits like any failover; with old_site_down it is
// promoted, by that rule.
func TestOperatorFailoverPromotesOnOldSiteDownOnly(t *testing.T) {
	t.Run("without the attestation it waits", func(t *testing.T) {
		l, r := setupDataDir(t)
		r.Fail(actionstest.StepDemote, errors.New("old site unreachable"))
		r.Fail(actions.StepFence, errors.New("old site unreachable"))
		tok := operatorFailover(t, l, false)
		ctx, cancel := context.WithCancel(context.Background())
		rec := &actions.Reconciler{Leader: l, Runner: r, Node: "n1", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Tick: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}
		done := make(chan struct{})
		go func() { rec.Run(ctx); close(done) }()
		deadline := time.Now().Add(5 * time.Second)
		for l.LeaseAsks() < 5 || r.Tries(actions.StepFence) < 2 {
			if time.Now().After(deadline) {
				t.Fatal("the reconciler did not retry the fence and look at the lease")
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		<-done
		if promoted(r, tok) {
			t.Fatalf("promoted without a fence, a lease or the operator's word: %v", r.Calls())
		}
	})
	t.Run("with old_site_down", func(t *testing.T) {
		l, r := setup(t)
		r.Fail(actions.StepFence, errors.New("old site unreachable"))
		tok := operatorFailover(t, l, true)
		runUntil(t, l, r, func() bool { return slices.Contains(steps(l), actions.StepSettle) })
		if !promoted(r, tok) {
			t.Fatal("not promoted")
		}
		got := promoteResults(l)
		if got[len(got)-1] != "ok "+actions.RuleOldSiteDown {
			t.Errorf("promote results %q, want the last ok by %s", got, actions.RuleOldSiteDown)
		}
		if r.Tries(actions.StepFence) == 0 {
			t.Error("promoted on the operator's word without trying the fence first")
		}
	})
	t.Run("an expired lease still comes first", func(t *testing.T) {
		l, r := setupDataDir(t)
		r.Fail(actionstest.StepDemote, errors.New("old site unreachable"))
		l.SetLeaseExpired("east", true)
		r.Fail(actions.StepFence, errors.New("old site unreachable"))
		operatorFailover(t, l, true)
		runUntil(t, l, r, func() bool { return slices.Contains(steps(l), actions.StepSettle) })
		got := promoteResults(l)
		if got[len(got)-1] != "ok "+actions.RuleLeaseExpired {
			t.Errorf("promote results %q, want the last ok by %s", got, actions.RuleLeaseExpired)
		}
	})
}

// The lease rule proves that the old site's witness was silent, not that
// its fence held. An SQL self-fence can be refused by the database (too
// many connections, a broken target); a local demotion cannot. So an
// expired lease promotes only a group whose old site's database its
// witness demotes locally (data_dir there); without one the failover
// waits for a confirmed fence or the operator's old_site_down.
func TestLeaseRuleOnlyWhereTheOldSiteDemotesLocally(t *testing.T) {
	t.Run("without a data_dir at the old site it waits", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l, r := setup(t)
			l.SetLeaseExpired("east", true)
			r.Fail(actions.StepFence, errors.New("too many clients already"))
			tok := failover(t, l, "west")
			f := startFake(t, &actions.Reconciler{Leader: l, Runner: r, Tick: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
			defer f.stop()
			f.until(5*time.Second, func() bool { return r.Tries(actions.StepFence) >= 3 })
			if promoted(r, tok) {
				t.Fatalf("promoted by the lease rule over an SQL self-fence that may have failed: %v", r.Calls())
			}
			waits := promoteResults(l)
			if len(waits) != 1 || !strings.Contains(waits[0], "data_dir") {
				t.Errorf("recorded promote results %q, want one wait that names the missing data_dir", waits)
			}
		})
	})
	t.Run("with a data_dir at the old site the lease rule promotes", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l, r := setupDataDir(t)
			l.SetLeaseExpired("east", true)
			r.Fail(actionstest.StepDemote, errors.New("old site unreachable"))
			r.Fail(actions.StepFence, errors.New("old site unreachable"))
			tok := failover(t, l, "west")
			f := startFake(t, &actions.Reconciler{Leader: l, Runner: r, Tick: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
			defer f.stop()
			f.until(5*time.Second, func() bool { return promoted(r, tok) })
			got := promoteResults(l)
			if got[len(got)-1] != "ok "+actions.RuleLeaseExpired {
				t.Errorf("promote results %q, want the last ok by %s", got, actions.RuleLeaseExpired)
			}
		})
	})
}

// A new group's plan fences every other site the way a move fences its
// old site: the witness there demotes the database where it can (a
// standby that stays one is only stamped), and the SQL fence is the
// fallback when no witness there answers.
func TestCreationFencesByDemotionThenOverSQL(t *testing.T) {
	for _, tt := range []struct {
		name       string
		demoteFail bool
		want       []string
		by         string
	}{
		{"demoted", false, []string{"demote app@1 west immediate", "promote app@1 east", "dns app@1 east", "settle app@1 east"}, actions.FencedByDemote},
		{"no witness answers", true, []string{"fence:west app@1 west", "promote app@1 east", "dns app@1 east", "settle app@1 east"}, actions.FencedBySQL},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, r := setupDataDir(t)
			if tt.demoteFail {
				r.Fail(actionstest.StepDemote, errors.New("no live witness at the site"))
			}
			runUntil(t, l, r, func() bool { return slices.Contains(steps(l), actions.StepSettle) })
			if diff := cmp.Diff(tt.want, callsFrom(r, 1)); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			g, _ := l.FSM.Group("app")
			var by string
			for _, s := range g.GetStatus().GetSteps() {
				if s.GetStep() == actions.StepCreationFence+"west" && s.GetOk() {
					by = s.GetFencedBy()
				}
			}
			if by != tt.by {
				t.Errorf("creation fence confirmed by %q, want %q", by, tt.by)
			}
		})
	}
}
