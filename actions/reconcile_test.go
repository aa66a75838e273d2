package actions_test

import (
	"bytes"
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
	"github.com/sitewitness/witness/clock"
	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

func pgDNSGroup(name string) *witnessv1.GroupSpec {
	return &witnessv1.GroupSpec{
		Name:  name,
		Sites: []*witnessv1.SiteSpec{{Name: "east"}, {Name: "west"}},
		Actions: &witnessv1.Actions{
			Postgres: &witnessv1.PostgresAction{Dsn: map[string]string{"east": "e", "west": "w"}},
			Dns:      &witnessv1.DNSAction{Server: "ns:53", Records: []*witnessv1.DNSRecord{{Name: "app.example.test.", Type: "A", Ttl: 5}}},
		},
	}
}

func setup(t *testing.T) (*actionstest.Leader, *actionstest.Runner) {
	t.Helper()
	l := &actionstest.Leader{FSM: fsm.New()}
	if _, err := l.Apply(context.Background(), &witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{pgDNSGroup("app")}}); err != nil {
		t.Fatal(err)
	}
	return l, actionstest.NewRunner()
}

func failover(t *testing.T, l *actionstest.Leader, to string) uint64 {
	t.Helper()
	g, _ := l.FSM.Group("app")
	res, err := l.Apply(context.Background(), &witnessv1.TransitionCommand{
		Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: g.GetStatus().GetToken(), ToSite: to}},
		Kind:  witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER,
	})
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	return res.Tokens["app"]
}

// runUntil runs a reconciler on real time until cond holds or 5 s pass,
// for runners that reach real systems; runOnFake serves the others.
func runUntil(t *testing.T, l actions.Leader, r actions.Runner, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rec := &actions.Reconciler{Leader: l, Runner: r, Node: "n1", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Tick: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	done := make(chan struct{})
	go func() { rec.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func steps(l *actionstest.Leader) []string {
	g, _ := l.FSM.Group("app")
	var out []string
	for _, s := range g.GetStatus().GetSteps() {
		if s.GetToken() == g.GetStatus().GetToken() && s.GetOk() {
			out = append(out, s.GetStep())
		}
	}
	return out
}

func TestPlanRunsInOrderAndRecordsEveryStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setup(t)
		tok := failover(t, l, "west")
		runOnFake(t, l, r, func() bool { return len(steps(l)) == 4 })
		// Whether the initial token's plan ran before the failover was
		// committed does not matter; the new token's plan must be whole and
		// in order.
		var got []string
		for _, c := range r.Calls() {
			if c.Token == tok {
				got = append(got, c.String())
			}
		}
		want := []string{"fence app@2 east", "promote app@2 west", "dns app@2 west", "settle app@2 west"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"fence", "promote", "dns", "settle"}, steps(l)); diff != "" {
			t.Errorf("recorded steps at token %d (-want +got):\n%s", tok, diff)
		}
	})
}

func TestNewLeaderResumesWithoutRedoingSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setup(t)
		failover(t, l, "west")
		// The first leader fences and promotes, then is deposed while the
		// DNS step is in flight.
		r.Block(actions.StepDNS)
		old := startFake(t, &actions.Reconciler{Leader: l, Runner: r, Node: "old"})
		old.stop() // startFake returned once it waited in the DNS step
		if diff := cmp.Diff([]string{"fence", "promote"}, steps(l)); diff != "" {
			t.Fatalf("recorded before the new leader (-want +got):\n%s", diff)
		}
		r.Release(actions.StepDNS)

		// A new leader, with no memory but the replicated state, finishes.
		runOnFake(t, l, r, func() bool { return len(steps(l)) == 4 })
		count := map[string]int{}
		for _, c := range r.Calls() {
			if c.Token == 2 {
				count[c.Step]++
			}
		}
		if diff := cmp.Diff(map[string]int{"fence": 1, "promote": 1, "dns": 1, "settle": 1}, count); diff != "" {
			t.Errorf("step runs at token 2 (-want +got):\n%s", diff)
		}
	})
}

