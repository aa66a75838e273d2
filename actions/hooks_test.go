package actions_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/actionstest"
	hookexec "github.com/sitewitness/witness/actions/exec"
	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// hooked is a group with a database, DNS and a hook at every step the plan
// runs hooks at, two of them at promote to show they keep spec order.
func hooked() *witnessv1.GroupSpec {
	spec := pgDNSGroup("app")
	spec.Actions.Hooks = []*witnessv1.HookAction{
		{Name: "stop-old", Step: actions.HookFence, RunOn: "east", BestEffort: true},
		{Name: "warm-cache", Step: actions.HookPromote, RunOn: actions.RunOnLeader},
		{Name: "start-workers", Step: actions.HookAfterSwitch, RunOn: "west"},
		{Name: "local", Step: actions.HookLocalFence},
		{Name: "check-replicas", Step: actions.HookPromote, RunOn: actions.RunOnLeader},
	}
	spec.Actions.Notify = []*witnessv1.NotifyAction{{Kind: "webhook", Url: "http://127.0.0.1:1/"}}
	return spec
}

func setupSpec(t *testing.T, spec *witnessv1.GroupSpec) (*actionstest.Leader, *actionstest.Runner) {
	t.Helper()
	l := &actionstest.Leader{FSM: fsm.New()}
	if res, err := l.Apply(context.Background(), &witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{spec}}); err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	return l, actionstest.NewRunner()
}

func TestPlanOrdersHooksByStep(t *testing.T) {
	l, _ := setupSpec(t, hooked())
	g, _ := l.FSM.Group("app")
	want := []string{
		"fence:west", "promote", "hook:promote:warm-cache", "hook:promote:check-replicas",
		"dns", "hook:after_switch:start-workers", "settle",
	}
	if diff := cmp.Diff(want, actions.Plan(g)); diff != "" {
		t.Errorf("plan at creation: the other site fenced, no fence hooks, no notify (-want +got):\n%s", diff)
	}
	failover(t, l, "west")
	g, _ = l.FSM.Group("app")
	want = []string{
		"fence", "hook:fence:stop-old",
		"promote", "hook:promote:warm-cache", "hook:promote:check-replicas",
		"dns", "hook:after_switch:start-workers", "notify", "settle",
	}
	if diff := cmp.Diff(want, actions.Plan(g)); diff != "" {
		t.Errorf("plan of a failover (-want +got):\n%s", diff)
	}

	// Without a database or DNS the hooks still run at their steps.
	spec := hooked()
	spec.Actions.Postgres, spec.Actions.Dns, spec.Actions.Notify = nil, nil, nil
	l, _ = setupSpec(t, spec)
	failover(t, l, "west")
	g, _ = l.FSM.Group("app")
	want = []string{"hook:fence:stop-old", "hook:promote:warm-cache", "hook:promote:check-replicas", "hook:after_switch:start-workers"}
	if diff := cmp.Diff(want, actions.Plan(g)); diff != "" {
		t.Errorf("plan of hooks only (-want +got):\n%s", diff)
	}
}

func TestHookStepNames(t *testing.T) {
	h := &witnessv1.HookAction{Name: "start:workers", Step: actions.HookAfterSwitch}
	step, name, ok := actions.ParseHookStep(actions.HookStep(h))
	if !ok || step != actions.HookAfterSwitch || name != "start:workers" {
		t.Errorf("ParseHookStep(HookStep) = %q %q %v", step, name, ok)
	}
	for _, s := range []string{actions.StepFence, actions.StepDNS, "hooks"} {
		if _, _, ok := actions.ParseHookStep(s); ok {
			t.Errorf("ParseHookStep(%q) took it for a hook", s)
		}
	}
}

