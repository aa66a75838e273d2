package pgharness_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sitewitness/witness/integration/pgharness"
)

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec(t *testing.T, dsn, sql string) {
	t.Helper()
	conn := connect(t, dsn)
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s on %s: %v", sql, dsn, err)
	}
}

func values(t *testing.T, dsn string) []string {
	t.Helper()
	conn := connect(t, dsn)
	rows, err := conn.Query(context.Background(), "SELECT v FROM kv ORDER BY v")
	if err != nil {
		t.Fatalf("query kv on %s: %v", dsn, err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read kv on %s: %v", dsn, err)
	}
	return got
}

func TestPrimaryAndStandby(t *testing.T) {
	start := time.Now()
	primary := pgharness.StartPrimary(t)
	primaryUp := time.Since(start)
	standby := pgharness.StartStandby(t, primary)
	t.Logf("primary up in %v, streaming standby in %v more", primaryUp, time.Since(start)-primaryUp)

	t.Run("servers listen on loopback with their own directories", func(t *testing.T) {
		for _, s := range []*pgharness.Server{primary, standby} {
			if s.Host != "127.0.0.1" {
				t.Errorf("%s: Host = %q, want 127.0.0.1", s.Name, s.Host)
			}
			want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/app?sslmode=disable", s.Port)
			if diff := cmp.Diff(want, s.DSN("app")); diff != "" {
				t.Errorf("%s: DSN (-want +got):\n%s", s.Name, diff)
			}
			if _, err := os.Stat(s.DataDir + "/PG_VERSION"); err != nil {
				t.Errorf("%s: data directory: %v", s.Name, err)
			}
		}
		if primary.Port == standby.Port || primary.DataDir == standby.DataDir || primary.SocketDir == standby.SocketDir {
			t.Errorf("primary and standby share a port or directory: %+v %+v", primary, standby)
		}
	})

	t.Run("primary is replication capable", func(t *testing.T) {
		conn := connect(t, primary.DSN("postgres"))
		var walLevel string
		var super, repl bool
		err := conn.QueryRow(context.Background(),
			`SELECT current_setting('wal_level'), rolsuper, rolreplication FROM pg_roles WHERE rolname = 'postgres'`).
			Scan(&walLevel, &super, &repl)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]any{"replica", true, true}, []any{walLevel, super, repl}); diff != "" {
			t.Errorf("wal_level, superuser, replication (-want +got):\n%s", diff)
		}
	})

	t.Run("standby streams writes from the primary", func(t *testing.T) {
		exec(t, primary.DSN("postgres"), "CREATE TABLE kv (v text); INSERT INTO kv VALUES ('a')")
		standby.CatchUp(t, primary)
		if diff := cmp.Diff([]string{"a"}, values(t, standby.DSN("postgres"))); diff != "" {
			t.Errorf("standby rows (-want +got):\n%s", diff)
		}
		conn := connect(t, standby.DSN("postgres"))
		var inRecovery bool
		if err := conn.QueryRow(context.Background(), "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
			t.Fatal(err)
		}
		if !inRecovery {
			t.Error("standby is not in recovery")
		}
		_, err := conn.Exec(context.Background(), "INSERT INTO kv VALUES ('x')")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
			t.Errorf("write on standby: got %v, want SQLSTATE 25006", err)
		}
	})

	t.Run("stop is idempotent and start brings data back", func(t *testing.T) {
		exec(t, primary.DSN("postgres"), "INSERT INTO kv VALUES ('b')")
		primary.Stop(t)
		primary.Stop(t)
		if primary.Running() {
			t.Fatal("primary still running after Stop")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, primary.DSN("postgres")); err == nil {
			conn.Close(ctx)
			t.Fatal("connected to a stopped primary")
		}
		primary.Start(t)
		if diff := cmp.Diff([]string{"a", "b"}, values(t, primary.DSN("postgres"))); diff != "" {
			t.Errorf("primary rows after restart (-want +got):\n%s", diff)
		}
		standby.WaitStreaming(t)
	})

	t.Run("kill crashes the server and committed data survives", func(t *testing.T) {
		held := connect(t, primary.DSN("postgres"))
		exec(t, primary.DSN("postgres"), "INSERT INTO kv VALUES ('c')")
		primary.Kill(t)
		if primary.Running() {
			t.Fatal("primary still running after Kill")
		}
		if _, err := held.Exec(context.Background(), "SELECT 1"); err == nil {
			t.Error("a session of the killed server still answers")
		}
		primary.Kill(t) // idempotent
		primary.Start(t)
		if !strings.Contains(primary.Logs(), "database system was interrupted") {
			t.Errorf("no crash recovery in the primary's log:\n%s", primary.Logs())
		}
		if diff := cmp.Diff([]string{"a", "b", "c"}, values(t, primary.DSN("postgres"))); diff != "" {
			t.Errorf("primary rows after crash (-want +got):\n%s", diff)
		}
		standby.WaitStreaming(t)
		standby.CatchUp(t, primary)
		if diff := cmp.Diff([]string{"a", "b", "c"}, values(t, standby.DSN("postgres"))); diff != "" {
			t.Errorf("standby rows after primary crash (-want +got):\n%s", diff)
		}
	})
}

func TestCleanupRemovesServer(t *testing.T) {
	var s *pgharness.Server
	t.Run("server", func(t *testing.T) {
		s = pgharness.StartPrimary(t)
	})
	if _, err := os.Stat(s.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory after cleanup: %v, want it removed", err)
	}
	if s.Running() {
		t.Error("server still running after cleanup")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, s.DSN("postgres")); err == nil {
		conn.Close(ctx)
		t.Error("server still accepts connections after cleanup")
	}
}