func TestRequiredFailureHoldsLaterStepsAndIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setupDataDir(t) // the lease rule needs a local demotion at the old site
		r.Fail(actionstest.StepDemote, errors.New("old site unreachable"))
		l.SetLeaseExpired("east", true) // the fence fails, but east has fenced itself
		failover(t, l, "west")
		r.Fail(actions.StepPromote, errors.New("connection refused"))
		r.Fail(actions.StepFence, errors.New("old site unreachable"))
		runOnFake(t, l, r, func() bool {
			g, _ := l.FSM.Group("app")
			n := 0
			for _, s := range g.GetStatus().GetSteps() {
				if s.GetStep() == actions.StepPromote && !s.GetOk() && s.GetToken() == 2 {
					n++
				}
			}
			return n >= 2 // retried
		})
		for _, c := range r.Calls() {
			if c.Token == 2 && (c.Step == actions.StepDNS || c.Step == actions.StepSettle) {
				t.Fatalf("%v ran while the required promote step was failing", c)
			}
		}
		g, _ := l.FSM.Group("app")
		var last *witnessv1.StepResult
		for _, s := range g.GetStatus().GetSteps() {
			if s.GetStep() == actions.StepPromote {
				last = s
			}
		}
		if last.GetError() == "" || last.GetAttempt() < 2 {
			t.Errorf("failed promote recorded as %v", last)
		}
		// Once it works, the plan completes even though the best-effort fence
		// still fails.
		r.Fail(actions.StepPromote, nil)
		runOnFake(t, l, r, func() bool { return len(steps(l)) == 3 })
		if diff := cmp.Diff([]string{"promote", "dns", "settle"}, steps(l)); diff != "" {
			t.Errorf("recorded (-want +got):\n%s", diff)
		}
	})
}

func TestDeposedLeaderRunsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setup(t)
		failover(t, l, "west")
		l.SetLeading(false)
		f := startFake(t, &actions.Reconciler{Leader: l, Runner: r, Node: "old"})
		for range 20 {
			f.advance(f.rec.Tick)
		}
		f.stop()
		if got := r.Calls(); len(got) != 0 {
			t.Errorf("a deposed leader ran %v", got)
		}
	})
}

func TestPlan(t *testing.T) {
	l, _ := setup(t)
	g, _ := l.FSM.Group("app")
	if diff := cmp.Diff([]string{"fence:west", "promote", "dns", "settle"}, actions.Plan(g)); diff != "" {
		t.Errorf("initial plan (-want +got):\n%s", diff)
	}
	failover(t, l, "west")
	g, _ = l.FSM.Group("app")
	if diff := cmp.Diff([]string{"fence", "promote", "dns", "settle"}, actions.Plan(g)); diff != "" {
		t.Errorf("failover plan (-want +got):\n%s", diff)
	}
}

// deposedDNS answers the DNS step only once the reconciler's context has
// ended, as a target answers a leader that lost its leadership meanwhile.
type deposedDNS struct {
	*actionstest.Runner
	entered chan struct{}
}

func (d deposedDNS) SwitchDNS(ctx context.Context, _ *witnessv1.Group) error {
	close(d.entered)
	<-ctx.Done()
	return errors.New("update app.example.test.: server answered NXRRSET (prerequisite failed)")
}

func TestOutcomeAfterLeadershipEndsIsLogged(t *testing.T) {
	l, r := setup(t)
	failover(t, l, "west")
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	d := deposedDNS{Runner: r, entered: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&actions.Reconciler{Leader: l, Runner: d, Node: "old", Log: slog.New(slog.NewTextHandler(&logs, nil)), Tick: 10 * time.Millisecond}).Run(ctx)
	}()
	<-d.entered
	cancel() // leadership lost while the update was in flight
	<-done
	got := logs.String()
	if !strings.Contains(got, "not recorded") || !strings.Contains(got, "NXRRSET") || !strings.Contains(got, "step=dns") {
		t.Errorf("the deposed leader's DNS outcome is not in its log:\n%s", got)
	}
	for _, s := range steps(l) {
		if strings.HasPrefix(s, "dns") {
			t.Errorf("a deposed leader recorded %q", s)
		}
	}
}

