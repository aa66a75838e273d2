package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/integration/pgharness"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// A new group starts where its database is the unfenced primary, not at
// its first site; with no single such primary it starts unresolved, in
// observe mode, and nothing is promoted; an operator may state the site.
func TestNewGroupStartsAtItsPrimary(t *testing.T) {
	primary := pgharness.StartPrimary(t) // at west, the second site
	standby := pgharness.StartStandby(t, primary)
	tc := newTestCluster(t, "east", "west", "tiebreak")
	_, leader := tc.leader()
	c := dial(t, leader.AdminAddr())
	doc := func(name, eastDSN, westDSN string) []byte {
		return fmt.Appendf(nil, `
groups:
  - name: %s
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    policy: {mode: observe}
    actions:
      postgres: {dsn: {east: %q, west: %q}, roles: [app]}
`, name, eastDSN, westDSN)
	}
	start := func(name string) (*witnessv1.Transition, witnessv1.Mode) {
		g, err := c.GetGroup(ctx(t), &witnessv1.GetGroupRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return g.GetGroup().GetStatus().GetHistory()[0], g.GetGroup().GetStatus().GetMode()
	}

	// east is the standby, west the primary.
	if _, err := applyGroups(t, c, &witnessv1.ApplyGroupsRequest{Document: doc("app", standby.DSN("postgres"), primary.DSN("postgres"))}); err != nil {
		t.Fatal(err)
	}
	if h, _ := start("app"); h.GetToSite() != "west" || h.GetPhase() != "" || !strings.Contains(h.GetReason(), "east standby") {
		t.Errorf("app started as %v, want at west, the only primary", h)
	}

	// A fenced primary is not a primary to start at: both sites are
	// then without one, and the group starts unresolved.
	if err := (&postgres.Client{}).Fence(context.Background(), primary.DSN("postgres"), "db", 7); err != nil {
		t.Fatal(err)
	}
	if _, err := applyGroups(t, c, &witnessv1.ApplyGroupsRequest{Document: doc("db", standby.DSN("postgres"), primary.DSN("postgres"))}); err != nil {
		t.Fatal(err)
	}
	h, mode := start("db")
	if h.GetPhase() != "unresolved" || mode != witnessv1.Mode_MODE_OBSERVE || !strings.Contains(h.GetReason(), "west fenced primary (token 7)") {
		t.Errorf("db started as %v in mode %v, want unresolved in observe mode, saying west is fenced", h, mode)
	}

	// An operator can state it, over what was found; a site the group
	// lacks is refused.
	if err := (&postgres.Client{}).Fence(context.Background(), primary.DSN("postgres"), "web", 8); err != nil {
		t.Fatal(err)
	}
	_, err := applyGroups(t, c, &witnessv1.ApplyGroupsRequest{Document: doc("web", standby.DSN("postgres"), primary.DSN("postgres")),
		ActiveSites: map[string]string{"web": "north"}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("active site not of the group: %v, want InvalidArgument", err)
	}
	if _, err := applyGroups(t, c, &witnessv1.ApplyGroupsRequest{Document: doc("web", standby.DSN("postgres"), primary.DSN("postgres")),
		ActiveSites: map[string]string{"web": "west"}}); err != nil {
		t.Fatal(err)
	}
	if h, _ := start("web"); h.GetToSite() != "west" || h.GetPhase() != "" {
		t.Errorf("web started as %v, want at west as stated", h)
	}
}

// applyGroups applies a group document through the admin API, asking again
// while no leader is known (an election on a busy machine), as an operator
// would.
func applyGroups(t *testing.T, c witnessv1.AdminClient, req *witnessv1.ApplyGroupsRequest) (*witnessv1.ApplyGroupsResponse, error) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		res, err := c.ApplyGroups(ctx(t), req)
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			return res, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
