package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sitewitness/witness/clock"
	"github.com/sitewitness/witness/config"
)

func TestGrantsExpireOnlyAfterHoldSinceTheLatestGrant(t *testing.T) {
	start := time.Unix(1000, 0)
	const hold = 10 * time.Second
	g := newGrants(start)
	type check struct {
		at      time.Duration // after start
		nodes   []string
		expired bool
	}
	for _, step := range []struct {
		grant  string
		at     time.Duration
		checks []check
	}{
		// Never granted: counted from the voter's start, since it may have
		// granted just before it restarted.
		{checks: []check{
			{at: hold - time.Millisecond, nodes: []string{"east-1"}, expired: false},
			{at: hold, nodes: []string{"east-1"}, expired: true},
		}},
		{grant: "east-1", at: 3 * time.Second, checks: []check{
			{at: hold, nodes: []string{"east-1"}, expired: false},
			{at: 3*time.Second + hold - time.Millisecond, nodes: []string{"east-1"}, expired: false},
			{at: 3*time.Second + hold, nodes: []string{"east-1"}, expired: true},
			// Another witness of the site that never renewed does not
			// shorten the hold: the latest grant to any of them counts.
			{at: 3*time.Second + hold - time.Millisecond, nodes: []string{"east-1", "east-2"}, expired: false},
		}},
		// An older grant arriving late never moves the record back.
		{grant: "east-1", at: time.Second, checks: []check{
			{at: 3*time.Second + hold - time.Millisecond, nodes: []string{"east-1"}, expired: false},
		}},
	} {
		if step.grant != "" {
			g.grant(step.grant, start.Add(step.at))
		}
		for _, c := range step.checks {
			got, _ := g.expired(c.nodes, hold, start.Add(c.at))
			if got != c.expired {
				t.Errorf("after grant %s@%v: expired(%v) at %v = %v, want %v", step.grant, step.at, c.nodes, c.at, got, c.expired)
			}
		}
	}
}

func TestHolderKeepsTheNewestQuorumGrant(t *testing.T) {
	h := newHolder()
	now := time.Unix(2000, 0)
	if _, ok := h.since(now); ok {
		t.Fatal("a witness that was never granted holds a lease")
	}
	h.renewed(now.Add(-2 * time.Second))
	h.renewed(now.Add(-3 * time.Second)) // a slower, older round ends later
	if d, ok := h.since(now); !ok || d != 2*time.Second {
		t.Fatalf("since = %v, %v; want 2s, true", d, ok)
	}
}

// The voters' hold must cover everything between the old site's lease
// running out (fence_after after its last granted renewal was sent) and its
// fence holding: the lease check, the first round after a start, the
// fence's time limit and the clocks' rates.
func TestFenceHoldCoversTheSelfFence(t *testing.T) {
	for _, policy := range []string{
		"{}",
		"{failover_after: 5s}",
		"{failover_after: 1h, fence_after: 30m, fence_timeout: 10s}",
	} {
		specs, err := config.ParseGroups([]byte(`
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "h:1"}]}
      - {name: west, probes: [{kind: tcp, address: "h:2"}]}
    policy: ` + policy + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		spec := specs[0]
		fenceAfter := time.Duration(spec.GetPolicy().GetFenceAfterMs()) * time.Millisecond
		worst := fenceAfter + leaseEvery + leaseRenewTimeout + config.FenceTimeout(spec) + config.ClockDrift(fenceAfter)
		if hold := config.DefaultTiming().FenceHold(spec); hold < worst {
			t.Errorf("policy %s: fence hold %v below the self-fence's worst case %v", policy, hold, worst)
		}
	}
}

func TestQuorum(t *testing.T) {
	for voters, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 7: 4, 9: 5} {
		if got := quorum(voters); got != want {
			t.Errorf("quorum(%d) = %d, want %d", voters, got, want)
		}
	}
}

// The leader sees a site's lease expired only once every witness there has
// been silent for the hold, by a quorum of voters' clocks; a running
// witness at the site keeps it held. The witnesses share a fake clock, so
// the hold is judged to the moment.
func TestSiteLeaseExpiresOnlyAfterTheHold(t *testing.T) {
	fake := clock.NewFake(time.Date(2031, 5, 1, 12, 0, 0, 0, time.UTC))
	tc := newTestClusterWith(t, func(_ int, o *Options) { o.Clock = fake }, "east", "west", "tiebreak")
	specs, err := config.ParseGroupsWith([]byte(`
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1", interval: 200ms, timeout: 100ms}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2", interval: 200ms, timeout: 100ms}]}
    policy: {failover_after: 3s, fence_after: 500ms}
`), config.Timing{LeaderLease: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	spec := specs[0]
	hold := tc.nodes[0].cfg.Timing().FenceHold(spec)
	// Every witness has seen every other's site.
	eventually(t, "sites known", func() bool {
		for _, n := range tc.nodes {
			if len(n.sitesSeen()) != 3 {
				return false
			}
		}
		return true
	})
	east := tc.nodes[0]
	// renewed moves the clock a lease period on and waits until every
	// voter granted east's renewal of that moment.
	renewed := func() time.Time {
		t.Helper()
		fake.Advance(leaseEvery)
		now := fake.Now()
		eventually(t, "east's renewal granted by every voter", func() bool {
			for _, n := range tc.nodes {
				n.grants.mu.Lock()
				at := n.grants.last[east.Name()]
				n.grants.mu.Unlock()
				if !at.Equal(now) {
					return false
				}
			}
			return true
		})
		return now
	}
	// East runs: its lease is held, whoever asks, however long it runs.
	var last time.Time
	for range hold/leaseEvery + 2 {
		last = renewed()
	}
	for _, n := range tc.nodes[1:] {
		if err := n.SiteLeaseExpired(context.Background(), "east", spec); !errors.Is(err, ErrLeaseHeld) {
			t.Fatalf("%s: east's lease while east runs: %v, want ErrLeaseHeld", n.Name(), err)
		}
	}
	tc.stop(0)
	_, leader := tc.leader()
	// A lease period short of the hold since east's last grant: held.
	fake.Advance(last.Add(hold - leaseEvery).Sub(fake.Now()))
	if err := leader.SiteLeaseExpired(context.Background(), "east", spec); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("east's lease %s after its last grant (hold %s): %v, want ErrLeaseHeld", fake.Since(last), hold, err)
	}
	// The hold passed: expired.
	fake.Advance(leaseEvery)
	if err := leader.SiteLeaseExpired(context.Background(), "east", spec); err != nil {
		t.Fatalf("east's lease %s after its last grant (hold %s): %v, want expired", fake.Since(last), hold, err)
	}
	// West's own lease is held by the two that run.
	if err := leader.SiteLeaseExpired(context.Background(), "west", spec); !errors.Is(err, ErrLeaseHeld) {
		t.Errorf("west's lease: %v, want ErrLeaseHeld", err)
	}
}

// A witness remembers across a restart the sites of the witnesses it saw,
// so that as leader it can judge the lease of a site whose witnesses went
// before it started.
func TestSitesSeenSurviveARestart(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	eventually(t, "west to see every site", func() bool { return len(tc.nodes[1].sitesSeen()) == 3 })
	eventually(t, "west to save them", func() bool {
		_, err := os.Stat(filepath.Join(tc.cfgs[1].DataDir, sitesFile))
		return err == nil
	})
	tc.stop(0)
	tc.stop(1)
	tc.start(1)
	if got := tc.nodes[1].sitesSeen()["east-1"]; got != "east" {
		t.Errorf("after a restart without east, west knows east-1 at %q, want east", got)
	}
}