// TestPokeStartsAPlanBeforeTheTick: with a tick of an hour, a committed
// failover is carried out at once when the reconciler is poked, with the
// clock standing still.
func TestPokeStartsAPlanBeforeTheTick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setup(t)
		f := startFake(t, &actions.Reconciler{Leader: l, Runner: r, Tick: time.Hour})
		defer f.stop()
		if len(r.Calls()) == 0 {
			t.Fatal("the first pass at start ran nothing")
		}
		tok := failover(t, l, "west")
		f.rec.Poke()
		synctest.Wait()
		if !promoted(r, tok) {
			t.Fatalf("the failover's promote did not run after a poke; calls %v", r.Calls())
		}
	})
}

// A failing step waits for its backoff even when the reconciler is poked;
// RetryNow, called when a failing site is seen again, runs it at once.
func TestRetryNowSkipsTheBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setupDataDir(t) // the lease rule needs a local demotion at the old site
		r.Fail(actionstest.StepDemote, errors.New("old site unreachable"))
		l.SetLeaseExpired("east", true)
		r.Fail(actions.StepFence, errors.New("old site unreachable"))
		rec := &actions.Reconciler{Leader: l, Runner: r, Tick: time.Hour, MinBackoff: time.Hour, MaxBackoff: time.Hour,
			Clock: clock.NewFake(time.Date(2031, 5, 1, 12, 0, 0, 0, time.UTC))}
		retried := make(chan struct{})
		go func() { rec.RetryNow(); close(retried) }() // a site may recover while the reconciler starts
		f := startFake(t, rec)
		defer f.stop()
		<-retried
		fences := func() int { return r.Tries(actions.StepFence) }
		failover(t, l, "west")
		rec.Poke()
		synctest.Wait()
		if !slices.Contains(steps(l), actions.StepDNS) {
			t.Fatalf("the plan did not go past the failed best-effort fence: %v", steps(l))
		}
		if got := fences(); got != 1 {
			t.Fatalf("fence ran %d times, want once", got)
		}
		// The old site is back; neither a poke nor time short of the
		// backoff cuts it short.
		r.Fail(actions.StepFence, nil)
		rec.Poke()
		synctest.Wait()
		f.advance(59 * time.Minute)
		if got := fences(); got != 1 {
			t.Fatalf("fence ran %d times within its backoff, want once", got)
		}
		if waiting := rec.RetryNow(); waiting != 1 {
			t.Errorf("RetryNow found %d waiting steps, want 1 (the fence)", waiting)
		}
		synctest.Wait()
		if !slices.Contains(steps(l), actions.StepFence) {
			t.Errorf("the fence not recorded ok after RetryNow: %v", steps(l))
		}
	})
}

// A poke that arrives while a group's plan is running is not lost: the
// group is looked at again as soon as that run ends.
func TestPokeDuringARunIsNotLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setup(t)
		r.Block(actions.StepPromote)
		entered := make(chan string, 16)
		r.Entered = entered
		f := startFake(t, &actions.Reconciler{Leader: l, Runner: r, Tick: time.Hour})
		defer f.stop()
		if !slices.Contains(drain(entered), actions.StepPromote) {
			t.Fatal("the first run is not in its promote step")
		}
		tok := failover(t, l, "west")
		f.rec.Poke()
		synctest.Wait() // the poke is taken while the run is busy
		r.Release(actions.StepPromote)
		synctest.Wait()
		if !promoted(r, tok) {
			t.Fatalf("the failover's plan did not start after the busy run ended; calls %v", r.Calls())
		}
	})
}

// drain returns what c holds now.
func drain(c chan string) []string {
	var out []string
	for {
		select {
		case s := <-c:
			out = append(out, s)
		default:
			return out
		}
	}
}

