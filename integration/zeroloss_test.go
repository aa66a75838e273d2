//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sitewitness/witness/integration/harness"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// zeroLossRuns is how many times each variant of the switchover under
// load runs (WITNESS_ZEROLOSS_RUNS, default 1).
func zeroLossRuns() int {
	if n, err := strconv.Atoi(os.Getenv("WITNESS_ZEROLOSS_RUNS")); err == nil && n > 0 {
		return n
	}
	return 1
}

// Scenario (a): a client commits numbered rows as fast as it can at the
// primary the DNS record names; after a switchover to west, every number
// the old primary acknowledged is at west. Once with replication flowing
// freely, once with the WAL stream to west held back for a few seconds
// around the switchover, as it is across real sites: the switchover waits
// until west has replayed east's final position before the move commits.
func TestSwitchoverUnderWriteLoadLosesNothing(t *testing.T) {
	for _, held := range []bool{false, true} {
		name := "replication flowing"
		if held {
			name = "WAL held back"
		}
		t.Run(name, func(t *testing.T) {
			var took []time.Duration
			for run := range zeroLossRuns() {
				// A run of its own: its cluster is torn down, and the
				// harness's lock released, before the next one starts.
				t.Run(fmt.Sprintf("run %d", run+1), func(t *testing.T) {
					d, lost, total := switchoverUnderLoad(t, held)
					t.Logf("run %d: switchover command → DNS answers west in %s; %d of %d acknowledged rows lost", run+1, ms(d), lost, total)
					took = append(took, d)
				})
			}
			if len(took) == 0 {
				return
			}
			sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
			t.Logf("%s: median switchover time %s over %d runs", name, ms(took[len(took)/2]), len(took))
		})
	}
}

// leadFromTiebreak moves Raft's leadership to the tiebreaker. LeadFrom
// freezes each leader in turn: a frozen east witness outlives its lease
// and demotes its database, as it must, and starts it again once a
// linearizable read shows nothing moved. The scenario begins once east
// takes writes again.
func leadFromTiebreak(t *testing.T, env *harness.Env) {
	t.Helper()
	_, err := env.LeadFrom("tiebreak", patience)
	must(t, err)
	must(t, waitUntil(patience, "east taking writes after the leader moved", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return env.PG["east"].AppWrite(ctx, "", nil, "BEGIN") == nil, nil
	}))
}

// untilEligible asks for a switchover with ask until it is not refused as
// not eligible, and returns what the last ask returned. With replication
// between east and west held back, east's probe of west's database fails
// on purpose, and on a loaded machine another site's probe can time out
// for a moment too: the target is then refused up front, which is right,
// and the scenario asks again.
func untilEligible(t *testing.T, ask func() error) error {
	t.Helper()
	var err error
	deadline := time.Now().Add(patience)
	for {
		err = ask()
		if err == nil || !strings.Contains(err.Error(), "not eligible") || time.Now().After(deadline) {
			return err
		}
		t.Logf("switchover refused, asking again: %v", err)
		time.Sleep(500 * time.Millisecond)
	}
}

