//go:build integration

package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sitewitness/witness/integration/harness"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// bypass is one way an ordinary client of the application role turns a
// read-only default off for itself.
type bypass struct {
	name, options string
	setup         []string
	begin         string
}

var bypasses = []bypass{
	{name: "plain write", begin: "BEGIN"},
	{name: "SET default_transaction_read_only = off", setup: []string{"SET default_transaction_read_only = off"}, begin: "BEGIN"},
	{name: "SET SESSION CHARACTERISTICS … READ WRITE", setup: []string{"SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"}, begin: "BEGIN"},
	{name: "BEGIN READ WRITE", begin: "BEGIN READ WRITE"},
	{name: "connection option", options: "-c default_transaction_read_only=off", begin: "BEGIN"},
	// The role's own setting (ALTER ROLE … SET, made at the start of the
	// scenario) applies to every plain write above.
}

// allBypasses tries every bypass twice at site (the second time is a
// reconnect) and returns the ones whose write committed, and why the
// others did not.
func allBypasses(t *testing.T, env *harness.Env, site string) (through, refused []string) {
	t.Helper()
	for _, b := range bypasses {
		for range 2 {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := env.PG[site].AppWrite(ctx, b.options, b.setup, b.begin)
			cancel()
			if err == nil {
				through = append(through, b.name)
			} else {
				refused = append(refused, b.name+": "+err.Error())
			}
		}
	}
	return through, refused
}

// roleSetting gives the bypassing application role its own read-only-off
// default, the bypass that needs no change in the client. (Not the write
// recorder's role: at a standby being promoted, such a role can write in
// the moment between the end of recovery and the new token's record,
// stamped with the old token; see actions/postgres.)
func roleSetting(t *testing.T, env *harness.Env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(t, env.PG["east"].Exec(ctx, "ALTER ROLE "+harness.BypassRole+" SET default_transaction_read_only = off"))
}

// Scenario 9a: after a switchover, a client of the application role at the
// old primary is refused whatever it tries, and however often it
// reconnects; at the new primary it writes.
func TestSwitchedOverPrimaryRefusesEveryClient(t *testing.T) {
	// The SQL fence is what holds against the clients here: no data_dir.
	env := start(t, harness.Options{NoDataDirs: true})
	before := group(t, env).GetStatus().GetToken()
	roleSetting(t, env)
	if _, refused := allBypasses(t, env, "east"); len(refused) > 0 {
		t.Fatalf("before the switchover, writes at east failed: the test cannot tell a fence from a broken client: %q", refused)
	}
	tok, err := env.Switchover("west")
	must(t, err)
	must(t, env.WaitStable(patience, "west", tok))
	if through, _ := allBypasses(t, env, "east"); len(through) > 0 {
		t.Errorf("writes at the fenced old primary east: %q", through)
	}
	// The fence's role changes replicated to west; its promote gave the
	// logins back there.
	if _, refused := allBypasses(t, env, "west"); len(refused) > 0 {
		t.Errorf("writes refused at the new primary west: %q", refused)
	}
	g := group(t, env)
	if r := harness.StepResult(g, "promote"); r.GetRule() != "fence_confirmed" {
		t.Errorf("promote recorded with rule %q, want fence_confirmed", r.GetRule())
	}
	checkInvariants(t, env, before, 1, true)
}

// Scenario 9b: after east is cut off and failed over, and comes back, no
// client of the application role writes at east again.
func TestFailedOverPrimaryRefusesEveryClient(t *testing.T) {
	env := start(t, harness.Options{})
	before := group(t, env).GetStatus().GetToken()
	roleSetting(t, env)
	must(t, env.Isolate("east"))
	must(t, env.WaitStable(patience, "west", before+1))
	g := group(t, env)
	rule := harness.StepResult(g, "promote").GetRule()
	t.Logf("west promoted by rule %s", rule)
	if rule != "lease_expired" && rule != "fence_confirmed" {
		t.Errorf("promote recorded with rule %q", rule)
	}
	must(t, env.Heal())
	// The leader's fence at the new token reaches east once it is back.
	must(t, waitUntil(patience, "the leader's fence of east", func() (bool, error) {
		g, err := env.Group()
		return err == nil && harness.StepResult(g, "fence").GetOk(), nil
	}))
	if through, _ := allBypasses(t, env, "east"); len(through) > 0 {
		t.Errorf("writes at the failed-over old primary east: %q", through)
	}
	checkInvariants(t, env, before, 1, true)
}