func TestHookEvent(t *testing.T) {
	l, _ := setupSpec(t, hooked())
	failover(t, l, "west")
	g, _ := l.FSM.Group("app")
	got := map[string]hookexec.Event{}
	for _, h := range g.GetSpec().GetActions().GetHooks() {
		got[h.GetName()] = actions.HookEvent(g, h)
	}
	want := map[string]hookexec.Event{
		"stop-old":       {Group: "app", Token: 2, From: "east", To: "west", Step: "fence"},
		"warm-cache":     {Group: "app", Token: 2, From: "east", To: "west", Step: "promote"},
		"check-replicas": {Group: "app", Token: 2, From: "east", To: "west", Step: "promote"},
		"start-workers":  {Group: "app", Token: 2, From: "east", To: "west", Step: "after_switch"},
		// The site that fences itself is the one named FROM; nothing
		// was decided, so there is no TO.
		"local": {Group: "app", Token: 2, From: "west", To: "", Step: "local_fence"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// okSteps lists the steps recorded as ok at the group's current token.
func okSteps(l *actionstest.Leader, group string) []string {
	g, _ := l.FSM.Group(group)
	var out []string
	for _, s := range g.GetStatus().GetSteps() {
		if s.GetToken() == g.GetStatus().GetToken() && s.GetOk() {
			out = append(out, s.GetStep())
		}
	}
	return out
}

func TestEachHookIsRecordedAndNotRunAgainByANewLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setupSpec(t, hooked())
		tok := failover(t, l, "west")
		// The first leader gets as far as the second promote hook.
		r.Block("hook:promote:check-replicas")
		old := startFake(t, &actions.Reconciler{Leader: l, Runner: r, Node: "old"})
		old.stop() // startFake returned once it waited in that hook
		want := []string{"fence", "hook:fence:stop-old", "promote", "hook:promote:warm-cache"}
		if diff := cmp.Diff(want, okSteps(l, "app")); diff != "" {
			t.Fatalf("recorded before the new leader (-want +got):\n%s", diff)
		}
		r.Release("hook:promote:check-replicas")

		runOnFake(t, l, r, func() bool { return len(okSteps(l, "app")) == 9 })
		count := map[string]int{}
		for _, c := range r.Calls() {
			if c.Token == tok {
				count[c.Step]++
			}
		}
		for step, n := range count {
			if n != 1 {
				t.Errorf("step %s ran %d times at token %d", step, n, tok)
			}
		}
		if len(count) != 9 {
			t.Errorf("ran %d distinct steps at token %d, want 9: %v", len(count), tok, count)
		}
	})
}

func TestFailingHooks(t *testing.T) {
	t.Run("a best-effort fence hook does not hold up the plan", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l, r := setupSpec(t, hooked())
			failover(t, l, "west")
			r.Fail("hook:fence:stop-old", errors.New("east unreachable"))
			runOnFake(t, l, r, func() bool { return len(okSteps(l, "app")) == 8 })
			if diff := cmp.Diff([]string{"fence", "promote", "hook:promote:warm-cache", "hook:promote:check-replicas", "dns",
				"hook:after_switch:start-workers", "notify", "settle"}, okSteps(l, "app")); diff != "" {
				t.Errorf("recorded ok (-want +got):\n%s", diff)
			}
			if failed := failedAttempts(l, "hook:fence:stop-old"); failed == 0 {
				t.Error("the failing fence hook was not recorded as failed")
			}
		})
	})
	t.Run("a required promote hook holds up DNS and is retried", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l, r := setupSpec(t, hooked())
			failover(t, l, "west")
			r.Fail("hook:promote:warm-cache", errors.New("exit status 3"))
			runOnFake(t, l, r, func() bool { return failedAttempts(l, "hook:promote:warm-cache") >= 2 })
			for _, c := range r.Calls() {
				if c.Token == 2 && (c.Step == actions.StepDNS || c.Step == "hook:promote:check-replicas") {
					t.Fatalf("%v ran while the required hook before it failed", c)
				}
			}
			r.Fail("hook:promote:warm-cache", nil)
			runOnFake(t, l, r, func() bool { return len(okSteps(l, "app")) == 9 })
		})
	})
}

func failedAttempts(l *actionstest.Leader, step string) int {
	g, _ := l.FSM.Group("app")
	n := 0
	for _, s := range g.GetStatus().GetSteps() {
		if s.GetToken() == g.GetStatus().GetToken() && s.GetStep() == step && !s.GetOk() {
			n++
		}
	}
	return n
}

// A best-effort step that fails for ever (a fence hook at a site that is
// gone) is retried for ever, but its failures must not push the successes
// of the plan out of the bounded step record: the steps done would run
// again.
func TestEndlessFailureKeepsDoneStepsRecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, r := setupSpec(t, hooked())
		tok := failover(t, l, "west")
		r.Fail("hook:fence:stop-old", errors.New("east unreachable"))
		f := startFake(t, &actions.Reconciler{Leader: l, Runner: r, Tick: 5 * time.Millisecond, MaxBackoff: time.Millisecond})
		f.until(10*time.Second, func() bool { return r.Tries("hook:fence:stop-old") >= 2*fsm.StepLimit })
		f.stop()
		for _, c := range r.Calls() {
			if c.Token == tok && r.Tries(c.Step) != 1 {
				t.Errorf("step %s ran %d times", c.Step, r.Tries(c.Step))
			}
		}
		if got := len(okSteps(l, "app")); got != 8 {
			t.Errorf("%d ok steps recorded, want 8: %v", got, okSteps(l, "app"))
		}
		if failedAttempts(l, "hook:fence:stop-old") == 0 {
			t.Error("no failure of the fence hook recorded at all")
		}
	})
}

