package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/cluster/clustertest"
	"github.com/sitewitness/witness/integration/pgharness"
)

const group = "app"

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(testContext(t), dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func status(t *testing.T, dsn string) postgres.NodeStatus {
	t.Helper()
	st, err := postgres.Status(testContext(t), dsn)
	if err != nil {
		t.Fatalf("Status(%s): %v", dsn, err)
	}
	return st
}

// ignoreTimes leaves out UpdatedAt, which the server sets.
var ignoreTimes = cmpopts.IgnoreFields(postgres.Record{}, "UpdatedAt")

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func wantHigher(t *testing.T, err error, held, offered uint64) {
	t.Helper()
	if !errors.Is(err, postgres.ErrHigherToken) {
		t.Fatalf("got %v, want ErrHigherToken", err)
	}
	var higher *postgres.HigherTokenError
	if !errors.As(err, &higher) {
		t.Fatalf("got %T, want *HigherTokenError in the chain", err)
	}
	want := &postgres.HigherTokenError{Group: group, Held: held, Offered: offered}
	if diff := cmp.Diff(want, higher); diff != "" {
		t.Errorf("HigherTokenError (-want +got):\n%s", diff)
	}
}

// TestFailover walks one primary and its standby through a failover. The
// subtests depend on each other and run in order.
func TestFailover(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	standby := pgharness.StartStandby(t, primary)
	east := &postgres.Client{Site: "east"}
	west := &postgres.Client{Site: "west"}

	if _, err := connect(t, primary.DSN("postgres")).Exec(testContext(t),
		"CREATE TABLE items (id int); INSERT INTO items VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	t.Run("promote on a primary records the first token", func(t *testing.T) {
		if err := east.Promote(testContext(t), primary.DSN("postgres"), group, 1); err != nil {
			t.Fatal(err)
		}
		want := postgres.NodeStatus{
			Groups: map[string]postgres.Record{group: {Token: 1, Role: postgres.RolePrimary, Site: "east"}},
		}
		if diff := cmp.Diff(want, status(t, primary.DSN("postgres")), ignoreTimes); diff != "" {
			t.Errorf("primary status (-want +got):\n%s", diff)
		}
	})

	t.Run("status of a streaming standby shows the replicated token", func(t *testing.T) {
		standby.CatchUp(t, primary)
		want := postgres.NodeStatus{
			InRecovery:     true,
			ReceiverStatus: "streaming",
			Streaming:      true,
			Groups:         map[string]postgres.Record{group: {Token: 1, Role: postgres.RolePrimary, Site: "east"}},
		}
		if diff := cmp.Diff(want, status(t, standby.DSN("postgres")), ignoreTimes); diff != "" {
			t.Errorf("standby status (-want +got):\n%s", diff)
		}
	})

	t.Run("unknown role is an authentication error", func(t *testing.T) {
		dsn := fmt.Sprintf("postgres://nobody@127.0.0.1:%d/postgres?sslmode=disable", primary.Port)
		_, err := postgres.Status(testContext(t), dsn)
		if !errors.Is(err, postgres.ErrAuth) {
			t.Errorf("got %v, want ErrAuth", err)
		}
	})

	t.Run("fence makes the old primary read-only and ends its sessions", func(t *testing.T) {
		ctx := testContext(t)
		// A client may override the read-only default in its own session;
		// only terminating the session stops it.
		held := connect(t, primary.DSN("postgres"))
		if _, err := held.Exec(ctx, "SET default_transaction_read_only = off; INSERT INTO items VALUES (2)"); err != nil {
			t.Fatalf("write before the fence: %v", err)
		}
		heldPID := held.PgConn().PID()
		walsenders := func() []int32 {
			rows, err := connect(t, primary.DSN("postgres")).Query(ctx, "SELECT pid FROM pg_stat_replication ORDER BY pid")
			if err != nil {
				t.Fatal(err)
			}
			pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
			if err != nil {
				t.Fatal(err)
			}
			return pids
		}
		walsendersBefore := walsenders()

		start := time.Now()
		if err := east.Fence(ctx, primary.DSN("postgres"), group, 2); err != nil {
			t.Fatal(err)
		}
		t.Logf("fence took %v", time.Since(start))

		var alive bool
		if err := connect(t, primary.DSN("postgres")).QueryRow(ctx,
			"SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", heldPID).Scan(&alive); err != nil {
			t.Fatal(err)
		}
		if alive {
			t.Errorf("session %d opened before the fence is still there", heldPID)
		}
		if _, err := held.Exec(ctx, "INSERT INTO items VALUES (3)"); err == nil {
			t.Error("a session opened before the fence can still write")
		}
		if diff := cmp.Diff(walsendersBefore, walsenders()); diff != "" {
			t.Errorf("walsenders changed by the fence (-before +after):\n%s", diff)
		}

		_, err := connect(t, primary.DSN("postgres")).Exec(ctx, "INSERT INTO items VALUES (4)")
		if diff := cmp.Diff("25006", sqlState(err)); diff != "" {
			t.Errorf("write on the fenced primary: got %v; SQLSTATE (-want +got):\n%s", err, diff)
		}

		want := postgres.NodeStatus{
			ReadOnly: true,
			Groups:   map[string]postgres.Record{group: {Token: 2, Role: postgres.RoleFenced, Site: "east"}},
		}
		if diff := cmp.Diff(want, status(t, primary.DSN("postgres")), ignoreTimes); diff != "" {
			t.Errorf("fenced primary status (-want +got):\n%s", diff)
		}
	})

	t.Run("fence repeated with the same token succeeds", func(t *testing.T) {
		if err := east.Fence(testContext(t), primary.DSN("postgres"), group, 2); err != nil {
			t.Fatal(err)
		}
		if st := status(t, primary.DSN("postgres")); !st.ReadOnly {
			t.Errorf("primary not read-only after the second fence: %+v", st)
		}
	})

	t.Run("fence with a lower token is refused", func(t *testing.T) {
		wantHigher(t, east.Fence(testContext(t), primary.DSN("postgres"), group, 1), 2, 1)
	})

	t.Run("fence of a standby records the token in the node's own store", func(t *testing.T) {
		standby.CatchUp(t, primary)
		if err := west.Fence(testContext(t), standby.DSN("postgres"), group, 2); err != nil {
			t.Fatal(err)
		}
		want := postgres.NodeStatus{
			InRecovery:     true,
			ReadOnly:       true,
			ReceiverStatus: "streaming",
			Streaming:      true,
			// Replicated from the fenced primary, not written here.
			Groups: map[string]postgres.Record{group: {Token: 2, Role: postgres.RoleFenced, Site: "east"}},
			// Written here, and not replicated.
			Node: map[string]postgres.Record{group: {Token: 2, Role: postgres.RoleFenced}},
		}
		if diff := cmp.Diff(want, status(t, standby.DSN("postgres")), ignoreTimes); diff != "" {
			t.Errorf("fenced standby status (-want +got):\n%s", diff)
		}
	})

	t.Run("promote turns the standby into a writable primary", func(t *testing.T) {
		ctx := testContext(t)
		start := time.Now()
		if err := west.Promote(ctx, standby.DSN("postgres"), group, 2); err != nil {
			t.Fatal(err)
		}
		t.Logf("promote took %v", time.Since(start))
		want := postgres.NodeStatus{
			Groups: map[string]postgres.Record{group: {Token: 2, Role: postgres.RolePrimary, Site: "west"}},
			Node:   map[string]postgres.Record{group: {Token: 2, Role: postgres.RoleFenced}},
		}
		if diff := cmp.Diff(want, status(t, standby.DSN("postgres")), ignoreTimes); diff != "" {
			t.Errorf("promoted standby status (-want +got):\n%s", diff)
		}
		if _, err := connect(t, standby.DSN("postgres")).Exec(ctx, "INSERT INTO items VALUES (5)"); err != nil {
			t.Errorf("write on the promoted standby: %v", err)
		}
	})

	t.Run("promote repeated with the same token does nothing", func(t *testing.T) {
		before := status(t, standby.DSN("postgres")).Groups[group]
		if err := west.Promote(testContext(t), standby.DSN("postgres"), group, 2); err != nil {
			t.Fatal(err)
		}
		after := status(t, standby.DSN("postgres")).Groups[group]
		if diff := cmp.Diff(before, after); diff != "" {
			t.Errorf("token record changed by a repeated promote (-before +after):\n%s", diff)
		}
	})

	t.Run("promote with a lower token is refused", func(t *testing.T) {
		wantHigher(t, west.Promote(testContext(t), standby.DSN("postgres"), group, 1), 2, 1)
	})

	t.Run("a stale promote cannot lift a fence", func(t *testing.T) {
		wantHigher(t, east.Promote(testContext(t), primary.DSN("postgres"), group, 1), 2, 1)
		if st := status(t, primary.DSN("postgres")); !st.ReadOnly {
			t.Errorf("fenced primary became writable: %+v", st)
		}
	})

	t.Run("promote with the token of a self-fence lifts the fence", func(t *testing.T) {
		ctx := testContext(t)
		if err := west.Fence(ctx, standby.DSN("postgres"), group, 2); err != nil {
			t.Fatal(err)
		}
		_, err := connect(t, standby.DSN("postgres")).Exec(ctx, "INSERT INTO items VALUES (6)")
		if diff := cmp.Diff("25006", sqlState(err)); diff != "" {
			t.Fatalf("write after the self-fence: got %v; SQLSTATE (-want +got):\n%s", err, diff)
		}
		if err := west.Promote(ctx, standby.DSN("postgres"), group, 2); err != nil {
			t.Fatal(err)
		}
		if _, err := connect(t, standby.DSN("postgres")).Exec(ctx, "INSERT INTO items VALUES (7)"); err != nil {
			t.Errorf("write after the fence was lifted: %v", err)
		}
		want := postgres.Record{Token: 2, Role: postgres.RolePrimary, Site: "west"}
		if diff := cmp.Diff(want, status(t, standby.DSN("postgres")).Groups[group], ignoreTimes); diff != "" {
			t.Errorf("token record (-want +got):\n%s", diff)
		}
	})

	t.Run("an action waits for another on the same group and times out", func(t *testing.T) {
		ctx := testContext(t)
		other := connect(t, standby.DSN("postgres"))
		if _, err := other.Exec(ctx, "SELECT pg_advisory_lock($1, hashtext($2))", int32(0x57544e53), group); err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		err := west.Fence(short, standby.DSN("postgres"), group, 2)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want context.DeadlineExceeded", err)
		}
		if st := status(t, standby.DSN("postgres")); st.ReadOnly {
			t.Errorf("fence went ahead while another action held the group: %+v", st)
		}
		if _, err := other.Exec(ctx, "SELECT pg_advisory_unlock($1, hashtext($2))", int32(0x57544e53), group); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a higher token is recorded on a primary", func(t *testing.T) {
		if err := west.Promote(testContext(t), standby.DSN("postgres"), group, 7); err != nil {
			t.Fatal(err)
		}
		if got, _ := status(t, standby.DSN("postgres")).Token(group); got != 7 {
			t.Errorf("token = %d, want 7", got)
		}
	})
}