func switchoverUnderLoad(t *testing.T, held bool) (time.Duration, int, int) {
	t.Helper()
	// With a data_dir at east, as the harness gives every site: the
	// first phase fences east over SQL and leaves it running, so that
	// the WAL held back reaches west once released; east's witness
	// demotes it at the move's token, before west is promoted.
	env := start(t, harness.Options{})
	before := group(t, env).GetStatus().GetToken()
	// The leader fences east and reads west over PostgreSQL connections
	// that a hold between east and west would cut: it leads from the
	// tiebreaker.
	leadFromTiebreak(t, env)
	w, err := env.StartNumberedWriter()
	must(t, err)
	time.Sleep(2 * time.Second)
	if held {
		must(t, env.HoldReplication("east", "west"))
		time.Sleep(time.Second)
	}
	released := make(chan struct{})
	if held {
		go func() {
			defer close(released)
			time.Sleep(3 * time.Second)
			if err := env.ReleaseReplication("east", "west"); err != nil {
				t.Errorf("release replication: %v", err)
			}
		}()
	} else {
		close(released)
	}
	var asked time.Time
	must(t, untilEligible(t, func() error {
		l, err := env.WaitLeader(patience, nil)
		if err != nil {
			return err
		}
		asked = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err = l.Admin.Switchover(ctx, &witnessv1.SwitchoverRequest{Group: harness.Group, ToSite: "west", ExpectedToken: before, Reason: "zero-loss scenario", By: "harness"})
		return err
	}))
	answered, err := env.WaitDNS("west", patience)
	must(t, err)
	took := answered.Sub(asked)
	time.Sleep(time.Second) // writes at west
	acked := w.Stop()
	<-released
	total := 0
	for _, ns := range acked {
		total += len(ns)
	}
	if len(acked["east"]) == 0 || len(acked["west"]) == 0 {
		t.Errorf("the writer was acknowledged %d rows at east and %d at west: the scenario shows nothing", len(acked["east"]), len(acked["west"]))
	}
	missing, err := env.Missing("west", acked)
	must(t, err)
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Errorf("%d of %d rows acknowledged by east are not at west: %v", len(missing), len(acked["east"]), missing[:min(len(missing), 20)])
	}
	g := group(t, env)
	if r := harness.StepResult(g, "promote"); r.GetRule() != "fence_confirmed" {
		t.Errorf("promote recorded with rule %q, want fence_confirmed", r.GetRule())
	}
	if r := harness.StepResult(g, "fence"); r.GetFencedBy() != "demote" {
		t.Errorf("the move's fence confirmed by %q, want demote (east's witness stops its database)", r.GetFencedBy())
	}
	if _, err := os.Stat(filepath.Join(env.PG["east"].Data, "standby.signal")); err != nil {
		t.Errorf("east's data directory has no standby.signal after the switchover: %v", err)
	}
	actx, acancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := env.PG["east"].AppWrite(actx, "", nil, "BEGIN"); err == nil {
		t.Error("east took an application write after the switchover")
	}
	acancel()
	for _, s := range g.GetStatus().GetSteps() {
		if s.GetStep() == "catchup" {
			t.Logf("catchup at token %d: ok %v, replayed %X, %s", s.GetToken(), s.GetOk(), s.GetWalLsn(), s.GetError())
		}
	}
	return took, len(missing), total
}

// Scenario (b): west's WAL receiver is stopped, east commits more, then
// east is lost. West is not eligible and the group's view names the
// positions; an operator's forced failover moves the group, and its
// history keeps the reason and the override.
func TestStoppedReceiverBlocksFailoverUntilForced(t *testing.T) {
	env := start(t, harness.Options{MaxLag: "1MB"})
	before := group(t, env).GetStatus().GetToken()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	must(t, env.PG["west"].Exec(ctx, "ALTER SYSTEM SET primary_conninfo = ''"))
	must(t, env.PG["west"].Exec(ctx, "SELECT pg_reload_conf()"))
	time.Sleep(2 * time.Second)
	must(t, env.PG["east"].Exec(ctx, "CREATE TABLE harness_pad AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 20000) g"))
	// A witness sees east's primary past what west holds: before any
	// outage, the group says it has no target.
	var seen string
	if err := waitUntil(patience, "east's new position seen", func() (bool, error) {
		out, err := env.Witnessctl("group", harness.Group)
		seen = out
		if err != nil {
			seen = err.Error()
		}
		return err == nil && strings.Contains(out, "eligible targets: none") && strings.Contains(out, "primary east last seen at"), nil
	}); err != nil {
		t.Fatalf("%v; witnessctl group app:\n%s", err, seen)
	}
	t.Logf("before the outage, witnessctl group app:\n%s", seen)
	must(t, env.Isolate("east"))
	var view string
	must(t, waitUntil(patience, "the policy blocked by the data-loss guard", func() (bool, error) {
		out, err := env.Witnessctl("group", harness.Group)
		view = out
		return err == nil && strings.Contains(out, "east down") && strings.Contains(out, "no eligible target: west received"), nil
	}))
	t.Logf("witnessctl group app:\n%s", view)
	stays(t, env, env.Opts.FailoverAfter)
	if g := group(t, env); g.GetStatus().GetActiveSite() != "east" || g.GetStatus().GetToken() != before {
		t.Fatalf("the group moved on its own: %s at token %d", g.GetStatus().GetActiveSite(), g.GetStatus().GetToken())
	}
	if out, err := env.Witnessctl("failover", harness.Group, "west", "--reason", "east lost", "--yes"); err == nil || !strings.Contains(out, "not eligible") {
		t.Fatalf("failover without --force: %v: %s", err, out)
	}
	out, err := env.Witnessctl("failover", harness.Group, "west", "--force", "--reason", "east lost; accepting what west never received", "--yes")
	if err != nil {
		t.Fatalf("forced failover: %v: %s", err, out)
	}
	t.Logf("witnessctl failover --force:\n%s", out)
	must(t, env.WaitStable(patience, "west", before+1))
	g := group(t, env)
	h := g.GetStatus().GetHistory()
	last := h[len(h)-1]
	// The guard names west's position, or, when the last observation of
	// it has gone stale by the time of the call (a loaded machine), says
	// it is unknown: either way it refused, and --force overrode it.
	guard := last.GetGuard()
	if !last.GetForced() || !(strings.Contains(guard, "west received") || strings.Contains(guard, "west WAL position unknown")) ||
		!strings.Contains(last.GetReason(), "accepting") || last.GetBy() == "" {
		t.Errorf("recorded transition %v", last)
	}
	hist, err := env.Witnessctl("group", harness.Group)
	must(t, err)
	if !strings.Contains(hist, "data-loss guard overridden") {
		t.Errorf("witnessctl group does not show the override:\n%s", hist)
	}
}