// siteRecorder is an actions.SiteHooks that records the requests.
type siteRecorder struct {
	mu   sync.Mutex
	reqs []string
	err  error
}

func (s *siteRecorder) RunHook(_ context.Context, site string, req actions.HookRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, site+" "+req.String())
	return s.err
}

func TestTargetsHookRoutesByRunOn(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "ran")
	spec := hooked()
	spec.Actions.Hooks[1].Command, spec.Actions.Hooks[1].Args = "sh", []string{"-c", `echo "$WITNESS_STEP $WITNESS_TOKEN $WITNESS_FROM $WITNESS_TO $WITNESS_NODE $WITNESS_SITE" > ` + out}
	l, _ := setupSpec(t, spec)
	failover(t, l, "west")
	g, _ := l.FSM.Group("app")
	hooks := g.GetSpec().GetActions().GetHooks()
	sites := &siteRecorder{}
	tg := actions.Targets{Sites: sites, Witness: actions.Witness{Node: "tiebreak-1", Site: "tiebreak"}}

	// run_on: leader runs here.
	if err := tg.Hook(t.Context(), g, hooks[1]); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "promote 2 east west tiebreak-1 tiebreak\n" {
		t.Errorf("leader hook saw %q", b)
	}
	// run_on: a site goes to that site's witness, naming the hook only.
	if err := tg.Hook(t.Context(), g, hooks[0]); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"east hook stop-old (fence) of app at token 2"}, sites.reqs); diff != "" {
		t.Errorf("site requests (-want +got):\n%s", diff)
	}
	sites.err = errors.New("no live witness at the site")
	if err := tg.Hook(t.Context(), g, hooks[2]); !errors.Is(err, sites.err) {
		t.Errorf("site failure: %v", err)
	}
	// A runner without the cluster cannot reach a site.
	if err := (actions.Targets{}).Hook(t.Context(), g, hooks[2]); !errors.Is(err, actions.ErrUnsupported) {
		t.Errorf("without Sites: %v, want ErrUnsupported", err)
	}
}

// Hooks that hang or exit non-zero are recorded failures with a readable
// reason; the hook's own timeout bounds its step.
func TestBadHooksAreRecordedFailures(t *testing.T) {
	spec := &witnessv1.GroupSpec{
		Name:  "app",
		Sites: []*witnessv1.SiteSpec{{Name: "east"}, {Name: "west"}},
		Actions: &witnessv1.Actions{Hooks: []*witnessv1.HookAction{
			{Name: "hangs", Step: actions.HookPromote, Command: "sleep", Args: []string{"30"}, TimeoutMs: 200, RunOn: actions.RunOnLeader, BestEffort: true},
			{Name: "exits", Step: actions.HookPromote, Command: "sh", Args: []string{"-c", "echo cannot start west-db2 >&2; exit 3"}, TimeoutMs: 5000, RunOn: actions.RunOnLeader, BestEffort: true},
			{Name: "missing", Step: actions.HookAfterSwitch, Command: "/nonexistent/hook", TimeoutMs: 5000, RunOn: actions.RunOnLeader},
		}},
	}
	l, _ := setupSpec(t, spec)
	runUntil(t, l, actions.Targets{}, func() bool {
		return failedAttempts(l, "hook:promote:hangs") > 0 && failedAttempts(l, "hook:promote:exits") > 0 && failedAttempts(l, "hook:after_switch:missing") > 0
	})
	g, _ := l.FSM.Group("app")
	last := map[string]*witnessv1.StepResult{}
	for _, s := range g.GetStatus().GetSteps() {
		last[s.GetStep()] = s
	}
	for step, want := range map[string]string{
		"hook:promote:hangs":        hookexec.ErrTimeout.Error(),
		"hook:promote:exits":        "exit status 3: cannot start west-db2",
		"hook:after_switch:missing": hookexec.ErrStart.Error(),
	} {
		s := last[step]
		if s.GetOk() || !strings.Contains(s.GetError(), want) {
			t.Errorf("%s recorded as ok=%v %q, want a failure saying %q", step, s.GetOk(), s.GetError(), want)
		}
	}
	if d := last["hook:promote:hangs"].GetDurationMs(); d > 5000 {
		t.Errorf("the hanging hook's step took %dms; its timeout is 200ms", d)
	}
}

func ExampleHookStep() {
	fmt.Println(actions.HookStep(&witnessv1.HookAction{Name: "start-workers", Step: "after_switch"}))
	// Output: hook:after_switch:start-workers
}
