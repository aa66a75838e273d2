//go:build integration

package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sitewitness/witness/integration/harness"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Scenario (c): east is lost and the group fails over to west; east comes
// back. With reinstate: auto, the leader has east's witness turn east's
// old primary into a streaming standby of west, without a hand on it
// (its commits past the fork saved first, then pg_rewind). A switchover
// then brings the group home to east with no row that west acknowledged
// lost.
func TestFailoverReinstateAndFailback(t *testing.T) {
	env := start(t, harness.Options{Reinstate: "auto"})
	before := group(t, env).GetStatus().GetToken()

	must(t, env.Isolate("east"))
	// A commit west never receives: east's history forks from west's for
	// sure, so that reinstate has to save it and rewind, whether or not
	// the application's last writes reached west before the cut.
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	must(t, env.PG["east"].Exec(wctx, "CREATE TABLE past_the_fork AS SELECT 1 AS n"))
	wcancel()
	must(t, env.Witness("east-1").Proc.Kill())
	must(t, env.PG["east"].Kill())
	must(t, env.WaitStable(patience, "west", before+1))
	fo := theFailover(t, env, before)

	// West takes writes for a while; then east comes back as after a
	// power cut: its database through prepare-start, then its witness.
	time.Sleep(5 * time.Second)
	must(t, env.Heal())
	_, err := env.RestartDatabase("east")
	must(t, err)
	must(t, env.Witness("east-1").Proc.Start())
	back := time.Now()

	var steps map[string]*witnessv1.StepResult
	must(t, waitUntil(patience, "east reinstated as a standby of west", func() (bool, error) {
		g, err := env.Group()
		if err != nil {
			return false, nil
		}
		steps = map[string]*witnessv1.StepResult{}
		for _, s := range g.GetStatus().GetSteps() {
			if s.GetToken() == fo.GetToken() && strings.HasPrefix(s.GetStep(), "reinstate:") {
				steps[s.GetStep()] = s
			}
		}
		return steps["reinstate:stream"].GetOk(), nil
	}))
	t.Logf("east back → streaming from west in %s", ms(time.Since(back)))
	for _, name := range []string{"check", "save", "rewind", "slot", "configure", "start", "stream"} {
		s := steps["reinstate:"+name]
		if !s.GetOk() || s.GetRule() != "auto" {
			t.Errorf("step reinstate:%s: %v, want ok by auto", name, s)
			continue
		}
		t.Logf("reinstate:%s %dms %s", name, s.GetDurationMs(), s.GetDetail())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var status, sender string
	must(t, env.PG["east"].Query(ctx, "SELECT status, sender_host FROM pg_stat_wal_receiver", &status, &sender))
	if status != "streaming" || sender != env.PG["west"].Addr {
		t.Errorf("east's WAL receiver %q from %q, want streaming from west %s", status, sender, env.PG["west"].Addr)
	}

	// Failback is a planned switchover once east has caught up.
	var lsn string
	must(t, env.PG["west"].Query(ctx, "SELECT pg_current_wal_lsn()::text", &lsn))
	must(t, waitUntil(patience, "east to replay west's WAL", func() (bool, error) {
		var ok bool
		err := env.PG["east"].Query(ctx, "SELECT pg_last_wal_replay_lsn() >= '"+lsn+"'::pg_lsn", &ok)
		return err == nil && ok, nil
	}))
	// East is a target once every site's probes have seen it back.
	asked := time.Now()
	var home uint64
	must(t, waitUntil(patience, "a switchover to east to be taken", func() (bool, error) {
		var err error
		home, err = env.Switchover("east")
		if err != nil && strings.Contains(err.Error(), "not eligible") {
			return false, nil
		}
		return err == nil, err
	}))
	must(t, env.WaitStable(patience, "east", home))
	if at, ok := env.DNS.FirstAt("east", asked); ok {
		t.Logf("failback switchover: asked → DNS answers east in %s", ms(at.Sub(asked)))
	}
	var atWest int
	for _, w := range env.Writes.Writes() {
		if w.Site == "west" {
			atWest++
		}
	}
	var onEast int
	must(t, env.PG["east"].Query(ctx, "SELECT count(*) FROM harness_writes WHERE node = 'west'", &onEast))
	t.Logf("writes west acknowledged: %d; on east after failback: %d", atWest, onEast)
	if atWest == 0 || onEast < atWest {
		t.Errorf("east holds %d of the %d writes west acknowledged", onEast, atWest)
	}
	if st, err := dbState(env, "east"); err != nil || st.InRecovery {
		t.Errorf("east after failback: %+v (%v), want a primary", st, err)
	}
	checkInvariants(t, env, before, 2, true)
}