// TestPromoteAfterPrimaryCrash is the unplanned failover: the primary is
// gone, the standby has never seen a token table.
func TestPromoteAfterPrimaryCrash(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	standby := pgharness.StartStandby(t, primary)
	west := &postgres.Client{Site: "west"}
	ctx := testContext(t)
	if _, err := connect(t, primary.DSN("postgres")).Exec(ctx, "CREATE TABLE items (id int)"); err != nil {
		t.Fatal(err)
	}
	standby.CatchUp(t, primary)
	if got := status(t, standby.DSN("postgres")).Groups; len(got) != 0 {
		t.Fatalf("standby records tokens before any action: %v", got)
	}

	primary.Kill(t)

	t.Run("fence of the dead primary reports it unreachable", func(t *testing.T) {
		err := west.Fence(testContext(t), primary.DSN("postgres"), group, 5)
		if !errors.Is(err, postgres.ErrUnreachable) {
			t.Errorf("got %v, want ErrUnreachable", err)
		}
	})

	t.Run("promote creates the token table on the new primary", func(t *testing.T) {
		if err := west.Promote(testContext(t), standby.DSN("postgres"), group, 5); err != nil {
			t.Fatal(err)
		}
		want := postgres.NodeStatus{
			Groups: map[string]postgres.Record{group: {Token: 5, Role: postgres.RolePrimary, Site: "west"}},
		}
		if diff := cmp.Diff(want, status(t, standby.DSN("postgres")), ignoreTimes); diff != "" {
			t.Errorf("promoted standby status (-want +got):\n%s", diff)
		}
		if _, err := connect(t, standby.DSN("postgres")).Exec(testContext(t), "INSERT INTO items VALUES (1)"); err != nil {
			t.Errorf("write on the promoted standby: %v", err)
		}
	})
}

