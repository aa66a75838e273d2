package postgres_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/integration/pgharness"
)

// TestStandbyTokenRefusesStalePromote fences a standby for a newer
// decision and offers it a stale promote, as a paused leader would. The
// subtests depend on each other and run in order.
func TestStandbyTokenRefusesStalePromote(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	east := &postgres.Client{Site: "east"}
	west := &postgres.Client{Site: "west"}
	if err := east.Promote(testContext(t), primary.DSN("postgres"), group, 3); err != nil {
		t.Fatal(err)
	}
	standby := pgharness.StartStandby(t, primary)
	standby.CatchUp(t, primary)

	t.Run("fence of a standby records its token on the node only", func(t *testing.T) {
		if err := west.Fence(testContext(t), standby.DSN("postgres"), group, 5); err != nil {
			t.Fatal(err)
		}
		want := postgres.Record{Token: 5, Role: postgres.RoleFenced}
		if diff := cmp.Diff(want, status(t, standby.DSN("postgres")).Node[group]); diff != "" {
			t.Errorf("standby's own token (-want +got):\n%s", diff)
		}
		if got, _ := status(t, standby.DSN("postgres")).Token(group); got != 5 {
			t.Errorf("effective token = %d, want 5", got)
		}
		if got := status(t, primary.DSN("postgres")).Node; got != nil {
			t.Errorf("the primary holds node tokens %v; they must not replicate", got)
		}
	})

	t.Run("a lower fence is refused", func(t *testing.T) {
		wantHigher(t, west.Fence(testContext(t), standby.DSN("postgres"), group, 4), 5, 4)
	})

	t.Run("a stale promote is refused, also after a restart", func(t *testing.T) {
		wantHigher(t, west.Promote(testContext(t), standby.DSN("postgres"), group, 4), 5, 4)
		standby.Stop(t)
		standby.Start(t)
		wantHigher(t, west.Promote(testContext(t), standby.DSN("postgres"), group, 4), 5, 4)
		if st := status(t, standby.DSN("postgres")); !st.InRecovery {
			t.Errorf("the standby left recovery on a stale promote: %+v", st)
		}
	})

	t.Run("a newer promote is accepted", func(t *testing.T) {
		if err := west.Promote(testContext(t), standby.DSN("postgres"), group, 6); err != nil {
			t.Fatal(err)
		}
		st := status(t, standby.DSN("postgres"))
		if got, _ := st.Token(group); got != 6 || st.InRecovery {
			t.Errorf("after promote: token %d, in recovery %v; want 6, false", got, st.InRecovery)
		}
	})

	t.Run("the promoted node refuses a fence below its own token", func(t *testing.T) {
		// The node store says 5 and the table 6: the higher counts.
		wantHigher(t, west.Fence(testContext(t), standby.DSN("postgres"), group, 5), 6, 5)
	})
}

// TestNodeTokenGroupNames keeps group names that need escaping apart in
// the one setting that holds them all.
func TestNodeTokenGroupNames(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	standby := pgharness.StartStandby(t, primary)
	c := &postgres.Client{Site: "west"}
	groups := map[string]uint64{
		"app":                    1,
		"a&b=c":                  2,
		"with space+plus":        3,
		"quote'semicolon;%2F":    4,
		"ünïcode":                5,
		strings.Repeat("g", 100): 6,
	}
	for g, tok := range groups {
		if err := c.Fence(testContext(t), standby.DSN("postgres"), g, tok); err != nil {
			t.Fatalf("fence %q: %v", g, err)
		}
	}
	want := map[string]postgres.Record{}
	for g, tok := range groups {
		want[g] = postgres.Record{Token: tok, Role: postgres.RoleFenced}
	}
	if diff := cmp.Diff(want, status(t, standby.DSN("postgres")).Node); diff != "" {
		t.Errorf("node tokens (-want +got):\n%s", diff)
	}
}

func TestUnreadableNodeTokens(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	standby := pgharness.StartStandby(t, primary)
	conn := connect(t, standby.DSN("postgres"))
	for _, stmt := range []string{"SET witness.tokens = ''", "ALTER SYSTEM SET witness.tokens = 'app=five:fenced'"} {
		if _, err := conn.Exec(testContext(t), stmt); err != nil {
			t.Fatal(err)
		}
	}
	c := &postgres.Client{Site: "west"}
	for name, err := range map[string]error{
		"fence":   c.Fence(testContext(t), standby.DSN("postgres"), group, 6),
		"promote": c.Promote(testContext(t), standby.DSN("postgres"), group, 6),
	} {
		if !errors.Is(err, postgres.ErrNodeTokens) {
			t.Errorf("%s: got %v, want ErrNodeTokens", name, err)
		}
	}
	var inRecovery bool
	if err := conn.QueryRow(testContext(t), "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		t.Fatal(err)
	}
	if !inRecovery {
		t.Error("the standby was promoted with an unreadable token store")
	}
}
