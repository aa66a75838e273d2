//go:build integration

package integration

import (
	"context"
	"testing"
	"time"

	"github.com/sitewitness/witness/integration/harness"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// TestHarnessFaults checks that the harness's faults do what they say,
// on the tiebreaker (it guards no database, so no fence or failover
// follows): a Raft fault holds back its log while its links stay up,
// Freeze stops it answering, Uncut and Reconnect restore exactly the
// links they name.
func TestHarnessFaults(t *testing.T) {
	env := start(t, harness.Options{})
	checkAdminTLS(t, env)
	_, err := env.LeadFrom("west", patience)
	must(t, err)
	tb := env.Witness("tiebreak-1")

	// commit writes one entry through the leader (east or west) and
	// returns the leader's applied index after it.
	armed := true
	commit := func() uint64 {
		t.Helper()
		var idx uint64
		must(t, waitUntil(patience, "an entry committed", func() (bool, error) {
			l, err := env.Leader()
			if err != nil || l == tb {
				return false, nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := l.Admin.SetArmed(ctx, &witnessv1.SetArmedRequest{Group: harness.Group, Armed: !armed, By: "harness"}); err != nil {
				t.Logf("commit through %s: %v", l.Name, err)
				return false, nil
			}
			armed = !armed
			st, err := l.Status()
			if err != nil {
				return false, nil
			}
			idx = st.GetAppliedIndex()
			return true, nil
		}))
		return idx
	}
	applied := func() uint64 {
		st, err := tb.Status()
		if err != nil {
			return 0
		}
		return st.GetAppliedIndex()
	}
	// notApplied checks for d that the tiebreaker does not apply idx.
	notApplied := func(idx uint64, d time.Duration, fault string) {
		t.Helper()
		for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if got := applied(); got >= idx {
				t.Fatalf("with %s the tiebreaker applied index %d (≥ %d)", fault, got, idx)
			}
		}
	}
	caughtUp := func(idx uint64, what string) time.Time {
		t.Helper()
		must(t, waitUntil(patience, what, func() (bool, error) { return applied() >= idx, nil }))
		return time.Now()
	}

	// DropRaft: the log stops at the tiebreaker, its links stay up.
	must(t, env.DropRaft("tiebreak"))
	idx := commit()
	if !env.CanReach("east", "tiebreak", "7400") {
		t.Error("DropRaft cut the tiebreaker's admin port")
	}
	notApplied(idx, 3*time.Second, "DropRaft")
	must(t, env.HealRaft("tiebreak"))
	caughtUp(idx, "the tiebreaker to catch up after HealRaft")

	// DelayRaft: the log reaches the tiebreaker no sooner than the delay.
	const delay = 2 * time.Second
	must(t, env.DelayRaft("tiebreak", delay))
	sent := time.Now()
	idx = commit()
	at := caughtUp(idx, "the tiebreaker to apply through the delay")
	t.Logf("DelayRaft %s: entry applied at the tiebreaker %s after it was proposed", delay, ms(at.Sub(sent)))
	if at.Sub(sent) < delay*3/4 {
		t.Errorf("DelayRaft %s: applied after %s", delay, at.Sub(sent))
	}
	must(t, env.HealRaft("tiebreak"))
	idx = commit()
	caughtUp(idx, "the tiebreaker to apply after the delay was healed")

	// Freeze and Thaw.
	must(t, tb.Freeze())
	if _, err := tb.Status(); err == nil {
		t.Error("a frozen witness answered")
	}
	must(t, tb.Thaw())
	must(t, waitUntil(patience, "the thawed witness to answer", func() (bool, error) {
		_, err := tb.Status()
		return err == nil, nil
	}))

	// Cut and Uncut cut and restore only the link they name (here the
	// tiebreaker's with the leader's site, so that no database's witness
	// loses the leader).
	must(t, env.Cut("west", "tiebreak"))
	if env.CanReach("west", "tiebreak", "7400") || env.CanReach("tiebreak", "west", "7400") {
		t.Error("west and tiebreak reach each other through a cut")
	}
	if !env.CanReach("west", "east", "7400") || !env.CanReach("tiebreak", "east", "7400") {
		t.Error("cutting west–tiebreak cut a site off east")
	}
	must(t, env.Uncut("west", "tiebreak"))
	if !env.CanReach("tiebreak", "west", "7400") {
		t.Error("tiebreak does not reach west after Uncut")
	}

	// Reconnect after Isolate restores the links and keeps the Raft fault.
	must(t, env.Isolate("tiebreak"))
	must(t, env.DropRaft("tiebreak"))
	if env.CanReach("tiebreak", "east", "7400") {
		t.Error("an isolated tiebreaker reaches east")
	}
	must(t, env.Reconnect("tiebreak"))
	if !env.CanReach("tiebreak", "east", "7400") || !env.CanReach("tiebreak", "west", "7400") {
		t.Error("the tiebreaker does not reach east and west after Reconnect")
	}
	idx = commit()
	notApplied(idx, 3*time.Second, "DropRaft after Reconnect")
	must(t, env.Heal())
	caughtUp(idx, "the tiebreaker to catch up after Heal")

	// KillSite kills the site's processes; they start again.
	must(t, env.KillSite("tiebreak"))
	if tb.Proc.Running() {
		t.Error("the tiebreaker's witness runs after KillSite")
	}
	must(t, tb.Proc.Start())
	idx = commit()
	caughtUp(idx, "the restarted tiebreaker to catch up")
}
