//go:build integration

package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sitewitness/witness/integration/harness"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Scenario 1: the east site is lost (its network and power: every process
// there dies). West is promoted, DNS switched, one transition. When east
// comes back, its PostgreSQL (which restarts as a primary) is fenced
// read-only and the group stays at west.
func TestEastSiteLost(t *testing.T) {
	env := start(t, harness.Options{})
	before := group(t, env).GetStatus().GetToken()

	outage := time.Now()
	must(t, env.Isolate("east"))
	must(t, env.Witness("east-1").Proc.Kill())
	must(t, env.PG["east"].Kill())

	must(t, env.WaitStable(patience, "west", before+1))
	fo := theFailover(t, env, before)
	committed := time.Unix(0, fo.GetAtUnixNano())
	switched, ok := env.DNS.FirstAt("west", outage)
	if !ok {
		t.Fatalf("BIND never answered west; changes: %v", env.DNS.Changes())
	}
	t.Logf("outage → failover committed %s, → DNS answered west %s (failover_after %s)", ms(committed.Sub(outage)), ms(switched.Sub(outage)), env.Opts.FailoverAfter)
	if committed.Sub(outage) < env.Opts.FailoverAfter {
		t.Errorf("failed over %s after the outage, before failover_after %s", committed.Sub(outage), env.Opts.FailoverAfter)
	}
	st, err := dbState(env, "west")
	must(t, err)
	if st.InRecovery || st.ReadOnly {
		t.Errorf("west after failover: %+v, want a writable primary", st)
	}

	// East stays away long enough for the leader's retries of the fence
	// step to back off to many seconds apart, then comes back: its
	// database first, as after a power cut, through its unit's
	// prepare-start, then its witness. The database must come back as a
	// standby, never writable; and the leader must not wait for the next
	// retry: it fences east as soon as a probe sees east again.
	time.Sleep(25 * time.Second)
	must(t, env.Heal())
	said, err := env.RestartDatabase("east")
	must(t, err)
	t.Logf("prepare-start: %s", strings.TrimSpace(said))
	back := time.Now() // east's database takes connections
	if st, err := dbState(env, "east"); err != nil || !st.InRecovery {
		t.Errorf("east's database came back as %+v (%v), want a standby", st, err)
	}
	must(t, env.Witness("east-1").Proc.Start())
	var fencedAt time.Time
	must(t, waitUntil(patience, "the leader's fence of east", func() (bool, error) {
		g, err := env.Group()
		if err == nil && harness.StepResult(g, "fence") != nil {
			fencedAt = time.Now()
			return true, nil
		}
		return false, nil
	}))
	t.Logf("east back → its database fenced at token %d in %s", fo.GetToken(), ms(fencedAt.Sub(back)))
	if took := fencedAt.Sub(back); took > env.Opts.FailoverAfter {
		t.Errorf("east's returning database waited %s for its fence, more than failover_after", took)
	}
	time.Sleep(2 * env.Opts.FailoverAfter) // long enough for a wrong move
	g := group(t, env)
	if g.GetStatus().GetActiveSite() != "west" || g.GetStatus().GetToken() != fo.GetToken() {
		t.Errorf("after east returned: active %s token %d, want west at %d", g.GetStatus().GetActiveSite(), g.GetStatus().GetToken(), fo.GetToken())
	}
	if w, ok := env.Writes.Overlap("east", "west"); ok {
		t.Errorf("returning east accepted writes (stamped %d), first at %s", w.Token, w.Sent.Format(time.StampMilli))
	}
	checkInvariants(t, env, before, 1, true)
}

// dbState asks site's database whether it is a standby and read-only.
func dbState(env *harness.Env, site string) (harness.NodeState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return env.PG[site].State(ctx)
}

// waitUntil polls f every 50 ms until it reports true.
func waitUntil(timeout time.Duration, what string, f func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return &timeoutError{what: what, after: timeout}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type timeoutError struct {
	what  string
	after time.Duration
}

func (e *timeoutError) Error() string {
	return "timed out after " + e.after.String() + " waiting for " + e.what
}

// theFailover returns the one failover after token before, or fails t.
func theFailover(t *testing.T, env *harness.Env, before uint64) *witnessv1.Transition {
	t.Helper()
	fo := harness.Failovers(group(t, env), before)
	if len(fo) != 1 {
		t.Fatalf("failovers after token %d: %v, want one", before, fo)
	}
	return fo[0]
}

// stays checks for d that the group does not move from where it is.
func stays(t *testing.T, env *harness.Env, d time.Duration) {
	t.Helper()
	g := group(t, env)
	site, tok := g.GetStatus().GetActiveSite(), g.GetStatus().GetToken()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		g, err := env.Group()
		if err != nil {
			continue // a witness may be cut off: ask again
		}
		if g.GetStatus().GetActiveSite() != site || g.GetStatus().GetToken() != tok {
			t.Fatalf("group moved to %s at token %d (was %s at %d): %v", g.GetStatus().GetActiveSite(), g.GetStatus().GetToken(), site, tok, harness.Transitions(g, tok))
		}
	}
}

