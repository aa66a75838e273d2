package policy_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/policy"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// TestDecisionStates checks the word each decision is graphed as, and when
// a down site's verdict held failover_after.
func TestDecisionStates(t *testing.T) {
	type result struct {
		State policy.DecisionState
		Due   time.Time
	}
	tests := []struct {
		name   string
		groups []*witnessv1.Group
		live   []policy.Witness
		obs    []policy.Observation
		want   result
	}{
		{"healthy", []*witnessv1.Group{group("app", 1, ew)}, allLive, allHealthy("app", "east", "west"), result{State: policy.DecisionHealthy}},
		{"failing, not yet failover_after", []*witnessv1.Group{group("app", 1, ew)}, live("w1", "w2", "t1"), eastLost("app", 4*time.Second), result{State: policy.DecisionWaiting}},
		{"down", []*witnessv1.Group{group("app", 1, ew)}, live("w1", "w2", "t1"), eastLost("app", 12*time.Second),
			result{State: policy.DecisionFailingOver, Due: now.Add(-2 * time.Second)}},
		{"observe mode", []*witnessv1.Group{group("app", 1, ew, withMode(witnessv1.Mode_MODE_OBSERVE))}, live("w1", "w2", "t1"), eastLost("app", 12*time.Second),
			result{State: policy.DecisionWouldFailover, Due: now.Add(-2 * time.Second)}},
		{"manual mode", []*witnessv1.Group{group("app", 1, ew, withMode(witnessv1.Mode_MODE_MANUAL))}, live("w1", "w2", "t1"), eastLost("app", 12*time.Second),
			result{State: policy.DecisionAwaitingApproval, Due: now.Add(-2 * time.Second)}},
		{"disarmed", []*witnessv1.Group{group("app", 1, ew, failedOver(time.Minute))}, allLive, allHealthy("app", "east", "west"), result{State: policy.DecisionDisarmed}},
		{"data-loss guard", []*witnessv1.Group{group("app", 1, ew, withPostgres(), withLagLimit(16<<20, 0))}, live("w1", "w2", "t1"),
			cat(eastLost("app", time.Minute), []policy.Observation{db("w1", "app", "west", 48<<20, 0, false)}),
			result{State: policy.DecisionBlockedByDataLossGuard, Due: now.Add(-50 * time.Second)}},
		{"no healthy target", []*witnessv1.Group{group("app", 1, ew)}, live("w1", "w2", "t1"),
			seeAll([]string{"w1", "w2", "t1"}, "app", "east", policy.Failing, time.Minute),
			result{State: policy.DecisionNoTarget, Due: now.Add(-50 * time.Second)}},
		{"switchover pending", []*witnessv1.Group{group("app", 1, ew, switchingOver(time.Minute))}, live("w1", "w2", "t1"), eastLost("app", 12*time.Second),
			result{State: policy.DecisionSwitchoverPending}},
		{"no judge", []*witnessv1.Group{group("app", 1, ew)}, live("e1"), allHealthy("app", "east"), result{State: policy.DecisionNoJudge}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := policy.Evaluate(policy.Input{Now: now, Groups: tt.groups, Observations: tt.obs, Live: tt.live}).Decisions["app"]
			if diff := cmp.Diff(tt.want, result{d.State, d.Due}); diff != "" {
				t.Errorf("(-want +got):\n%s\nreason: %s", diff, d.Reason)
			}
		})
	}
}
