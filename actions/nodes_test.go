package actions_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/actionstest"
	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// nodesGroup has one node at east and two standbys at west.
func nodesGroup() *witnessv1.GroupSpec {
	g := pgDNSGroup("app")
	g.Actions.Postgres = &witnessv1.PostgresAction{
		Dsn: map[string]string{"east": "e1", "west": "wa"},
		Nodes: []*witnessv1.PostgresNode{
			{Name: "east-1", Site: "east", Dsn: "e1"},
			{Name: "west-a", Site: "west", Dsn: "wa"},
			{Name: "west-b", Site: "west", Dsn: "wb"},
		},
	}
	return g
}

// TestNodesPromoteChosenAndRepointOthers: a failover to the node the
// policy chose promotes exactly that node, then points the other standby
// of the group at it; the old primary is fenced, not re-pointed.
func TestNodesPromoteChosenAndRepointOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &actionstest.Leader{FSM: fsm.New()}
		if _, err := l.Apply(context.Background(), &witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{nodesGroup()}}); err != nil {
			t.Fatal(err)
		}
		r := actionstest.NewRunner()
		res, err := l.Apply(context.Background(), &witnessv1.TransitionCommand{
			Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "west", ToNode: "west-b"}},
			Kind:  witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER,
		})
		if err != nil || res.Err != nil {
			t.Fatal(err, res.Err)
		}
		tok := res.Tokens["app"]
		runOnFake(t, l, r, func() bool { return len(steps(l)) == 5 })
		var got []string
		for _, c := range r.Calls() {
			if c.Token == tok {
				got = append(got, c.String())
			}
		}
		want := []string{"fence app@2 east", "promote app@2 west/west-b", "dns app@2 west", "repoint app@2 west/west-a", "settle app@2 west"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
		g, _ := l.FSM.Group("app")
		if n := actions.SiteNode(g, "west").GetName(); n != "west-b" {
			t.Errorf("west acts through %q, want west-b", n)
		}
		if n := actions.SiteNode(g, "east").GetName(); n != "east-1" {
			t.Errorf("east acts through %q, want east-1", n)
		}
	})
}

// TestNodesPlanUnchangedForOneNodePerSite: a group with one node per site
// has no repoint step, and its promote acts on the site's only node.
func TestNodesPlanUnchangedForOneNodePerSite(t *testing.T) {
	l, _ := setup(t)
	failover(t, l, "west")
	g, _ := l.FSM.Group("app")
	if diff := cmp.Diff([]string{"fence", "promote", "dns", "settle"}, actions.Plan(g)); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	n := actions.SiteNode(g, "west")
	if diff := cmp.Diff("west w", n.GetName()+" "+n.GetDsn()); diff != "" {
		t.Errorf("node (-want +got):\n%s", diff)
	}
}

// TestNodesSwitchoverKeepsPreparedNode: the node a switchover's prepare
// chose is the one its move promotes; the move need not name it again.
func TestNodesSwitchoverKeepsPreparedNode(t *testing.T) {
	f := fsm.New()
	l := &actionstest.Leader{FSM: f}
	ctx := context.Background()
	if _, err := l.Apply(ctx, &witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{nodesGroup()}}); err != nil {
		t.Fatal(err)
	}
	apply := func(c *witnessv1.TransitionCommand) {
		t.Helper()
		if res, err := l.Apply(ctx, c); err != nil || res.Err != nil {
			t.Fatal(err, res.Err)
		}
	}
	apply(&witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "west", ToNode: "west-b"}},
		Kind: witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER, Prepare: true})
	g, _ := f.Group("app")
	if n := actions.SiteNode(g, "west").GetName(); n != "west-b" {
		t.Errorf("during the prepare, west's target is %q, want west-b", n)
	}
	apply(&witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 2, ToSite: "west"}},
		Kind: witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER})
	g, _ = f.Group("app")
	h := g.GetStatus().GetHistory()
	last := h[len(h)-1]
	if diff := cmp.Diff("west-b  west-b", g.GetStatus().GetActiveNode()+" "+last.GetFromNode()+" "+last.GetToNode()); diff != "" {
		t.Errorf("active node, from and to node (-want +got):\n%s", diff)
	}
	// A move to a node of another site, or to no such node, is refused.
	for _, node := range []string{"west-z", "east-1"} {
		res, err := l.Apply(ctx, &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 3, ToSite: "east", ToNode: node}},
			Kind: witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER, Prepare: true})
		if node == "east-1" {
			if err != nil || res.Err != nil {
				t.Fatalf("prepare to east-1: %v %v", err, res.Err)
			}
			continue
		}
		if !errors.Is(res.Err, fsm.ErrInvalid) {
			t.Errorf("move to node %s: %v, want ErrInvalid", node, res.Err)
		}
	}
	res, _ := l.Apply(ctx, &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 4, ToSite: "west", ToNode: "east-1"}},
		Kind: witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER, Operator: true, Reason: "test"})
	if !errors.Is(res.Err, fsm.ErrInvalid) {
		t.Errorf("move to west at node east-1: %v, want ErrInvalid", res.Err)
	}
}

// TestNodesRepointRetriedWithoutHoldingUpThePlan: a standby that cannot be
// re-pointed now fails the repoint step, which settle does not wait for;
// it is tried again until it succeeds.
func TestNodesRepointRetriedWithoutHoldingUpThePlan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &actionstest.Leader{FSM: fsm.New()}
		if _, err := l.Apply(context.Background(), &witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{nodesGroup()}}); err != nil {
			t.Fatal(err)
		}
		r := actionstest.NewRunner()
		r.Fail("repoint/west-a", errors.New("connection refused"))
		if res, err := l.Apply(context.Background(), &witnessv1.TransitionCommand{
			Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "west", ToNode: "west-b"}},
			Kind:  witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER,
		}); err != nil || res.Err != nil {
			t.Fatal(err, res.Err)
		}
		f := startFake(t, &actions.Reconciler{Leader: l, Runner: r})
		defer f.stop()
		f.until(5*time.Second, func() bool { return slices.Contains(steps(l), actions.StepSettle) })
		if slices.Contains(steps(l), actions.StepRepoint) {
			t.Fatal("repoint recorded ok while west-a refused")
		}
		r.Fail("repoint/west-a", nil)
		f.until(time.Minute, func() bool { return slices.Contains(steps(l), actions.StepRepoint) })
	})
}