// Scenario 2: only the east–west link is cut. The tiebreaker still sees
// east healthy, so nothing moves.
func TestEastWestLinkCut(t *testing.T) {
	env := start(t, harness.Options{})
	before := group(t, env).GetStatus().GetToken()
	must(t, env.Cut("east", "west"))
	stays(t, env, 3*env.Opts.FailoverAfter)
	must(t, env.Heal())
	checkInvariants(t, env, before, 0, true)
}

// Scenario 3: the tiebreaker is isolated. No failover, and the cluster
// keeps committing (east and west are a majority).
func TestTiebreakIsolated(t *testing.T) {
	env := start(t, harness.Options{})
	before := group(t, env).GetStatus().GetToken()
	must(t, env.Isolate("tiebreak"))
	stays(t, env, 3*env.Opts.FailoverAfter)
	l, err := env.WaitLeader(patience, func(w *harness.Witness) bool { return w.Site == "tiebreak" })
	must(t, err)
	st, err := l.Status()
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := l.Admin.SetArmed(ctx, &witnessv1.SetArmedRequest{Group: harness.Group, Armed: false, By: "harness"}); err != nil {
		t.Fatalf("a write without the tiebreaker: %v", err)
	}
	st2, err := l.Status()
	must(t, err)
	if st2.GetAppliedIndex() <= st.GetAppliedIndex() {
		t.Errorf("applied index %d → %d: the write was not committed", st.GetAppliedIndex(), st2.GetAppliedIndex())
	}
	must(t, env.Heal())
	checkInvariants(t, env, before, 0, true)
}

// Scenario 4: the Raft leader's site is lost. The other two elect a new
// leader, which fails the group over and carries out the plan.
func TestLeaderSiteLost(t *testing.T) {
	env := start(t, harness.Options{})
	_, err := env.LeadFrom("east", patience)
	must(t, err)
	must(t, env.WaitHealthy(patience))
	before := group(t, env).GetStatus().GetToken()
	outage := time.Now()
	must(t, env.Isolate("east"))
	must(t, env.WaitStable(patience, "west", before+1))
	fo := theFailover(t, env, before)
	if by := fo.GetBy(); by == "east-1" {
		t.Errorf("the failover was committed by %s, the cut-off leader", by)
	}
	committed := time.Unix(0, fo.GetAtUnixNano())
	switched, _ := env.DNS.FirstAt("west", outage)
	t.Logf("leader's site lost → failover committed %s by %s, → DNS answered west %s (failover_after %s)", ms(committed.Sub(outage)), fo.GetBy(), ms(switched.Sub(outage)), env.Opts.FailoverAfter)
	checkInvariants(t, env, before, 1, true)
}

// Scenario 5: the leader is SIGKILLed after promoting the database and
// before switching DNS. The next leader resumes from the recorded steps:
// DNS ends right, and the promotion is not done twice.
func TestLeaderKilledBetweenPromoteAndDNS(t *testing.T) {
	env := start(t, harness.Options{})
	before := group(t, env).GetStatus().GetToken()
	l, err := env.Leader()
	must(t, err)
	must(t, env.Cut(l.Site, "dns")) // its DNS step cannot finish
	tok, err := env.Switchover("west")
	must(t, err)
	must(t, waitUntil(patience, "the promote step", func() (bool, error) {
		g, err := env.Group()
		return err == nil && g.GetStatus().GetToken() == tok && harness.StepResult(g, "promote") != nil, nil
	}))
	must(t, l.Proc.Kill())
	must(t, env.Heal())
	must(t, env.WaitStable(patience, "west", tok))
	g := group(t, env)
	var promotes, dnsBy []string
	for _, s := range g.GetStatus().GetSteps() {
		if s.GetToken() != tok || !s.GetOk() {
			continue
		}
		switch s.GetStep() {
		case "promote":
			promotes = append(promotes, s.GetNode())
		case "dns":
			dnsBy = append(dnsBy, s.GetNode())
		}
	}
	if len(promotes) != 1 || promotes[0] != l.Name {
		t.Errorf("promote done by %v, want once by the killed leader %s", promotes, l.Name)
	}
	if len(dnsBy) != 1 || dnsBy[0] == l.Name {
		t.Errorf("dns done by %v, want once by the next leader", dnsBy)
	}
	must(t, l.Proc.Start())
	checkInvariants(t, env, before, 1, true)
}

