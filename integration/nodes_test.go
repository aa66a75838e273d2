//go:build integration

package integration

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sitewitness/witness/integration/harness"
)

// Scenario (d): a group with two standbys at west, west and west-b. West's
// WAL receiver is stopped, so it falls behind while east commits more
// under a client's load; then a switchover to west. The most advanced
// eligible node of west, west-b, is promoted, not west (the site's first
// node, and the one with its data_dir); west is re-pointed at west-b and
// streams from it on the new timeline; every row east acknowledged is at
// west-b, and, once it has caught up, at west.
func TestSeveralNodesAtASiteAdvancedOnePromoted(t *testing.T) {
	env := start(t, harness.Options{WestB: true, MaxLag: "4MB"})
	before := group(t, env).GetStatus().GetToken()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// West stops receiving and falls behind by more than max_lag.
	must(t, env.PG["west"].Exec(ctx, "ALTER SYSTEM SET primary_conninfo = ''"))
	must(t, env.PG["west"].Exec(ctx, "SELECT pg_reload_conf()"))
	time.Sleep(2 * time.Second)
	w, err := env.StartNumberedWriter()
	must(t, err)
	must(t, env.PG["east"].Exec(ctx, "CREATE TABLE harness_pad AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 40000) g"))
	var view string
	must(t, waitUntil(patience, "both west nodes seen, west behind east", func() (bool, error) {
		out, err := env.Witnessctl("group", harness.Group)
		view = out
		return err == nil && strings.Contains(out, "west/west-b") && strings.Contains(out, "west/west ") && strings.Contains(out, "not streaming"), nil
	}))
	time.Sleep(3 * time.Second) // east's position after the pad, gossiped
	t.Logf("before the switchover, witnessctl group app:\n%s", view)

	// West-b streams, but under the writer's load it may lag past
	// max_lag for a moment: the switchover is then refused up front, and
	// asked again.
	var asked time.Time
	var tok uint64
	must(t, untilEligible(t, func() error {
		asked = time.Now()
		var err error
		tok, err = env.Switchover("west")
		return err
	}))
	answered, err := env.WaitDNS("west", patience)
	must(t, err)
	t.Logf("switchover to west at token %d: DNS answers west %s after the ask", tok, ms(answered.Sub(asked)))
	acked := w.Stop()

	g := group(t, env)
	h := g.GetStatus().GetHistory()
	last := h[len(h)-1]
	if last.GetToNode() != "west-b" || g.GetStatus().GetActiveNode() != "west-b" {
		t.Errorf("the move promotes node %q (active node %q), want west-b: %v", last.GetToNode(), g.GetStatus().GetActiveNode(), last)
	}
	westB, err := dbState(env, "west-b")
	must(t, err)
	if westB.InRecovery {
		t.Error("west-b is still in recovery: not promoted")
	}
	west, err := dbState(env, "west")
	must(t, err)
	if !west.InRecovery {
		t.Error("west, the node behind, was promoted")
	}
	// West follows west-b, on west-b's timeline.
	var repoint string
	must(t, waitUntil(patience, "west streaming from west-b", func() (bool, error) {
		var n int
		qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
		defer qcancel()
		if err := env.PG["west-b"].Query(qctx, "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'west' AND state = 'streaming'", &n); err != nil {
			return false, nil
		}
		if r := harness.StepResult(group(t, env), "repoint"); r != nil {
			repoint = r.String()
		}
		return n == 1, nil
	}))
	t.Logf("repoint step: %s", repoint)
	var sender string
	must(t, env.PG["west"].Query(ctx, "SELECT sender_port::text || ' tli ' || received_tli FROM pg_stat_wal_receiver", &sender))
	t.Logf("west's WAL receiver: port %s", sender)

	total := 0
	for _, ns := range acked {
		total += len(ns)
	}
	if len(acked["east"]) == 0 {
		t.Fatal("the writer was acknowledged no row at east: the scenario shows nothing")
	}
	missing, err := env.Missing("west-b", acked)
	must(t, err)
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Errorf("%d of %d rows acknowledged are not at west-b: %v", len(missing), total, missing[:min(len(missing), 20)])
	}
	// A write at the new primary reaches west through its new sender.
	must(t, env.PG["west-b"].Exec(ctx, "INSERT INTO harness_numbers (n) VALUES (-1)"))
	must(t, waitUntil(patience, "west caught up with west-b", func() (bool, error) {
		var n int
		if err := env.PG["west"].Query(ctx, "SELECT count(*) FROM harness_numbers WHERE n = -1", &n); err != nil {
			return false, nil
		}
		return n == 1, nil
	}))
	missingWest, err := env.Missing("west", acked)
	must(t, err)
	if len(missingWest) > 0 {
		t.Errorf("%d of %d rows acknowledged are not at west after it caught up", len(missingWest), total)
	}
	t.Logf("%d rows acknowledged by east, %d lost at west-b, %d at west", total, len(missing), len(missingWest))
	if out, err := env.Witnessctl("group", harness.Group); err == nil {
		t.Logf("after, witnessctl group app:\n%s", out)
	}
	checkInvariants(t, env, before, 2, false)
}
