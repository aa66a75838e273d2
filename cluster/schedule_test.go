package cluster

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/policy"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// A switchover asked for a later time waits in the replicated state and
// is started by whichever witness leads when the time comes: here the
// leader that took it is stopped first. A scheduled switchover can be
// cancelled, and a second one is refused while one waits.
func TestScheduledSwitchoverSurvivesALeaderChange(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	li, leader := tc.leader()
	applyDoc(t, leader, strings.Replace(twoGroups, "127.0.0.1:2", answering(t), 1))
	eventually(t, "west seen working", func() bool {
		_, leader := tc.leader()
		ok, _ := leader.eligible("app", "west", policy.JudgePlanned)
		return ok
	})
	c := dial(t, tc.follower().AdminAddr())
	at := time.Now().Add(3 * time.Second)
	resp, err := c.Switchover(ctx(t), &witnessv1.SwitchoverRequest{Group: "app", ToSite: "west", AtUnixNano: at.UnixNano(), Reason: "maintenance", By: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetToken() != 0 || resp.GetScheduled().GetToSite() != "west" || resp.GetScheduled().GetAtUnixNano() != at.UnixNano() {
		t.Fatalf("response %v, want the schedule and no token", resp)
	}
	_, err = c.Switchover(ctx(t), &witnessv1.SwitchoverRequest{Group: "app", ToSite: "west", AtUnixNano: at.Add(time.Hour).UnixNano()})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("a second schedule: %v, want FailedPrecondition", err)
	}
	g, _ := leader.FSM().Group("app")
	if g.GetStatus().GetActiveSite() != "east" || g.GetStatus().GetScheduled().GetBy() != "alice" {
		t.Fatalf("before its time: %v", g.GetStatus())
	}

	tc.stop(li)
	_, leader = tc.leader()
	if time.Now().After(at) {
		t.Logf("the new leader took over %s after the scheduled time", time.Since(at))
	}
	var last *witnessv1.ScheduledSwitchover
	eventually(t, "the scheduled switchover to move the group to west", func() bool {
		g, _ := leader.FSM().Group("app")
		last = g.GetStatus().GetLastScheduled()
		return g.GetStatus().GetActiveSite() == "west" && g.GetStatus().GetScheduled() == nil
	})
	if !strings.HasPrefix(last.GetOutcome(), "started at token ") {
		t.Errorf("outcome %q", last.GetOutcome())
	}
	g, _ = leader.FSM().Group("app")
	for _, h := range g.GetStatus().GetHistory() {
		if h.GetPhase() == "prepare" && (h.GetBy() != "alice" || h.GetReason() != "scheduled: maintenance") {
			t.Errorf("history %v: want alice's scheduled reason", h)
		}
		if h.GetPhase() == "prepare" && h.GetAtUnixNano() < at.UnixNano() {
			t.Errorf("started at %s, before its time %s", time.Unix(0, h.GetAtUnixNano()), at)
		}
	}

	c = dial(t, leader.AdminAddr())
	if _, err := c.Switchover(ctx(t), &witnessv1.SwitchoverRequest{Group: "app", ToSite: "east", AtUnixNano: time.Now().Add(time.Hour).UnixNano(), By: "alice"}); err != nil {
		t.Fatal(err)
	}
	cancelled, err := c.CancelSwitchover(ctx(t), &witnessv1.CancelSwitchoverRequest{Group: "app", By: "bob", Reason: "freeze"})
	if err != nil || cancelled.GetCancelled().GetToSite() != "east" {
		t.Fatalf("cancel: %v, %v", cancelled, err)
	}
	g, _ = leader.FSM().Group("app")
	if g.GetStatus().GetScheduled() != nil || g.GetStatus().GetLastScheduled().GetOutcome() != "cancelled by bob: freeze" || g.GetStatus().GetActiveSite() != "west" {
		t.Errorf("after the cancel: %v", g.GetStatus())
	}
	if _, err := c.CancelSwitchover(ctx(t), &witnessv1.CancelSwitchoverRequest{Group: "app"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("a cancel with nothing scheduled: %v, want FailedPrecondition", err)
	}
}