func switchover(t *testing.T, l *actionstest.Leader, to string) uint64 {
	t.Helper()
	g, _ := l.FSM.Group("app")
	res, err := l.Apply(context.Background(), &witnessv1.TransitionCommand{
		Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: g.GetStatus().GetToken(), ToSite: to}},
		Kind:  witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER,
	})
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	return res.Tokens["app"]
}

// promoteResults are the promote results recorded at the current token:
// "ok rule" or "error".
func promoteResults(l *actionstest.Leader) []string {
	g, _ := l.FSM.Group("app")
	var out []string
	for _, s := range g.GetStatus().GetSteps() {
		if s.GetToken() != g.GetStatus().GetToken() || s.GetStep() != actions.StepPromote {
			continue
		}
		if s.GetOk() {
			out = append(out, "ok "+s.GetRule())
		} else {
			out = append(out, "waits: "+s.GetError())
		}
	}
	return out
}

func promoted(r *actionstest.Runner, token uint64) bool {
	return slices.ContainsFunc(r.Calls(), func(c actionstest.Call) bool { return c.Step == actions.StepPromote && c.Token == token })
}

// A failover never promotes after a failed fence until a quorum of voters
// sees the old site's lease expired; the wait is recorded once, and the
// promotion then records the rule that allowed it.
func TestFailoverPromotesAfterAFailedFenceOnlyOnceTheLeaseExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setupDataDir(t) // the lease rule needs a local demotion at the old site
		r.Fail(actionstest.StepDemote, errors.New("old site unreachable"))
		r.Fail(actions.StepFence, errors.New("old site unreachable"))
		tok := failover(t, l, "west")
		f := startFake(t, &actions.Reconciler{Leader: l, Runner: r, Tick: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
		defer f.stop()
		f.until(5*time.Second, func() bool { return l.LeaseAsks() >= 5 && r.Tries(actions.StepFence) >= 2 })
		if promoted(r, tok) {
			t.Fatalf("promoted after a failed fence while east's lease is held: %v", r.Calls())
		}
		waits := promoteResults(l)
		if len(waits) != 1 || !strings.Contains(waits[0], "fence of east not confirmed") {
			t.Fatalf("recorded promote results %q, want the wait once", waits)
		}
		l.SetLeaseExpired("east", true)
		f.until(5*time.Second, func() bool { return slices.Contains(steps(l), actions.StepSettle) })
		got := promoteResults(l)
		if got[len(got)-1] != "ok "+actions.RuleLeaseExpired {
			t.Errorf("promote results %q, want the last ok by %s", got, actions.RuleLeaseExpired)
		}
	})
}

// A switchover whose fence fails promotes nothing and switches nothing,
// whatever the lease says.
func TestSwitchoverNeverPromotesWithoutAConfirmedFence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setup(t)
		l.SetLeaseExpired("east", true)
		r.Fail(actions.StepFence, errors.New("too many clients already"))
		tok := switchover(t, l, "west")
		f := startFake(t, &actions.Reconciler{Leader: l, Runner: r, Tick: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
		f.until(5*time.Second, func() bool { return r.Tries(actions.StepFence) >= 3 })
		for _, c := range r.Calls() {
			if c.Token == tok && c.Step != actions.StepFence {
				t.Errorf("%v ran while the switchover's fence fails", c)
			}
		}
		r.Fail(actions.StepFence, nil)
		f.until(5*time.Second, func() bool { return slices.Contains(steps(l), actions.StepSettle) })
		f.stop()
		if diff := cmp.Diff([]string{"ok " + actions.RuleFenceConfirmed}, promoteResults(l)); diff != "" {
			t.Errorf("promote results (-want +got):\n%s", diff)
		}
	})
}

