package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/integration/pgharness"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// A witness restarted in the middle of a self-fence episode finds the
// fence its earlier run left at the group's current token and lifts it by
// the same rule (lease held, linearizable read); the database is not left
// fenced for good with nothing failed over.
func TestRestartedWitnessLiftsTheSelfFenceItLeft(t *testing.T) {
	pg := pgharness.StartPrimary(t)
	dsn := pg.DSN("postgres")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE ROLE app LOGIN"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	tc := newTestCluster(t, "east", "west", "tiebreak")
	_, leader := tc.leader()
	applyDoc(t, leader, fmt.Sprintf(`
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    policy: {failover_after: 1h, fence_after: 2s, mode: observe}
    actions:
      postgres: {dsn: {east: %q, west: "host=127.0.0.1 port=1 user=witness connect_timeout=1"}, roles: [app]}
`, dsn))
	eventually(t, "east to replicate the group", func() bool { _, ok := tc.nodes[0].FSM().Group("app"); return ok })
	g, _ := tc.nodes[0].FSM().Group("app")
	token := g.GetStatus().GetToken()

	// What an earlier run of east's witness left: its self-fence.
	tc.stop(0)
	if err := (&postgres.Client{Site: "east", Roles: []string{"app"}}).Fence(ctx, dsn, "app", token); err != nil {
		t.Fatal(err)
	}
	tc.start(0)
	eventually(t, "the restarted witness to lift the fence it left", func() bool {
		st, err := postgres.Status(ctx, dsn)
		return err == nil && st.Groups["app"].Role == postgres.RolePrimary && st.Groups["app"].Token == token
	})
	st, err := postgres.Status(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Blocked["app"]) != 0 {
		t.Errorf("logins still blocked after the lift: %v", st.Blocked["app"])
	}
}

// In a switchover's first phase the group stays at east at a new token
// while the leader fences east's database at that token. East's witness
// must not take that fence for a self-fence an earlier run left and lift
// it: the old primary would take writes again while the target catches
// up, and they would be lost at the move.
func TestLeadersSwitchoverFenceIsNotLiftedAsALeftSelfFence(t *testing.T) {
	pg := pgharness.StartPrimary(t)
	dsn := pg.DSN("postgres")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE ROLE app LOGIN"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	tc := newTestCluster(t, "east", "west", "tiebreak")
	_, leader := tc.leader()
	applyDoc(t, leader, fmt.Sprintf(`
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    policy: {failover_after: 1h, fence_after: 2s, mode: observe, switchover_timeout: 1h}
    actions:
      postgres: {dsn: {east: %q, west: "host=127.0.0.1 port=1 user=witness connect_timeout=1"}, roles: [app]}
`, dsn))
	eventually(t, "east to replicate the group", func() bool { _, ok := tc.nodes[0].FSM().Group("app"); return ok })
	g, _ := leader.FSM().Group("app")
	res, err := applyAtLeader(t, leader, &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: g.GetStatus().GetToken(), ToSite: "west"}},
		Kind: witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER, Prepare: true, Reason: "planned"}, false)
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	prep := res.Tokens["app"]
	// The leader fences east at the prepare token; west's database never
	// answers, so the phase waits in its catch-up step.
	eventually(t, "the leader's fence of east at the prepare token", func() bool {
		st, err := postgres.Status(ctx, dsn)
		return err == nil && st.Groups["app"].Role == postgres.RoleFenced && st.Groups["app"].Token == prep
	})
	eventually(t, "east's witness to hold the prepare token", func() bool {
		g, ok := tc.nodes[0].FSM().Group("app")
		return ok && g.GetStatus().GetToken() == prep
	})
	// East's lease loop looks at each new token within a check period;
	// the fence must hold through several.
	for range 20 {
		time.Sleep(150 * time.Millisecond)
		st, err := postgres.Status(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.Groups["app"]; r.Role != postgres.RoleFenced || r.Token != prep {
			t.Fatalf("east's database at %s token %d while the switchover waits: its fence was lifted", r.Role, r.Token)
		}
	}
}
