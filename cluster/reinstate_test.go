package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/actions/actionstest"
	"github.com/sitewitness/witness/integration/pgharness"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// pgExec runs statements on the server at dsn.
func pgExec(t *testing.T, dsn string, stmts ...string) {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, s := range stmts {
		if _, err := conn.Exec(ctx(t), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// forkedPair is east's old primary and west's promoted standby after an
// asynchronous failover: east committed `lost` rows west never received.
func forkedPair(t *testing.T, lost int) (east, west *pgharness.Server) {
	t.Helper()
	east = pgharness.StartPrimary(t)
	west = pgharness.StartStandby(t, east)
	pgExec(t, east.DSN("postgres"), "ALTER SYSTEM SET autovacuum = off", "SELECT pg_reload_conf()", "CREATE TABLE rows (n int)")
	west.CatchUp(t, east)
	pgExec(t, west.DSN("postgres"), "SELECT pg_promote(true, 60)")
	for i := range lost {
		pgExec(t, east.DSN("postgres"), fmt.Sprintf("INSERT INTO rows VALUES (%d)", 100+i))
	}
	east.HandOver(t)
	return east, west
}

func reinstateDoc(t *testing.T, east, west *pgharness.Server, mode string) string {
	return fmt.Sprintf(`
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    policy: {failover_after: 1h, fence_after: 30s, mode: observe}
    actions:
      postgres:
        dsn: {east: %q, west: %q}
        data_dir: {east: %s, west: /nonexistent/west}
        save_dir: {east: %s}
        pg_ctl: %s
        roles: [app]
        reinstate: %s
`, east.DSN("postgres"), west.DSN("postgres"), east.DataDir, filepath.Join(t.TempDir(), "saved"),
		filepath.Join(pgharness.BinDir(t), "pg_ctl"), mode)
}

// reinstateCluster starts east, west and tiebreak witnesses whose plans
// act on nothing real, applies the group and fails it over to west.
func reinstateCluster(t *testing.T, doc string) (*testCluster, *Node, uint64) {
	tc := newTestClusterWith(t, func(i int, o *Options) { o.Runner = actionstest.NewRunner() }, "east", "west", "tiebreak")
	_, leader := tc.leader()
	applyDoc(t, leader, doc)
	c := dial(t, leader.AdminAddr())
	resp, err := c.Failover(ctx(t), &witnessv1.FailoverRequest{Group: "app", ToSite: "west", OldSiteDown: true, Reason: "east lost", By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return tc, leader, resp.GetToken()
}

func stepsOf(n *Node, token uint64) map[string]*witnessv1.StepResult {
	g, _ := n.FSM().Group("app")
	out := map[string]*witnessv1.StepResult{}
	for _, s := range g.GetStatus().GetSteps() {
		if s.GetToken() == token {
			out[s.GetStep()] = s
		}
	}
	return out
}

// An operator's reinstate: refused for the active site, an unknown site
// or a stale token; done at the group's token through the witness at the
// old site, each step recorded in Raft with what was set aside.
func TestReinstateByOperator(t *testing.T) {
	east, west := forkedPair(t, 3)
	tc, leader, token := reinstateCluster(t, reinstateDoc(t, east, west, "manual"))
	c := dial(t, tc.nodes[2].AdminAddr()) // the tiebreaker forwards
	eventually(t, "the tiebreaker to know the leader", func() bool { _, a := tc.nodes[2].Leader(); return a != "" })

	for _, tt := range []struct {
		name string
		req  *witnessv1.ReinstateRequest
		code codes.Code
	}{
		{"the active site", &witnessv1.ReinstateRequest{Group: "app", Site: "west"}, codes.FailedPrecondition},
		{"unknown site", &witnessv1.ReinstateRequest{Group: "app", Site: "north"}, codes.InvalidArgument},
		{"a witness site not of the group", &witnessv1.ReinstateRequest{Group: "app", Site: "tiebreak"}, codes.InvalidArgument},
		{"unknown group", &witnessv1.ReinstateRequest{Group: "nope", Site: "east"}, codes.NotFound},
	} {
		if _, err := c.Reinstate(ctx(t), tt.req); status.Code(err) != tt.code {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.code)
		}
	}
	if _, err := dial(t, tc.nodes[0].AdminAddr()).ReinstateLocal(ctx(t), &witnessv1.ReinstateLocalRequest{Group: "app", Token: token - 1}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("reinstate at a stale token: %v, want FailedPrecondition", err)
	}
	for name := range stepsOf(leader, token) {
		if strings.HasPrefix(name, StepReinstatePrefix) {
			t.Fatalf("a refused reinstate recorded %s", name)
		}
	}

	long, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := c.Reinstate(long, &witnessv1.ReinstateRequest{Group: "app", Site: "east", By: "alice"})
	if err != nil || !resp.GetOk() {
		t.Fatalf("reinstate east: %v, %v", err, resp)
	}
	_, leader = tc.leader()
	eventually(t, "the steps applied on the leader", func() bool { return stepsOf(leader, token)[StepReinstatePrefix+"stream"] != nil })
	steps := stepsOf(leader, token)
	for _, name := range []string{"check", "stop", "save", "rewind", "slot", "configure", "start", "stream"} {
		s := steps[StepReinstatePrefix+name]
		if s == nil || !s.GetOk() || s.GetNode() != tc.nodes[0].Name() || s.GetRule() != "operator alice" {
			t.Errorf("step %s recorded as %v, want ok on %s by the operator", name, s, tc.nodes[0].Name())
		}
	}
	if d := steps[StepReinstatePrefix+"save"].GetDetail(); !strings.Contains(d, "3 transactions committed") {
		t.Errorf("save step detail %q, want the 3 transactions set aside", d)
	}
	pgExec(t, west.DSN("postgres"), "INSERT INTO rows VALUES (1)")
	eventually(t, "east to replay west's row", func() bool {
		conn, err := pgx.Connect(ctx(t), east.DSN("postgres"))
		if err != nil {
			return false
		}
		defer conn.Close(context.Background())
		var n int
		return conn.QueryRow(ctx(t), "SELECT count(*) FROM rows WHERE n = 1").Scan(&n) == nil && n == 1
	})
}

// With reinstate: auto the leader reinstates the old site by itself once
// the move's plan is done.
func TestReinstateAuto(t *testing.T) {
	east, west := forkedPair(t, 2)
	_, leader, token := reinstateCluster(t, reinstateDoc(t, east, west, "auto"))
	deadline := time.Now().Add(90 * time.Second)
	for stepsOf(leader, token)[StepReinstatePrefix+"stream"].GetOk() != true {
		if time.Now().After(deadline) {
			t.Fatalf("east not reinstated by itself: steps %v", stepsOf(leader, token))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s := stepsOf(leader, token)[StepReinstatePrefix+"save"]; !strings.Contains(s.GetDetail(), "2 transactions committed") || s.GetRule() != "auto" {
		t.Errorf("save step %v, want 2 transactions set aside by auto", s)
	}
}

// Applying a group with a data_dir says, without refusing it, what would
// stop a later reinstate: here west's node has neither wal_log_hints nor
// checksums.
func TestApplyWarnsWhatStopsARewind(t *testing.T) {
	east := pgharness.StartPrimary(t)
	west := pgharness.StartPrimary(t)
	pgExec(t, west.DSN("postgres"), "ALTER SYSTEM SET wal_log_hints = off")
	west.Stop(t)
	west.Start(t)
	tc := newTestClusterWith(t, func(i int, o *Options) { o.Runner = actionstest.NewRunner() }, "east", "west", "tiebreak")
	_, leader := tc.leader()
	doc := reinstateDoc(t, east, west, "manual")
	resp, err := dial(t, leader.AdminAddr()).ApplyGroups(ctx(t), &witnessv1.ApplyGroupsRequest{Document: []byte(doc), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	w := resp.GetWarnings()
	if len(w) != 1 || !strings.Contains(w[0], "actions.postgres.dsn.west") || !strings.Contains(w[0], "wal_log_hints") {
		t.Errorf("warnings %q, want one about west's wal_log_hints", w)
	}
}