func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestConnectionErrors(t *testing.T) {
	actions := []struct {
		name string
		run  func(ctx context.Context, dsn string) error
	}{
		{"promote", func(ctx context.Context, dsn string) error { return postgres.Promote(ctx, dsn, group, 1) }},
		{"fence", func(ctx context.Context, dsn string) error { return postgres.Fence(ctx, dsn, group, 1) }},
		{"status", func(ctx context.Context, dsn string) error { _, err := postgres.Status(ctx, dsn); return err }},
	}
	tests := []struct {
		name    string
		addr    string
		timeout time.Duration
		want    []error
	}{
		{"refused", closedPort(t), 5 * time.Second, []error{postgres.ErrUnreachable}},
		{"no answer", clustertest.NewSilent(t).Addr(), 300 * time.Millisecond, []error{postgres.ErrUnreachable, context.DeadlineExceeded}},
	}
	for _, tt := range tests {
		for _, a := range actions {
			t.Run(tt.name+"/"+a.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
				defer cancel()
				start := time.Now()
				err := a.run(ctx, "postgres://postgres@"+tt.addr+"/postgres?sslmode=disable")
				elapsed := time.Since(start)
				for _, want := range tt.want {
					if !errors.Is(err, want) {
						t.Errorf("got %v, want it to match %v", err, want)
					}
				}
				if limit := tt.timeout + 2*time.Second; elapsed > limit {
					t.Errorf("returned after %v, want within %v", elapsed, limit)
				}
			})
		}
	}
}

