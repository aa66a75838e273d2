package cluster

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/actionstest"
	"github.com/sitewitness/witness/actions/postgres"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

const demoteGroup = `
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    policy: {failover_after: 1h, fence_after: 30s, mode: observe}
    actions:
      postgres:
        dsn: {east: "host=east-db user=witness", west: "host=west-db user=witness"}
        data_dir: {east: /var/lib/postgresql/15/main, west: /var/lib/postgresql/15/main}
        roles: [app]
`

// The witness at the old site demotes its database for the leader only at
// the group's current token after a linearizable read, and only once the
// group has left its site; an operator's failover carries the attestation
// into the history and is refused when it makes no sense.
func TestDemoteLocalAndOperatorFailover(t *testing.T) {
	recs := []*fenceRecorder{{}, {}, {}}
	runners := []*actionstest.Runner{actionstest.NewRunner(), actionstest.NewRunner(), actionstest.NewRunner()}
	for _, r := range runners {
		// The leader's own plan acts on nothing real, and a switchover's
		// first phase waits.
		r.Block(actionstest.StepDemote)
	}
	tc := newTestClusterWith(t, func(i int, o *Options) {
		o.LocalDatabase = recs[i].database
		o.Runner = runners[i]
	}, "east", "west", "tiebreak")
	_, leader := tc.leader()
	applyDoc(t, leader, demoteGroup)
	c := dial(t, tc.nodes[2].AdminAddr()) // the tiebreaker forwards writes
	eventually(t, "the tiebreaker to know the leader's admin address", func() bool { _, a := tc.nodes[2].Leader(); return a != "" })
	g, _ := leader.FSM().Group("app")
	first := g.GetStatus().GetToken()

	demotes := func() []string {
		calls, _ := recs[0].get()
		var out []string
		for _, c := range calls {
			if len(c) > 6 && c[:6] == "demote" {
				out = append(out, c)
			}
		}
		return out
	}
	ask := func(token uint64) error {
		_, err := leader.DemoteLocal(ctx(t), "east", actions.DemoteRequest{Group: "app", Token: token, Mode: postgres.StopImmediate})
		return err
	}

	t.Run("refused while the group is active there", func(t *testing.T) {
		if err := ask(first); !errors.Is(err, ErrDemoteRefused) {
			t.Fatalf("demote at the active site: %v, want ErrDemoteRefused", err)
		}
	})

	t.Run("failover refusals", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			req  *witnessv1.FailoverRequest
			code codes.Code
		}{
			{"unknown site", &witnessv1.FailoverRequest{Group: "app", ToSite: "north", Reason: "r"}, codes.InvalidArgument},
			{"the active site", &witnessv1.FailoverRequest{Group: "app", ToSite: "east", Reason: "r"}, codes.FailedPrecondition},
			{"old site down without a reason", &witnessv1.FailoverRequest{Group: "app", ToSite: "west", OldSiteDown: true}, codes.InvalidArgument},
			{"without a reason", &witnessv1.FailoverRequest{Group: "app", ToSite: "west"}, codes.InvalidArgument},
			{"unknown group", &witnessv1.FailoverRequest{Group: "nope", ToSite: "west", Reason: "r"}, codes.NotFound},
		} {
			if _, err := c.Failover(ctx(t), tt.req); status.Code(err) != tt.code {
				t.Errorf("%s: %v, want %v", tt.name, err, tt.code)
			}
		}
	})

	var moved uint64
	t.Run("operator failover records the attestation", func(t *testing.T) {
		resp, err := c.Failover(ctx(t), &witnessv1.FailoverRequest{Group: "app", ToSite: "west", OldSiteDown: true, Reason: "east lost power", By: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		moved = resp.GetToken()
		if moved <= first || resp.GetFromSite() != "east" {
			t.Fatalf("failover response %v", resp)
		}
		g, _ := leader.FSM().Group("app")
		h := g.GetStatus().GetHistory()
		last := h[len(h)-1]
		if !last.GetOldSiteDown() || last.GetBy() != "alice" || last.GetReason() != "east lost power" || last.GetKind() != witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER {
			t.Errorf("recorded transition %v", last)
		}
	})

	t.Run("stale token refused", func(t *testing.T) {
		if err := ask(first); !errors.Is(err, ErrDemoteRefused) {
			t.Fatalf("demote at the old token: %v, want ErrDemoteRefused", err)
		}
		if got := demotes(); len(got) != 0 {
			t.Fatalf("demoted on a refused request: %q", got)
		}
	})

	t.Run("current token demoted, through the witness at the site", func(t *testing.T) {
		if err := ask(moved); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("demote immediate host=east-db user=witness app@%d", moved)
		if got := demotes(); !slices.Equal(got, []string{want}) {
			t.Errorf("east demoted %q, want %q", got, want)
		}
		// West's witness is not at the site: east's alone was asked.
		if calls, _ := recs[1].get(); len(calls) != 0 {
			t.Errorf("west's witness was asked: %q", calls)
		}
	})

	t.Run("failover refused mid-switchover", func(t *testing.T) {
		// East's probe fails, so the API refuses a switchover there: the
		// first phase is committed directly.
		if _, err := applyAtLeader(t, leader, &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: moved, ToSite: "east"}},
			Kind: witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER, Prepare: true, Reason: "back"}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Failover(ctx(t), &witnessv1.FailoverRequest{Group: "app", ToSite: "east", Reason: "r"}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("failover during a switchover: %v, want FailedPrecondition", err)
		}
		g, _ := leader.FSM().Group("app")
		if g.GetStatus().GetActiveSite() != "west" || g.GetStatus().GetPending() == nil {
			t.Errorf("after the refused failover: active %s, pending %v", g.GetStatus().GetActiveSite(), g.GetStatus().GetPending())
		}
		for _, r := range runners {
			r.Release(actionstest.StepDemote)
		}
	})
}