// Scenario 10: east is cut off and failed over; the link comes back while
// Raft traffic to east is held back, so that east's witness renews its
// lease with the voters before its replica hears of the failover. It must
// not lift its fence on what its stale replica says.
func TestFenceNotLiftedOnAStaleReplica(t *testing.T) {
	env := start(t, harness.Options{})
	before := group(t, env).GetStatus().GetToken()
	must(t, env.Isolate("east"))
	must(t, env.WaitStable(patience, "west", before+1))
	must(t, env.DelayRaft("east", 4*time.Second))
	must(t, env.Reconnect("east"))
	reconnected := time.Now()
	// For a while after the link is back, east is never writable.
	for time.Since(reconnected) < 3*env.Opts.FailoverAfter {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := env.PG["east"].AppWrite(ctx, "", nil, "BEGIN")
		cancel()
		if err == nil {
			t.Fatalf("east took an application write %s after the link came back", ms(time.Since(reconnected)))
		}
		time.Sleep(200 * time.Millisecond)
	}
	log := env.Witness("east-1").Proc.Tail(1 << 20)
	if strings.Contains(log, "lifted the self-fence") {
		t.Errorf("east's witness lifted its self-fence:\n%s", log)
	}
	must(t, env.HealRaft("east"))
	stays(t, env, env.Opts.FailoverAfter)
	checkInvariants(t, env, before, 1, true)
}

// Scenario 11: a switchover whose fence fails (the application role has
// become a superuser at east, which a fence cannot lock out) promotes
// nothing and switches nothing: the switchover ends at a new token at east,
// with the fence's error as its reason, and east keeps taking writes.
func TestSwitchoverWhoseFenceFailsStaysAtEast(t *testing.T) {
	// Only the SQL fence can fail this way: no data_dir.
	env := start(t, harness.Options{NoDataDirs: true})
	before := group(t, env).GetStatus().GetToken()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(t, env.PG["east"].Exec(ctx, "ALTER ROLE "+harness.AppRole+" SUPERUSER"))
	_, err := env.Switchover("west")
	if err == nil {
		t.Fatal("the switchover moved although its fence cannot hold")
	}
	t.Logf("switchover: %v", err)
	g := group(t, env)
	st := g.GetStatus()
	last := st.GetHistory()[len(st.GetHistory())-1]
	if st.GetActiveSite() != "east" || last.GetPhase() != "abort" || !strings.Contains(last.GetReason(), "superuser") {
		t.Errorf("after the failed fence: active at %s, last transition %v; want an abort at east saying why", st.GetActiveSite(), last)
	}
	must(t, env.WaitStable(patience, "east", last.GetToken()))
	west, err := dbState(env, "west")
	must(t, err)
	if !west.InRecovery {
		t.Error("west was promoted although east's fence failed")
	}
	for _, a := range env.DNS.Changes() {
		if a.Site == "west" {
			t.Errorf("DNS pointed at west at %s", a.At.Format(time.StampMilli))
		}
	}
	if err := env.PG["east"].AppWrite(ctx, "", nil, "BEGIN"); err != nil {
		t.Errorf("east does not take writes after the abort: %v", err)
	}
	must(t, env.PG["east"].Exec(ctx, "ALTER ROLE "+harness.AppRole+" NOSUPERUSER"))
	checkInvariants(t, env, before, 0, true)
}