// Scenario (a2): a switchover whose SQL fence cannot hold (the application
// role has become a superuser at east) falls back to demoting east, while
// the WAL stream to west is held back: west cannot catch up with a
// stopped east, so the switchover is given up after switchover_timeout.
// East's witness then starts east's database again as the primary, no
// failover follows (the policy counts east failing from the abort, and by
// then east is back), and every acknowledged row is at east.
func TestSwitchoverGivenUpAfterADemotionKeepsEastPrimary(t *testing.T) {
	env := start(t, harness.Options{SwitchoverTimeout: 8 * time.Second})
	before := group(t, env).GetStatus().GetToken()
	leadFromTiebreak(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	must(t, env.PG["east"].Exec(ctx, "ALTER ROLE "+harness.AppRole+" SUPERUSER"))
	w, err := env.StartNumberedWriter()
	must(t, err)
	time.Sleep(2 * time.Second)
	must(t, env.HoldReplication("east", "west"))
	time.Sleep(time.Second)
	err = untilEligible(t, func() error { _, err := env.Switchover("west"); return err })
	if err == nil {
		t.Fatal("the switchover moved although west could not catch up")
	}
	t.Logf("switchover: %v", err)
	g := group(t, env)
	st := g.GetStatus()
	last := st.GetHistory()[len(st.GetHistory())-1]
	if st.GetActiveSite() != "east" || last.GetPhase() != "abort" || !strings.Contains(last.GetReason(), "did not catch up") {
		t.Fatalf("after the switchover: active at %s, last transition %v; want an abort at east, west not caught up", st.GetActiveSite(), last)
	}
	var fence *witnessv1.StepResult
	for _, s := range st.GetSteps() {
		if s.GetToken() == last.GetToken()-1 && s.GetStep() == "fence" && s.GetOk() {
			fence = s
		}
	}
	if fence.GetFencedBy() != "demote" {
		t.Fatalf("the first phase's fence: %v, want one confirmed by demote (the SQL fence cannot hold a superuser)", fence)
	}
	// East's witness starts east again; the plan of the abort's token
	// completes at east.
	must(t, env.WaitStable(patience, "east", last.GetToken()))
	east, err := dbState(env, "east")
	must(t, err)
	if east.InRecovery {
		t.Error("east's database is in recovery after the abort")
	}
	// Longer than failover_after (5s) with east back: nothing moves.
	time.Sleep(8 * time.Second)
	must(t, env.ReleaseReplication("east", "west"))
	acked := w.Stop()
	if g := group(t, env); g.GetStatus().GetActiveSite() != "east" || g.GetStatus().GetToken() != last.GetToken() {
		t.Errorf("the group moved after the abort: at %s, token %d (abort at %d)", g.GetStatus().GetActiveSite(), g.GetStatus().GetToken(), last.GetToken())
	}
	west, err := dbState(env, "west")
	must(t, err)
	if !west.InRecovery {
		t.Error("west was promoted")
	}
	if len(acked["west"]) > 0 {
		t.Errorf("west acknowledged %d rows", len(acked["west"]))
	}
	missing, err := env.Missing("east", acked)
	must(t, err)
	if len(missing) > 0 {
		t.Errorf("%d of %d rows acknowledged by east are not at east", len(missing), len(acked["east"]))
	}
	if err := env.PG["east"].AppWrite(ctx, "", nil, "BEGIN"); err != nil {
		t.Errorf("east does not take writes after the abort: %v", err)
	}
	must(t, env.PG["east"].Exec(ctx, "ALTER ROLE "+harness.AppRole+" NOSUPERUSER"))
	checkInvariants(t, env, before, 0, true)
}
