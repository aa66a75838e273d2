package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/integration/pgharness"
)

// Application roles of the tests: ordinary LOGIN roles, not superusers.
// appRW has a per-role setting that turns the read-only default off for
// every session it opens, without any change in the client.
const (
	appRole = "app_user"
	appRW   = "app_rw"
)

// makeAppRoles creates the application roles and a table they may write.
func makeAppRoles(t *testing.T, srv *pgharness.Server) {
	t.Helper()
	if _, err := connect(t, srv.DSN("postgres")).Exec(testContext(t), fmt.Sprintf(`
		CREATE ROLE %[1]s LOGIN;
		CREATE ROLE %[2]s LOGIN;
		ALTER ROLE %[2]s SET default_transaction_read_only = off;
		CREATE TABLE IF NOT EXISTS items (id int);
		GRANT INSERT, SELECT ON items TO %[1]s, %[2]s`, appRole, appRW)); err != nil {
		t.Fatal(err)
	}
}

// roleDSN connects to srv's database postgres as role, with extra
// connection parameters.
func roleDSN(srv *pgharness.Server, role string, params url.Values) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(role),
		Host:     fmt.Sprintf("%s:%d", srv.Host, srv.Port),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}
	if len(params) > 0 {
		// %20, not +: pgx does not read + as a space.
		u.RawQuery += "&" + strings.ReplaceAll(params.Encode(), "+", "%20")
	}
	return u.String()
}