// Scenario 12: only the east–west link is cut, with the leader at west.
// East's witness keeps its lease through the tiebreaker, so it does not
// fence itself, and the tiebreaker still sees east healthy, so nothing
// fails over: the service stays up at east.
func TestEastWestCutKeepsTheServiceUp(t *testing.T) {
	// Nothing fails over here, so no lease rule is needed: the SQL fence,
	// whose lift after the leader move below is quick.
	env := start(t, harness.Options{NoDataDirs: true})
	before := group(t, env).GetStatus().GetToken()
	_, err := env.LeadFrom("west", patience)
	must(t, err)
	// Moving the leader may have frozen east's witness a while, which
	// rightly fences east until its lease is renewed: start from a
	// writable east.
	must(t, waitUntil(patience, "east writable with west leading", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return env.PG["east"].AppWrite(ctx, "", nil, "BEGIN") == nil, nil
	}))
	must(t, env.WaitHealthy(patience))
	if l, err := env.Leader(); err != nil || l.Site != "west" {
		t.Fatalf("leader %v (%v), want one at west", l, err)
	}
	logged := env.Witness("east-1").Proc.Tail(1 << 20)
	cut := time.Now()
	must(t, env.Cut("east", "west"))
	stays(t, env, 3*env.Opts.FailoverAfter)
	if last, ok := env.Writes.LastAt("east"); !ok || time.Since(last.Done) > 2*time.Second {
		t.Errorf("east stopped taking writes during the cut (last %v, cut %s ago)", last.Done.Format(time.StampMilli), ms(time.Since(cut)))
	}
	// What east's witness logged since the cut.
	since := strings.TrimPrefix(env.Witness("east-1").Proc.Tail(1<<20), logged)
	if strings.Contains(since, "lease with the voters lost while active") {
		t.Error("east's witness fenced itself although the tiebreaker granted its lease")
	}
	st, err := dbState(env, "east")
	must(t, err)
	if st.ReadOnly || st.InRecovery {
		t.Errorf("east's database during the cut: %+v, want a writable primary", st)
	}
	must(t, env.Heal())
	checkInvariants(t, env, before, 0, true)
}

// Scenario 13: east's witness is frozen (SIGSTOP), then east is cut off.
// The voters see its lease expire all the same, but a frozen witness
// demotes nothing: its watchdog, no longer fed, resets the host (the
// harness's stand-in SIGKILLs east's postmaster) before west is promoted,
// and east takes no write from then on. After the thaw and the heal east's
// database, started again as its unit would, comes back as a standby.
func TestFrozenWitnessIsCoveredByItsWatchdog(t *testing.T) {
	// fence_after must hold the watchdog timeout plus a lease check and a
	// round (2.75s); failover_after the margin above it.
	env := start(t, harness.Options{FailoverAfter: 8 * time.Second, FenceAfter: 3 * time.Second, Watchdog: 2 * time.Second})
	before := group(t, env).GetStatus().GetToken()
	if env.Watchdog.LastFeed().IsZero() {
		t.Fatal("east's witness never fed its watchdog")
	}
	if _, _, fired, _ := env.Watchdog.Fired(); fired {
		t.Fatal("the watchdog fired before the fault")
	}
	must(t, env.Witness("east-1").Freeze())
	frozen := time.Now()
	must(t, env.Isolate("east"))
	must(t, env.WaitStable(patience, "west", before+1))
	firedAt, resetAt, fired, err := env.Watchdog.Fired()
	if !fired {
		t.Fatalf("west promoted and east's watchdog never fired (last fed %s before the freeze)", ms(frozen.Sub(env.Watchdog.LastFeed())))
	}
	must(t, err)
	g := group(t, env)
	promote := harness.StepResult(g, "promote")
	promotedAt := time.Unix(0, promote.GetStartedUnixNano())
	t.Logf("freeze → watchdog fired %s (timeout %s), → east's postmaster dead %s, → west promoted %s by rule %s",
		ms(firedAt.Sub(frozen)), env.Opts.Watchdog, ms(resetAt.Sub(frozen)), ms(promotedAt.Sub(frozen)), promote.GetRule())
	if !firedAt.Before(promotedAt) {
		t.Errorf("west promoted at %s, before east's watchdog fired at %s", promotedAt.Format(time.StampMilli), firedAt.Format(time.StampMilli))
	}
	if !resetAt.Before(promotedAt) {
		t.Errorf("west promoted at %s, before east's database was dead at %s", promotedAt.Format(time.StampMilli), resetAt.Format(time.StampMilli))
	}
	if last, ok := env.Writes.LastAt("east"); ok && last.Done.After(resetAt) {
		t.Errorf("east took a write at %s, after its watchdog reset it at %s", last.Done.Format(time.StampMilli), resetAt.Format(time.StampMilli))
	}

	must(t, env.Witness("east-1").Thaw())
	must(t, env.Heal())
	said, err := env.RestartDatabase("east")
	must(t, err)
	t.Logf("prepare-start: %s", strings.TrimSpace(said))
	st, err := dbState(env, "east")
	must(t, err)
	if !st.InRecovery {
		t.Errorf("east's database came back as %+v, want a standby", st)
	}
	stays(t, env, env.Opts.FailoverAfter)
	if w, ok := env.Writes.FirstAt("east", resetAt); ok {
		t.Errorf("east took a write stamped %d at %s after its reset", w.Token, w.Done.Format(time.StampMilli))
	}
	checkInvariants(t, env, before, 1, true)
}

