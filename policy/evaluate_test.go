package policy_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/policy"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

var (
	ew  = []string{"east", "west"}
	ewn = []string{"east", "west", "north"}
)

func TestEvaluateScenarios(t *testing.T) {
	tests := []struct {
		name       string
		groups     []*witnessv1.Group
		live       []policy.Witness
		obs        []policy.Observation
		staleAfter time.Duration
		want       summary
	}{
		{
			name:   "all healthy",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   allLive,
			obs:    allHealthy("app", "east", "west"),
			want: summary{Decisions: map[string]string{
				"app": "none: east healthy, seen by 2 of 2 sites",
			}},
		},
		{
			name:   "site loss fails over",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   live("w1", "w2", "t1"),
			obs:    eastLost("app", 12*time.Second),
			want: summary{
				Proposals: []string{"TRANSITION_KIND_FAILOVER app@1→west [east down: seen failing by 2 of 2 sites for 12s (failover_after 10s); fail over to west]"},
				Decisions: map[string]string{
					"app": "failover east→west@1: east down: seen failing by 2 of 2 sites for 12s (failover_after 10s); fail over to west",
				},
			},
		},
		{
			name:   "failing exactly failover_after fails over",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   live("w1", "w2", "t1"),
			obs:    eastLost("app", 10*time.Second),
			want: summary{
				Proposals: []string{"TRANSITION_KIND_FAILOVER app@1→west [east down: seen failing by 2 of 2 sites for 10s (failover_after 10s); fail over to west]"},
				Decisions: map[string]string{
					"app": "failover east→west@1: east down: seen failing by 2 of 2 sites for 10s (failover_after 10s); fail over to west",
				},
			},
		},
		{
			name:   "failing shorter than failover_after",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   live("w1", "w2", "t1"),
			obs:    eastLost("app", 4100*time.Millisecond),
			want: summary{Decisions: map[string]string{
				"app": "none: east failing for 4.1s of 10s (seen by 2 of 2 sites)",
			}},
		},
		{
			// The majority exists only since the second site joined it.
			name:   "majority held since the later of two sites",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   live("w1", "w2", "t1"),
			obs: cat(
				seeAll(westW, "app", "east", policy.Failing, time.Minute),
				seeAll(tieW, "app", "east", policy.Failing, 4100*time.Millisecond),
				seeAll([]string{"w1", "w2", "t1"}, "app", "west", policy.Healthy, time.Hour),
			),
			want: summary{Decisions: map[string]string{
				"app": "none: east failing for 4.1s of 10s (seen by 2 of 2 sites)",
			}},
		},
		{
			// A site's verdict dates from its latest witness: w2 only
			// joined 3s ago.
			name:   "site verdict since its latest witness",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   live("w1", "w2", "t1"),
			obs: cat(
				seeAll([]string{"w1", "t1"}, "app", "east", policy.Failing, time.Minute),
				seeAll([]string{"w2"}, "app", "east", policy.Failing, 3*time.Second),
				seeAll([]string{"w1", "w2", "t1"}, "app", "west", policy.Healthy, time.Hour),
			),
			want: summary{Decisions: map[string]string{
				"app": "none: east failing for 3s of 10s (seen by 2 of 2 sites)",
			}},
		},
		{
			name:   "east-west link cut, tiebreak sees both",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   allLive,
			obs: cat(
				seeAll(westW, "app", "east", policy.Failing, time.Minute),
				seeAll(eastW, "app", "west", policy.Failing, time.Minute),
				seeAll(append(eastW, "t1"), "app", "east", policy.Healthy, time.Hour),
				seeAll(append(westW, "t1"), "app", "west", policy.Healthy, time.Hour),
			),
			want: summary{Decisions: map[string]string{
				"app": "none: east seen failing by 1 of 2 sites (need 2)",
			}},
		},
		{
			name:   "one west witness disagrees",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   allLive,
			obs: cat(
				seeAll([]string{"w1", "t1"}, "app", "east", policy.Failing, time.Minute),
				seeAll([]string{"w2"}, "app", "east", policy.Healthy, time.Hour),
				allHealthy("app", "west"),
			),
			want: summary{Decisions: map[string]string{
				"app": "none: east seen failing by 1 of 2 sites (need 2)",
			}},
		},
		{
			// Isolated, the tiebreaker's probes all fail; it is not live,
			// so what it says does not count.
			name:   "tiebreak site isolated",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   live("e1", "e2", "w1", "w2"),
			obs: cat(
				seeAll(tieW, "app", "east", policy.Failing, time.Minute),
				seeAll(tieW, "app", "west", policy.Failing, time.Minute),
				seeAll([]string{"e1", "e2", "w1", "w2"}, "app", "east", policy.Healthy, time.Hour),
				seeAll([]string{"e1", "e2", "w1", "w2"}, "app", "west", policy.Healthy, time.Hour),
			),
			want: summary{Decisions: map[string]string{
				"app": "none: east healthy, seen by 1 of 1 sites",
			}},
		},
		{
			// Four sites: west sees east failing, north healthy. The
			// isolated tiebreaker's failing verdict would make a majority
			// of three; not live, it does not count (1 of 2).
			name:   "isolated witness does not tip the majority",
			groups: []*witnessv1.Group{group("app", 1, ewn)},
			live:   live("e1", "w1", "n1"),
			obs: cat(
				seeAll([]string{"w1", "t1"}, "app", "east", policy.Failing, time.Minute),
				seeAll([]string{"n1", "e1"}, "app", "east", policy.Healthy, time.Hour),
				seeAll([]string{"e1", "w1", "n1"}, "app", "west", policy.Healthy, time.Hour),
			),
			want: summary{Decisions: map[string]string{
				"app": "none: east seen failing by 1 of 2 sites (need 2)",
			}},
		},
		{
			// w2 is gone; its last word (east healthy) no longer counts,
			// so west's verdict is w1's alone.
			name:   "a dead witness does not block",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   live("w1", "t1"),
			obs: cat(
				seeAll([]string{"w1", "t1"}, "app", "east", policy.Failing, time.Minute),
				seeAll([]string{"w2"}, "app", "east", policy.Healthy, time.Hour),
				seeAll([]string{"w1", "t1"}, "app", "west", policy.Healthy, time.Hour),
			),
			want: summary{
				Proposals: []string{"TRANSITION_KIND_FAILOVER app@1→west [east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); fail over to west]"},
				Decisions: map[string]string{
					"app": "failover east→west@1: east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); fail over to west",
				},
			},
		},
		{
			name:       "stale observations count as unknown",
			groups:     []*witnessv1.Group{group("app", 1, ew)},
			live:       live("w1", "w2", "t1"),
			staleAfter: 5 * time.Second,
			obs: func() []policy.Observation {
				obs := eastLost("app", time.Minute)
				for i := range obs {
					if obs[i].Site == "east" {
						obs[i].CheckedAt = now.Add(-6 * time.Second)
					}
				}
				return obs
			}(),
			want: summary{Decisions: map[string]string{
				"app": "none: east seen failing by 0 of 2 sites (need 2)",
			}},
		},
		{
			name:       "stale west witness leaves the site's verdict to the fresh one",
			groups:     []*witnessv1.Group{group("app", 1, ew)},
			live:       live("w1", "w2", "t1"),
			staleAfter: 5 * time.Second,
			obs: func() []policy.Observation {
				obs := eastLost("app", time.Minute)
				stale := see("w2", "app", "east", policy.Healthy, time.Hour)
				stale.CheckedAt = now.Add(-time.Minute)
				obs[1] = stale
				return obs
			}(),
			want: summary{
				Proposals: []string{"TRANSITION_KIND_FAILOVER app@1→west [east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); fail over to west]"},
				Decisions: map[string]string{
					"app": "failover east→west@1: east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); fail over to west",
				},
			},
		},
		{
			name:   "a failing probe among several makes the witness see failing",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   live("w1", "w2", "t1"),
			obs: cat(
				eastLost("app", time.Minute),
				seeAll([]string{"w1", "t1"}, "app", "east", policy.Healthy, time.Hour),
			),
			want: summary{
				Proposals: []string{"TRANSITION_KIND_FAILOVER app@1→west [east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); fail over to west]"},
				Decisions: map[string]string{
					"app": "failover east→west@1: east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); fail over to west",
				},
			},
		},
		{
			name:   "observe mode reports, proposes nothing",
			groups: []*witnessv1.Group{group("app", 1, ew, withMode(witnessv1.Mode_MODE_OBSERVE))},
			live:   live("w1", "w2", "t1"),
			obs:    eastLost("app", time.Minute),
			want: summary{Decisions: map[string]string{
				"app": "would-failover east→west@1: observe mode: would fail over east→west; east down: seen failing by 2 of 2 sites for 1m (failover_after 10s)",
			}},
		},
		{
			name:   "manual mode leaves a pending proposal",
			groups: []*witnessv1.Group{group("app", 1, ew, withMode(witnessv1.Mode_MODE_MANUAL))},
			live:   live("w1", "w2", "t1"),
			obs:    eastLost("app", time.Minute),
			want: summary{Decisions: map[string]string{
				"app": "pending east→west@1: manual mode: failover east→west awaits approval; east down: seen failing by 2 of 2 sites for 1m (failover_after 10s)",
			}},
		},
		{
			name:   "target failing too",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   live("w1", "w2", "t1"),
			obs: cat(
				seeAll([]string{"w1", "w2", "t1"}, "app", "east", policy.Failing, time.Minute),
				seeAll([]string{"t1"}, "app", "west", policy.Failing, time.Minute),
				seeAll([]string{"w1", "w2"}, "app", "west", policy.Healthy, time.Hour),
			),
			want: summary{Decisions: map[string]string{
				"app": "none: east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); no eligible target: west failing too",
			}},
		},
		{
			// Only west itself sees west healthy; the tiebreaker has no
			// view yet.
			name:   "target seen healthy only by itself",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   live("w1", "t1"),
			obs: cat(
				seeAll([]string{"w1", "t1"}, "app", "east", policy.Failing, time.Minute),
				seeAll([]string{"w1"}, "app", "west", policy.Healthy, time.Hour),
			),
			want: summary{Decisions: map[string]string{
				"app": "none: east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); no eligible target: west seen healthy by 1 of 2 sites (need 2)",
			}},
		},
		{
			// West's witnesses alone are live: they may judge east, but
			// not vouch for west by themselves.
			name:   "target seen healthy by no other site",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   live("w1", "w2"),
			obs: cat(
				seeAll(westW, "app", "east", policy.Failing, time.Minute),
				seeAll(westW, "app", "west", policy.Healthy, time.Hour),
			),
			want: summary{Decisions: map[string]string{
				"app": "none: east down: seen failing by 1 of 1 sites for 1m (failover_after 10s); no eligible target: west seen healthy only by itself",
			}},
		},
		{
			name:   "standby lagging",
			groups: []*witnessv1.Group{group("app", 1, ew, withPostgres(), withLagLimit(16_000_000, 0))},
			live:   live("w1", "w2", "t1"),
			obs: cat(
				eastLost("app", time.Minute),
				[]policy.Observation{
					db("w1", "app", "west", 48_000_000, 0, false),
					db("t1", "app", "west", 47_000_000, 0, false),
				},
			),
			want: summary{Decisions: map[string]string{
				"app": "none: east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); no eligible target: west lags 48 MB > max_lag 16 MB",
			}},
		},
		{
			name:   "standby behind in time",
			groups: []*witnessv1.Group{group("app", 1, ew, withPostgres(), withLagLimit(0, 5_000))},
			live:   live("w1", "w2", "t1"),
			obs: cat(
				eastLost("app", time.Minute),
				[]policy.Observation{db("w1", "app", "west", 100, 12.5, false)},
			),
			want: summary{Decisions: map[string]string{
				"app": "none: east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); no eligible target: west lags 12.5s > max_lag 5s",
			}},
		},
		{
			name:   "standby lag unknown",
			groups: []*witnessv1.Group{group("app", 1, ew, withPostgres(), withLagLimit(16_000_000, 0))},
			live:   live("w1", "w2", "t1"),
			obs: cat(
				eastLost("app", time.Minute),
				[]policy.Observation{db("w1", "app", "west", -1, -1, false)},
			),
			want: summary{Decisions: map[string]string{
				"app": "none: east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); no eligible target: west lag unknown (max_lag 16 MB)",
			}},
		},
		{
			name:   "standby within limits fails over",
			groups: []*witnessv1.Group{group("app", 1, ew, withPostgres(), withLagLimit(16_000_000, 5_000))},
			live:   live("w1", "w2", "t1"),
			obs: cat(
				eastLost("app", time.Minute),
				[]policy.Observation{db("w1", "app", "west", 8_000_000, 0, false)},
			),
			want: summary{
				Proposals: []string{"TRANSITION_KIND_FAILOVER app@1→west [east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); fail over to west]"},
				Decisions: map[string]string{
					"app": "failover east→west@1: east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); fail over to west",
				},
			},
		},
		{
			// West is the old primary the group left: moving back would
			// lose what was written at east since.
			name:   "old primary is never a target",
			groups: []*witnessv1.Group{group("app", 1, ew, withPostgres())},
			live:   live("w1", "w2", "t1"),
			obs: cat(
				eastLost("app", time.Minute),
				[]policy.Observation{dbPrimary("w1", "app", "west")},
			),
			want: summary{Decisions: map[string]string{
				"app": "none: east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); no eligible target: west is a primary, not a standby: rebuild it as a standby of the active site first",
			}},
		},
		{
			// The application at east fails but its database still feeds
			// the standby: the old primary may still take writes.
			name:   "standby still streaming from its primary",
			groups: []*witnessv1.Group{group("app", 1, ew, withPostgres())},
			live:   live("w1", "w2", "t1"),
			obs: cat(
				eastLost("app", time.Minute),
				[]policy.Observation{db("w1", "app", "west", 0, 0, false), db("w2", "app", "west", 0, 0, true)},
			),
			want: summary{Decisions: map[string]string{
				"app": "none: east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); no eligible target: west still streams from its primary",
			}},
		},
		{
			name:   "postgres group without database observations of the target",
			groups: []*witnessv1.Group{group("app", 1, ew, withPostgres())},
			live:   live("w1", "w2", "t1"),
			obs:    eastLost("app", time.Minute),
			want: summary{Decisions: map[string]string{
				"app": "none: east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); no eligible target: west has no fresh database observation",
			}},
		},
		{
			name:   "next site in priority order when the first lags",
			groups: []*witnessv1.Group{group("app", 1, ewn, withLagLimit(16_000_000, 0))},
			live:   live("w1", "t1", "n1"),
			obs: cat(
				seeAll([]string{"w1", "t1", "n1"}, "app", "east", policy.Failing, time.Minute),
				seeAll([]string{"w1", "t1", "n1"}, "app", "west", policy.Healthy, time.Hour),
				seeAll([]string{"w1", "t1", "n1"}, "app", "north", policy.Healthy, time.Hour),
				[]policy.Observation{db("t1", "app", "west", 20_000_000, 0, false), db("t1", "app", "north", 0, 0, false)},
			),
			want: summary{
				Proposals: []string{"TRANSITION_KIND_FAILOVER app@1→north [east down: seen failing by 3 of 3 sites for 1m (failover_after 10s); fail over to north]"},
				Decisions: map[string]string{
					"app": "failover east→north@1: east down: seen failing by 3 of 3 sites for 1m (failover_after 10s); fail over to north",
				},
			},
		},
		{
			name: "several groups at the same site move in one command",
			groups: []*witnessv1.Group{
				group("web", 3, ew),
				group("api", 1, ew),
				group("db", 2, []string{"west", "east"}),
				group("cache", 4, ew, withMode(witnessv1.Mode_MODE_OBSERVE)),
			},
			live: live("w1", "w2", "t1"),
			obs:  cat(eastLost("web", time.Minute), eastLost("api", time.Minute), eastLost("db", time.Minute), eastLost("cache", time.Minute)),
			want: summary{
				Proposals: []string{"TRANSITION_KIND_FAILOVER api@1→west web@3→west [site east down: 2 groups fail over]"},
				Decisions: map[string]string{
					"api":   "failover east→west@1: east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); fail over to west",
					"web":   "failover east→west@3: east down: seen failing by 2 of 2 sites for 1m (failover_after 10s); fail over to west",
					"db":    "none: west healthy, seen by 1 of 1 sites",
					"cache": "would-failover east→west@4: observe mode: would fail over east→west; east down: seen failing by 2 of 2 sites for 1m (failover_after 10s)",
				},
			},
		},
		{
			// After east→west, east is back and west fails: disarmed, the
			// group stays at west.
			name:   "disarmed: no ping-pong when the old site returns",
			groups: []*witnessv1.Group{group("app", 1, ew, failedOver(time.Hour))},
			live:   allLive,
			obs: cat(
				allHealthy("app", "east"),
				seeAll(all, "app", "west", policy.Failing, time.Minute),
			),
			want: summary{Decisions: map[string]string{
				"app": "none: disarmed after failover at token 2",
			}},
		},
		{
			name:   "rearm auto after hold_down",
			groups: []*witnessv1.Group{group("app", 1, ew, failedOver(10*time.Minute), withRearm(witnessv1.Rearm_REARM_AUTO, 10*time.Minute))},
			live:   allLive,
			obs:    allHealthy("app", "east", "west"),
			want: summary{
				Decisions: map[string]string{
					"app": "rearm: disarmed after failover at token 2; hold_down 10m passed and west is healthy: re-arm",
				},
				Rearm: []string{"app"},
			},
		},
		{
			name:   "rearm auto waits for hold_down",
			groups: []*witnessv1.Group{group("app", 1, ew, failedOver(9*time.Minute), withRearm(witnessv1.Rearm_REARM_AUTO, 10*time.Minute))},
			live:   allLive,
			obs:    allHealthy("app", "east", "west"),
			want: summary{Decisions: map[string]string{
				"app": "none: disarmed after failover at token 2; re-arm in 1m (hold_down 10m)",
			}},
		},
		{
			name:   "rearm auto waits for the active site to be healthy",
			groups: []*witnessv1.Group{group("app", 1, ew, failedOver(time.Hour), withRearm(witnessv1.Rearm_REARM_AUTO, 10*time.Minute))},
			live:   live("w1", "w2", "t1"),
			obs: cat(
				seeAll(westW, "app", "west", policy.Healthy, time.Hour),
				seeAll(tieW, "app", "west", policy.Failing, time.Second),
			),
			want: summary{Decisions: map[string]string{
				"app": "none: disarmed after failover at token 2; re-arm waits for west: west seen healthy by 1 of 2 sites (need 2)",
			}},
		},
		{
			name: "an operator's disarm is not undone by rearm auto",
			groups: []*witnessv1.Group{group("app", 1, ew, withRearm(witnessv1.Rearm_REARM_AUTO, time.Minute), func(g *witnessv1.Group) {
				g.Status.Armed, g.Status.DisarmedAtToken = false, 1
			})},
			live: allLive,
			obs:  allHealthy("app", "east", "west"),
			want: summary{Decisions: map[string]string{
				"app": "none: disarmed at token 1; not re-armed automatically: not disarmed by a failover in the history",
			}},
		},
		{
			name:   "rearm manual stays disarmed",
			groups: []*witnessv1.Group{group("app", 1, ew, failedOver(time.Hour), withRearm(witnessv1.Rearm_REARM_MANUAL, time.Minute))},
			live:   allLive,
			obs:    allHealthy("app", "east", "west"),
			want: summary{Decisions: map[string]string{
				"app": "none: disarmed after failover at token 2",
			}},
		},
		{
			name:   "no live witness site besides the active one",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   live("e1", "e2"),
			obs:    seeAll(eastW, "app", "east", policy.Failing, time.Hour),
			want: summary{Decisions: map[string]string{
				"app": "none: no live witness site other than east to judge it",
			}},
		},
		{
			name: "group without status",
			groups: []*witnessv1.Group{group("app", 1, ew, func(g *witnessv1.Group) { g.Status = nil }),
				{Status: &witnessv1.GroupStatus{ActiveSite: "east"}}},
			live: live("w1", "w2", "t1"),
			obs:  eastLost("app", time.Hour),
			want: summary{Decisions: map[string]string{
				"app": `none: active site "" is not a site of the group`,
			}},
		},
		{
			name:   "observations of unknown groups and sites are ignored",
			groups: []*witnessv1.Group{group("app", 1, ew)},
			live:   allLive,
			obs: cat(
				allHealthy("app", "east", "west"),
				seeAll(all, "gone", "east", policy.Failing, time.Hour),
				seeAll(all, "app", "south", policy.Failing, time.Hour),
			),
			want: summary{Decisions: map[string]string{
				"app": "none: east healthy, seen by 2 of 2 sites",
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := policy.Evaluate(policy.Input{
				Now:          now,
				Groups:       tt.groups,
				Observations: tt.obs,
				Live:         tt.live,
				StaleAfter:   tt.staleAfter,
			})
			if diff := cmp.Diff(tt.want, summarize(out)); diff != "" {
				t.Errorf("Evaluate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEvaluateWake(t *testing.T) {
	// West has seen east failing for 4 s, the tiebreaker for 3 s: both are
	// needed, so east has been down by majority for 3 s.
	lost := cat(
		seeAll([]string{"w1", "w2"}, "app", "east", policy.Failing, 4*time.Second),
		seeAll([]string{"t1"}, "app", "east", policy.Failing, 3*time.Second),
		seeAll([]string{"w1", "w2", "t1"}, "app", "west", policy.Healthy, time.Hour),
	)
	quick := group("quick", 2, ew)
	quick.Spec.Policy.FailoverAfterMs = 5_000
	quickLost := make([]policy.Observation, len(lost))
	for i, o := range lost {
		o.Group = "quick"
		quickLost[i] = o
	}
	tests := []struct {
		name   string
		groups []*witnessv1.Group
		obs    []policy.Observation
		want   time.Time
	}{
		{"nothing failing", []*witnessv1.Group{group("app", 1, ew)}, allHealthy("app", "east", "west"), time.Time{}},
		{"failing, not yet long enough", []*witnessv1.Group{group("app", 1, ew)}, lost, now.Add(7 * time.Second)},
		{"the earliest of several groups", []*witnessv1.Group{group("app", 1, ew), quick}, cat(lost, quickLost), now.Add(2 * time.Second)},
		{"already due: proposed, no wake", []*witnessv1.Group{group("app", 1, ew)}, eastLost("app", 12*time.Second), time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := policy.Evaluate(policy.Input{Now: now, Groups: tt.groups, Live: live("w1", "w2", "t1"), Observations: tt.obs, StaleAfter: 5 * time.Second})
			if !out.Wake.Equal(tt.want) {
				t.Errorf("Wake = %v, want %v", out.Wake, tt.want)
			}
		})
	}
}