// write connects to dsn and runs the statements one by one, as a client
// that wants to write would. (Sent as one string, the statements would
// share one implicit transaction that began read-only.)
func write(ctx context.Context, dsn string, stmts []string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	for _, stmt := range stmts {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return nil
}

// bypasses are the ways an application client can try to write to a
// fenced primary. Each must be refused, by the login or by the write.
func bypasses(srv *pgharness.Server) []struct {
	name string
	dsn  string
	sql  []string
} {
	return []struct {
		name string
		dsn  string
		sql  []string
	}{
		{"plain reconnect", roleDSN(srv, appRole, nil),
			[]string{"INSERT INTO items VALUES (10)"}},
		{"SET default_transaction_read_only = off", roleDSN(srv, appRole, nil),
			[]string{"SET default_transaction_read_only = off", "INSERT INTO items VALUES (11)"}},
		{"SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", roleDSN(srv, appRole, nil),
			[]string{"SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", "INSERT INTO items VALUES (12)"}},
		{"BEGIN READ WRITE", roleDSN(srv, appRole, nil),
			[]string{"BEGIN READ WRITE", "INSERT INTO items VALUES (13)", "COMMIT"}},
		{"options=-c default_transaction_read_only=off",
			roleDSN(srv, appRole, url.Values{"options": {"-c default_transaction_read_only=off"}}),
			[]string{"INSERT INTO items VALUES (14)"}},
		{"role with ALTER ROLE SET default_transaction_read_only = off", roleDSN(srv, appRW, nil),
			[]string{"INSERT INTO items VALUES (15)"}},
	}
}

// TestFenceHoldsAgainstApplicationClients fences a primary and has an
// application role try every way around the read-only default, and a
// plain reconnect: each must be refused.
func TestFenceHoldsAgainstApplicationClients(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	makeAppRoles(t, primary)
	east := &postgres.Client{Site: "east", Roles: []string{appRole, appRW}}

	// Every attempt writes before the fence: the test can tell a fence
	// from a broken client.
	for _, b := range bypasses(primary) {
		if err := write(testContext(t), b.dsn, b.sql); err != nil {
			t.Fatalf("%s before the fence: %v", b.name, err)
		}
	}
	held, err := pgx.Connect(testContext(t), roleDSN(primary, appRole, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(context.Background())

	if err := east.Fence(testContext(t), primary.DSN("postgres"), group, 2); err != nil {
		t.Fatal(err)
	}

	if _, err := held.Exec(testContext(t), "BEGIN READ WRITE; INSERT INTO items VALUES (20); COMMIT"); err == nil {
		t.Error("a session open during the fence wrote after it")
	}
	for _, b := range bypasses(primary) {
		t.Run(b.name, func(t *testing.T) {
			if err := write(testContext(t), b.dsn, b.sql); err == nil {
				t.Errorf("%s wrote to the fenced primary", b.name)
			}
		})
	}
}

// canLogin reads pg_roles.rolcanlogin of the application roles at dsn.
func canLogin(t *testing.T, dsn string) map[string]bool {
	t.Helper()
	rows, err := connect(t, dsn).Query(testContext(t),
		"SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'app%' ORDER BY rolname")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for rows.Next() {
		var name string
		var login bool
		if err := rows.Scan(&name, &login); err != nil {
			t.Fatal(err)
		}
		got[name] = login
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestFenceRefusesRolesItMustNotBlock(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	makeAppRoles(t, primary)
	if _, err := connect(t, primary.DSN("postgres")).Exec(testContext(t), `
		CREATE ROLE app_admin LOGIN SUPERUSER;
		CREATE ROLE app_repl LOGIN REPLICATION`); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		roles  []string
		want   error
		reason string
	}{
		{"unknown role", []string{appRole, "app_nobody"}, postgres.ErrUnknownRole, "does not exist"},
		{"superuser", []string{appRole, "app_admin"}, postgres.ErrUnfenceableRole, "superuser"},
		{"replication role", []string{"app_repl", appRole}, postgres.ErrUnfenceableRole, "replication"},
		// postgres is also a superuser; being Witness's own role is said
		// first.
		{"witness's own role", []string{appRole, "postgres"}, postgres.ErrUnfenceableRole, "witness's own role"},
	}
	before := canLogin(t, primary.DSN("postgres"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &postgres.Client{Site: "east", Roles: tt.roles}
			err := c.Fence(testContext(t), primary.DSN("postgres"), group, 2)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var roleErr *postgres.RoleError
			if !errors.As(err, &roleErr) {
				t.Fatalf("got %T, want *RoleError in the chain", err)
			}
			if diff := cmp.Diff(tt.reason, roleErr.Reason); diff != "" {
				t.Errorf("reason (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, canLogin(t, primary.DSN("postgres"))); diff != "" {
				t.Errorf("logins changed by a refused fence (-before +after):\n%s", diff)
			}
			want := postgres.NodeStatus{Groups: map[string]postgres.Record{}}
			if diff := cmp.Diff(want, status(t, primary.DSN("postgres")), ignoreTimes); diff != "" {
				t.Errorf("status after a refused fence (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSwitchoverRestoresBlockedRoles fences a primary, promotes its
// standby, and checks that the logins the fence blocked come back on the
// promoted node, and only those, while the old primary keeps refusing.
// The subtests depend on each other and run in order.
func TestSwitchoverRestoresBlockedRoles(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	makeAppRoles(t, primary)
	if _, err := connect(t, primary.DSN("postgres")).Exec(testContext(t),
		"CREATE ROLE app_disabled NOLOGIN"); err != nil {
		t.Fatal(err)
	}
	roles := []string{appRW, "app_disabled", appRole}
	east := &postgres.Client{Site: "east", Roles: roles}
	west := &postgres.Client{Site: "west", Roles: roles}
	if err := east.Promote(testContext(t), primary.DSN("postgres"), group, 1); err != nil {
		t.Fatal(err)
	}
	standby := pgharness.StartStandby(t, primary)

	t.Run("fence blocks the roles that could log in and records them", func(t *testing.T) {
		if err := east.Fence(testContext(t), primary.DSN("postgres"), group, 2); err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{appRW: false, "app_disabled": false, appRole: false}
		if diff := cmp.Diff(want, canLogin(t, primary.DSN("postgres"))); diff != "" {
			t.Errorf("logins on the fenced primary (-want +got):\n%s", diff)
		}
		wantStatus := postgres.NodeStatus{
			ReadOnly: true,
			Groups:   map[string]postgres.Record{group: {Token: 2, Role: postgres.RoleFenced, Site: "east"}},
			// app_disabled could not log in before: not Witness's to
			// give back.
			Blocked: map[string][]string{group: {appRW, appRole}},
		}
		if diff := cmp.Diff(wantStatus, status(t, primary.DSN("postgres")), ignoreTimes); diff != "" {
			t.Errorf("fenced primary status (-want +got):\n%s", diff)
		}
	})

	t.Run("fence again at the same token changes nothing", func(t *testing.T) {
		before := status(t, primary.DSN("postgres"))
		if err := east.Fence(testContext(t), primary.DSN("postgres"), group, 2); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before, status(t, primary.DSN("postgres"))); diff != "" {
			t.Errorf("status changed by a repeated fence (-before +after):\n%s", diff)
		}
	})

	t.Run("fence at a higher token updates the record", func(t *testing.T) {
		if err := east.Fence(testContext(t), primary.DSN("postgres"), group, 3); err != nil {
			t.Fatal(err)
		}
		want := postgres.Record{Token: 3, Role: postgres.RoleFenced, Site: "east"}
		if diff := cmp.Diff(want, status(t, primary.DSN("postgres")).Groups[group], ignoreTimes); diff != "" {
			t.Errorf("token record (-want +got):\n%s", diff)
		}
	})

	t.Run("promote of the standby gives back exactly the blocked logins", func(t *testing.T) {
		standby.CatchUp(t, primary)
		// The standby replayed the fence: its catalog has the roles
		// blocked, and its token table says which.
		if diff := cmp.Diff(map[string][]string{group: {appRW, appRole}}, status(t, standby.DSN("postgres")).Blocked); diff != "" {
			t.Errorf("blocked roles replayed on the standby (-want +got):\n%s", diff)
		}
		if err := west.Promote(testContext(t), standby.DSN("postgres"), group, 3); err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{appRW: true, "app_disabled": false, appRole: true}
		if diff := cmp.Diff(want, canLogin(t, standby.DSN("postgres"))); diff != "" {
			t.Errorf("logins on the promoted standby (-want +got):\n%s", diff)
		}
		if got := status(t, standby.DSN("postgres")).Blocked; got != nil {
			t.Errorf("blocked roles after promote: %v, want none", got)
		}
		for _, b := range bypasses(standby) {
			if err := write(testContext(t), b.dsn, b.sql); err != nil {
				t.Errorf("%s on the promoted standby: %v", b.name, err)
			}
		}
	})

	t.Run("the old primary still refuses every client", func(t *testing.T) {
		for _, b := range bypasses(primary) {
			if err := write(testContext(t), b.dsn, b.sql); err == nil {
				t.Errorf("%s wrote to the fenced old primary", b.name)
			}
		}
	})

	t.Run("a stale promote of the old primary is refused and restores nothing", func(t *testing.T) {
		wantHigher(t, east.Promote(testContext(t), primary.DSN("postgres"), group, 1), 3, 1)
		want := map[string]bool{appRW: false, "app_disabled": false, appRole: false}
		if diff := cmp.Diff(want, canLogin(t, primary.DSN("postgres"))); diff != "" {
			t.Errorf("logins on the fenced primary (-want +got):\n%s", diff)
		}
	})
}

// TestRoleSharedByTwoGroups: a role that two groups' fences blocked comes
// back only when both are promoted again.
func TestRoleSharedByTwoGroups(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	makeAppRoles(t, primary)
	c := &postgres.Client{Site: "east", Roles: []string{appRole}}
	dsn := primary.DSN("postgres")
	for _, g := range []string{"a", "b"} {
		if err := c.Fence(testContext(t), dsn, g, 2); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(map[string][]string{"a": {appRole}, "b": {appRole}}, status(t, dsn).Blocked); diff != "" {
		t.Errorf("blocked roles (-want +got):\n%s", diff)
	}
	if err := c.Promote(testContext(t), dsn, "a", 2); err != nil {
		t.Fatal(err)
	}
	if canLogin(t, dsn)[appRole] {
		t.Error("promote of group a gave back a login that group b's fence holds")
	}
	if err := c.Promote(testContext(t), dsn, "b", 2); err != nil {
		t.Fatal(err)
	}
	if !canLogin(t, dsn)[appRole] {
		t.Error("login not given back after both groups were promoted")
	}
}

// TestFenceOnATableOfAnEarlierVersion: a node whose witness.fence was made
// before blocked roles were recorded gets the new table at the first fence.
func TestFenceOnATableOfAnEarlierVersion(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	makeAppRoles(t, primary)
	dsn := primary.DSN("postgres")
	if _, err := connect(t, dsn).Exec(testContext(t), `CREATE SCHEMA witness;
		CREATE TABLE witness.fence (
			group_name text PRIMARY KEY,
			token      bigint NOT NULL CHECK (token >= 0),
			role       text NOT NULL,
			site       text NOT NULL,
			updated_at timestamptz NOT NULL);
		INSERT INTO witness.fence VALUES ('app', 1, 'primary', 'east', now())`); err != nil {
		t.Fatal(err)
	}
	c := &postgres.Client{Site: "east", Roles: []string{appRole}}
	wantHigher(t, c.Fence(testContext(t), dsn, group, 0), 1, 0)
	if err := c.Fence(testContext(t), dsn, group, 2); err != nil {
		t.Fatal(err)
	}
	want := postgres.NodeStatus{
		ReadOnly: true,
		Groups:   map[string]postgres.Record{group: {Token: 2, Role: postgres.RoleFenced, Site: "east"}},
		Blocked:  map[string][]string{group: {appRole}},
	}
	if diff := cmp.Diff(want, status(t, dsn), ignoreTimes); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

// TestFenceWithoutRoles ends the sessions and records the token, but
// cannot keep a client from logging in again: the documented limit.
func TestFenceWithoutRoles(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	makeAppRoles(t, primary)
	held, err := pgx.Connect(testContext(t), roleDSN(primary, appRole, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(context.Background())
	c := &postgres.Client{Site: "east"}
	if err := c.Fence(testContext(t), primary.DSN("postgres"), group, 2); err != nil {
		t.Fatal(err)
	}
	if err := held.Ping(testContext(t)); err == nil {
		t.Error("a session open during the fence survived it")
	}
	if got, _ := status(t, primary.DSN("postgres")).Token(group); got != 2 {
		t.Errorf("token = %d, want 2", got)
	}
	b := bypasses(primary)[3] // BEGIN READ WRITE
	if err := write(testContext(t), b.dsn, b.sql); err != nil {
		t.Errorf("without roles a client was expected to get back in: %v", err)
	}
}

// TestFenceTakesNoWriteUnderItsToken has application clients stamp every
// write with the token the node holds, reconnecting and bypassing the
// read-only default, while the node is fenced: the node must refuse them
// all before it records the fence's token, so no write carries it.
func TestFenceTakesNoWriteUnderItsToken(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	makeAppRoles(t, primary)
	dsn := primary.DSN("postgres")
	east := &postgres.Client{Site: "east", Roles: []string{appRole}}
	if err := east.Promote(testContext(t), dsn, group, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, dsn).Exec(testContext(t), fmt.Sprintf(`
		CREATE TABLE stamped (token bigint NOT NULL);
		GRANT INSERT ON stamped TO %[1]s;
		GRANT USAGE ON SCHEMA witness TO %[1]s;
		GRANT SELECT ON witness.fence TO %[1]s`, appRole)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	const writers = 4
	accepted := make(chan int, writers)
	for range writers {
		go func() {
			n := 0
			for ctx.Err() == nil {
				err := write(ctx, roleDSN(primary, appRole, nil), []string{"BEGIN READ WRITE",
					"INSERT INTO stamped SELECT token FROM witness.fence WHERE group_name = 'app'", "COMMIT"})
				if err == nil {
					n++
				}
			}
			accepted <- n
		}()
	}
	// Fence once the writers are writing.
	if err := waitRows(t, dsn, "SELECT count(*) >= 20 FROM stamped"); err != nil {
		t.Fatal(err)
	}
	if err := east.Fence(testContext(t), dsn, group, 2); err != nil {
		t.Fatal(err)
	}
	if err := waitRows(t, dsn, "SELECT count(*) = 0 FROM pg_stat_activity WHERE usename = 'app_user'"); err != nil {
		t.Fatal(err)
	}
	cancel()
	total := 0
	for range writers {
		total += <-accepted
	}
	var stamped2 int
	if err := connect(t, dsn).QueryRow(testContext(t),
		"SELECT count(*) FROM stamped WHERE token >= 2").Scan(&stamped2); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writes accepted before the fence", total)
	if stamped2 != 0 {
		t.Errorf("the fenced node took %d writes stamped with the fence's token", stamped2)
	}
}

// waitRows polls a boolean query until it is true.
func waitRows(t *testing.T, dsn, query string) error {
	t.Helper()
	conn := connect(t, dsn)
	ctx := testContext(t)
	for {
		var ok bool
		if err := conn.QueryRow(ctx, query).Scan(&ok); err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", query, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