func TestConnectTimeoutWithoutDeadline(t *testing.T) {
	c := &postgres.Client{ConnectTimeout: 200 * time.Millisecond}
	start := time.Now()
	_, err := c.Status(context.Background(), "postgres://postgres@"+clustertest.NewSilent(t).Addr()+"/postgres?sslmode=disable")
	if !errors.Is(err, postgres.ErrUnreachable) {
		t.Errorf("got %v, want ErrUnreachable", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("returned after %v, want about 200ms", elapsed)
	}
}

func TestInvalidArguments(t *testing.T) {
	// Nothing listens there: invalid arguments are refused before any
	// connection is tried.
	dsn := "postgres://postgres@" + closedPort(t) + "/postgres?sslmode=disable"
	tests := []struct {
		name  string
		group string
		token uint64
	}{
		{"empty group", "", 1},
		{"token above bigint", group, math.MaxInt64 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			for name, err := range map[string]error{
				"promote": postgres.Promote(ctx, dsn, tt.group, tt.token),
				"fence":   postgres.Fence(ctx, dsn, tt.group, tt.token),
			} {
				if !errors.Is(err, postgres.ErrInvalid) || errors.Is(err, postgres.ErrUnreachable) {
					t.Errorf("%s: got %v, want ErrInvalid only", name, err)
				}
			}
		})
	}
}

// TestPromoteTakesNoWriteBeforeItsToken hammers a standby with writes
// stamped with the token it holds, as an application that reads the token
// would, while it is promoted: no write may be accepted under the old
// token, because the node only becomes writable once the new one is
// recorded.
func TestPromoteTakesNoWriteBeforeItsToken(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	east := &postgres.Client{Site: "east"}
	if err := east.Promote(testContext(t), primary.DSN("postgres"), group, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, primary.DSN("postgres")).Exec(testContext(t),
		"CREATE TABLE stamped (token bigint NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	standby := pgharness.StartStandby(t, primary)
	standby.CatchUp(t, primary)

	ctx, cancel := context.WithCancel(testContext(t))
	writer := connect(t, standby.DSN("postgres"))
	done := make(chan int)
	go func() {
		accepted := 0
		for ctx.Err() == nil {
			_, err := writer.Exec(ctx, `INSERT INTO stamped
				SELECT token FROM witness.fence WHERE group_name = 'app'`)
			if err == nil {
				accepted++
			}
		}
		done <- accepted
	}()
	time.Sleep(100 * time.Millisecond) // the writer is refused a while
	west := &postgres.Client{Site: "west"}
	if err := west.Promote(testContext(t), standby.DSN("postgres"), group, 2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // and then accepted a while
	cancel()
	if accepted := <-done; accepted == 0 {
		t.Fatal("the promoted node took no write at all")
	}
	var old, all int
	if err := connect(t, standby.DSN("postgres")).QueryRow(testContext(t),
		"SELECT count(*) FILTER (WHERE token < 2), count(*) FROM stamped").Scan(&old, &all); err != nil {
		t.Fatal(err)
	}
	if old != 0 {
		t.Errorf("the promoted node accepted %d of %d writes stamped with the old token", old, all)
	}
}

func TestMaxConnectTimeoutCapsTheDSN(t *testing.T) {
	c := &postgres.Client{MaxConnectTimeout: 200 * time.Millisecond}
	start := time.Now()
	_, err := c.Status(context.Background(), "postgres://postgres@"+clustertest.NewSilent(t).Addr()+"/postgres?sslmode=disable&connect_timeout=60")
	if !errors.Is(err, postgres.ErrUnreachable) {
		t.Errorf("got %v, want ErrUnreachable", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("returned after %v: the DSN's 60 s connect_timeout was not capped at 200ms", elapsed)
	}
}