// Scenario 6: the leader is stopped (SIGSTOP) after it read the DNS fence
// and sent its update, and stays stopped past the election timeout. The
// next leader finishes the switch; when the stopped leader's update
// reaches BIND, BIND refuses it on its prerequisite, and the resumed
// leader's DNS step fails with that refusal.
func TestStaleLeaderUpdateRefusedByBIND(t *testing.T) {
	env := start(t, harness.Options{})
	before := group(t, env).GetStatus().GetToken()
	l, err := env.Leader()
	must(t, err)
	hold, err := env.HoldUpdates(l.Site)
	must(t, err)
	tok, err := env.Switchover("west")
	must(t, err)
	select {
	case <-hold.Held():
	case <-time.After(patience):
		t.Fatal("the leader sent no DNS update")
	}
	must(t, l.Proc.Signal(syscall.SIGSTOP))
	stoppedAt := time.Now()
	next, err := env.WaitLeader(patience, func(w *harness.Witness) bool { return w == l })
	must(t, err)
	must(t, waitUntil(patience, "the next leader's DNS switch", func() (bool, error) {
		for _, a := range env.DNS.Changes() {
			if a.Token == tok && a.Site == "west" {
				return true, nil
			}
		}
		return false, nil
	}))
	// The held update reaches BIND while its sender is still stopped.
	refusals := strings.Count(env.NamedLog(), refused)
	hold.Release()
	if err := waitUntil(patience, "BIND to refuse the held update", func() (bool, error) {
		return strings.Count(env.NamedLog(), refused) > refusals, nil
	}); err != nil {
		t.Errorf("%v; BIND's log:\n%s", err, env.NamedLog())
	}
	must(t, l.Proc.Signal(syscall.SIGCONT))
	t.Logf("%s stopped %s; %s led and switched DNS meanwhile", l.Name, ms(time.Since(stoppedAt)), next.Name)
	must(t, env.WaitStable(patience, "west", tok))
	must(t, waitUntil(patience, "the stale leader's refused step in its log", func() (bool, error) {
		// Refused by BIND, or ended with its leadership before BIND's
		// answer came back: either way never recorded as done.
		tail := l.Proc.Tail(1 << 20)
		return strings.Contains(tail, "step=dns") && (strings.Contains(tail, "NXRRSET") || strings.Contains(tail, "step ended after this witness stopped leading")), nil
	}))
	if !strings.Contains(env.NamedLog(), refused) {
		t.Errorf("BIND's log shows no refused prerequisite:\n%s", env.NamedLog())
	}
	checkInvariants(t, env, before, 1, true)
}

// refused is what BIND logs when an update's prerequisite does not hold.
const refused = "prerequisite not satisfied"

// Scenario 7: east is cut off from everyone while its PostgreSQL keeps
// running. The east witness loses the majority and demotes its database
// before the others fail the group over by the lease rule.
func TestIsolatedSiteFencesItself(t *testing.T) {
	env := start(t, harness.Options{})
	before := group(t, env).GetStatus().GetToken()
	outage := time.Now()
	must(t, env.Isolate("east"))
	must(t, env.WaitStable(patience, "west", before+1))
	fo := theFailover(t, env, before)
	committed := time.Unix(0, fo.GetAtUnixNano())
	last, ok := env.Writes.LastAt("east")
	if !ok {
		t.Fatal("east never took a write")
	}
	t.Logf("outage → east's last accepted write %s, → failover committed %s", ms(last.Done.Sub(outage)), ms(committed.Sub(outage)))
	if !last.Done.Before(committed) {
		t.Errorf("east took a write at %s, after the failover committed at %s", last.Done.Format(time.StampMilli), committed.Format(time.StampMilli))
	}
	// The witness demoted its database (the group names a data_dir):
	// stopped, able to start only as a standby.
	demoted := func(when string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := env.PG["east"].AppWrite(ctx, "", nil, "BEGIN"); err == nil {
			t.Errorf("east's database took an application write %s", when)
		}
		if _, err := os.Stat(filepath.Join(env.PG["east"].Data, "standby.signal")); err != nil {
			t.Errorf("east's data directory has no standby.signal %s: %v", when, err)
		}
	}
	demoted("after the failover")
	if !strings.Contains(env.Witness("east-1").Proc.Tail(1<<20), "lease with the voters lost while active") {
		t.Error("the east witness's log does not show the self-fence")
	}
	if r := harness.StepResult(group(t, env), "promote").GetRule(); r != "lease_expired" && r != "fence_confirmed" {
		t.Errorf("west promoted by rule %q", r)
	}
	// Contact returns: east stays fenced and the group stays at west.
	must(t, env.Heal())
	stays(t, env, 2*env.Opts.FailoverAfter)
	demoted("after contact returned")
	checkInvariants(t, env, before, 1, true)
}

// Scenario 8: east's service flaps, failing every other probe. No witness
// reaches fail_threshold, so nothing moves.
func TestFlappingSiteStays(t *testing.T) {
	env := start(t, harness.Options{})
	before := group(t, env).GetStatus().GetToken()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		down := false
		t := time.NewTicker(env.Opts.ProbeInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				_ = env.ServiceDown("east", false)
				return
			case <-t.C:
				down = !down
				_ = env.ServiceDown("east", down)
			}
		}
	}()
	stays(t, env, 4*env.Opts.FailoverAfter)
	cancel()
	checkInvariants(t, env, before, 0, true)
}