// Scenario 9c: with the databases' data_dir in the group (the harness's
// default), a switchover
// asks east's witness to demote east's database: it holds even where the
// SQL fence cannot (the application role has become a superuser at east).
// The fence step records that layer; east refuses connections, keeps a
// standby.signal, takes no write, and starts again as a standby; west
// takes writes.
func TestSwitchoverDemotesTheOldPrimaryThroughItsWitness(t *testing.T) {
	env := start(t, harness.Options{})
	before := group(t, env).GetStatus().GetToken()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(t, env.PG["east"].Exec(ctx, "ALTER ROLE "+harness.AppRole+" SUPERUSER"))
	tok, err := env.Switchover("west")
	must(t, err)
	must(t, env.WaitStable(patience, "west", tok))
	g := group(t, env)
	var fence *witnessv1.StepResult
	for _, s := range g.GetStatus().GetSteps() {
		if s.GetToken() == tok-1 && s.GetStep() == "fence" && s.GetOk() {
			fence = s
		}
	}
	if fence.GetFencedBy() != "demote" {
		t.Fatalf("the switchover's fence at token %d: %v, want one confirmed by demote", tok-1, fence)
	}
	t.Logf("east demoted by its witness in %dms", fence.GetDurationMs())
	if err := env.PG["east"].AppWrite(ctx, "", nil, "BEGIN"); err == nil {
		t.Error("the demoted east took an application write")
	}
	if _, err := os.Stat(filepath.Join(env.PG["east"].Data, "standby.signal")); err != nil {
		t.Errorf("east's data directory has no standby.signal: %v", err)
	}
	if err := env.PG["west"].AppWrite(ctx, "", nil, "BEGIN"); err != nil {
		t.Errorf("west does not take writes after the switchover: %v", err)
	}
	demoted := time.Unix(0, fence.GetStartedUnixNano()).Add(time.Duration(fence.GetDurationMs()) * time.Millisecond)
	if w, ok := env.Writes.FirstAt("east", demoted); ok {
		t.Errorf("east took a write stamped %d at %s, after its demotion ended at %s", w.Token, w.Done.Format(time.StampMilli), demoted.Format(time.StampMilli))
	}
	_, err = env.RestartDatabase("east")
	must(t, err)
	st, err := dbState(env, "east")
	must(t, err)
	if !st.InRecovery {
		t.Errorf("east's database came back as %+v, want a standby", st)
	}
	checkInvariants(t, env, before, 1, true)
}