// A leader paused between verifying its leadership and acting does not
// start the step when it resumes.
func TestStepNotStartedWhenLeadershipWasVerifiedTooLongAgo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setup(t)
		failover(t, l, "west")
		fake := clock.NewFake(time.Unix(5000, 0))
		verified := 0
		pause := func(d time.Duration) func() { return func() { verified++; fake.Advance(d) } }
		l.AfterVerify = pause(2 * time.Second)
		// A tick of an hour: the pause, which moves the clock, does not
		// bring the next look.
		f := startFake(t, &actions.Reconciler{Leader: l, Runner: r, Tick: time.Hour, LeaderLease: time.Second, Clock: fake})
		f.stop()
		if verified == 0 {
			t.Fatal("leadership never verified")
		}
		if got := r.Calls(); len(got) != 0 {
			t.Fatalf("steps started after a pause longer than the leader lease: %v", got)
		}
		// Within the lease, the same plan runs.
		l.AfterVerify = pause(100 * time.Millisecond)
		f = startFake(t, &actions.Reconciler{Leader: l, Runner: r, Tick: time.Hour, LeaderLease: time.Second, Clock: fake})
		f.stop()
		if !slices.Contains(steps(l), actions.StepPromote) {
			t.Errorf("the plan did not run with pauses within the lease: %v", steps(l))
		}
	})
}

func prepareSwitchover(t *testing.T, l *actionstest.Leader, to string) uint64 {
	t.Helper()
	g, _ := l.FSM.Group("app")
	res, err := l.Apply(context.Background(), &witnessv1.TransitionCommand{
		Moves:   []*witnessv1.Move{{Group: "app", ExpectedToken: g.GetStatus().GetToken(), ToSite: to}},
		Kind:    witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER,
		Prepare: true, Reason: "planned",
	})
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	return res.Tokens["app"]
}

func callsFrom(r *actionstest.Runner, token uint64) []string {
	var out []string
	for _, c := range r.Calls() {
		if c.Token >= token {
			out = append(out, c.String())
		}
	}
	return out
}

// A two-phase switchover: the old site is fenced at the first token while
// the group stays there, and only then does the move commit and the new
// site get promoted, without fencing again.
func TestSwitchoverFencesBeforeTheMoveCommits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setup(t)
		prep := prepareSwitchover(t, l, "west")
		runOnFake(t, l, r, func() bool {
			g, _ := l.FSM.Group("app")
			return g.GetStatus().GetActiveSite() == "west" && slices.Contains(steps(l), actions.StepSettle)
		})
		want := []string{"fence app@2 east", "promote app@3 west", "dns app@3 west", "settle app@3 west"}
		if diff := cmp.Diff(want, callsFrom(r, prep)); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"ok " + actions.RuleFenceConfirmed}, promoteResults(l)); diff != "" {
			t.Errorf("promote results (-want +got):\n%s", diff)
		}
	})
}

// A switchover whose fence keeps failing is given up: a new token at the
// old site, whose plan lifts what the fence did; the target is never
// promoted.
func TestSwitchoverWhoseFenceFailsIsAbortedAtANewToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setup(t)
		r.Fail(actions.StepFence, errors.New("password authentication failed"))
		prep := prepareSwitchover(t, l, "west")
		runOnFake(t, l, r, func() bool {
			g, _ := l.FSM.Group("app")
			return g.GetStatus().GetToken() == prep+1 && slices.Contains(steps(l), actions.StepSettle)
		})
		g, _ := l.FSM.Group("app")
		last := g.GetStatus().GetHistory()[len(g.GetStatus().GetHistory())-1]
		if last.GetPhase() != fsm.PhaseAbort || g.GetStatus().GetActiveSite() != "east" || g.GetStatus().GetPending() != nil {
			t.Fatalf("after the failed fence: active %s, pending %v, last transition %v", g.GetStatus().GetActiveSite(), g.GetStatus().GetPending(), last)
		}
		if !strings.Contains(last.GetReason(), "password authentication failed") {
			t.Errorf("abort reason %q does not say why", last.GetReason())
		}
		if got := r.Tries(actions.StepFence); got != actions.SwitchoverFenceAttempts {
			t.Errorf("fence tried %d times, want %d", got, actions.SwitchoverFenceAttempts)
		}
		want := []string{"promote app@3 east", "dns app@3 east", "settle app@3 east"}
		if diff := cmp.Diff(want, callsFrom(r, prep)); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
	})
}
