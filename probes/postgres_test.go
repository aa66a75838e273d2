package probes

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/sitewitness/witness/integration/pgharness"
)

// dbVerdict is the part of a postgres Result that does not depend on
// timing.
type dbVerdict struct {
	OK        bool
	Role      string
	Streaming bool
	Detail    string
}

func pgSpec(dsn, role string) Spec {
	return Spec{Kind: KindPostgres, Interval: 10 * time.Second, Timeout: 5 * time.Second,
		Postgres: &PostgresSpec{DSN: dsn, Role: role}}
}

// exec runs sql on the server at dsn.
func execSQL(t *testing.T, dsn string, sql ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range sql {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// querySetting reads one setting of the server at dsn.
func querySetting(t *testing.T, dsn, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// checkUntil runs the probe until done accepts its result, for at most 60s.
func checkUntil(t *testing.T, spec Spec, done func(Result) bool) Result {
	t.Helper()
	p, err := New(spec)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		r := p.Check(context.Background())
		if done(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe never reached the wanted result; last %+v", r)
		}
		<-tick.C
	}
}

func TestPostgresProbe(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	standby := pgharness.StartStandby(t, primary)
	execSQL(t, primary.DSN("postgres"), "CREATE TABLE orders (id bigint PRIMARY KEY, note text)",
		"INSERT INTO orders SELECT g, 'x' FROM generate_series(1, 1000) g")
	standby.CatchUp(t, primary)

	t.Run("roles", func(t *testing.T) {
		tests := []struct {
			name      string
			dsn, role string
			want      dbVerdict
		}{
			{"primary", primary.DSN("postgres"), RolePrimary, dbVerdict{true, RolePrimary, true, ""}},
			{"standby", standby.DSN("postgres"), RoleStandby, dbVerdict{true, RoleStandby, true, ""}},
			{"any role", standby.DSN("postgres"), "", dbVerdict{true, RoleStandby, true, ""}},
			{"primary wanted standby", primary.DSN("postgres"), RoleStandby, dbVerdict{false, RolePrimary, true, "role primary, want standby"}},
			{"standby wanted primary", standby.DSN("postgres"), RolePrimary, dbVerdict{false, RoleStandby, true, "role standby, want primary"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := check(t, pgSpec(tt.dsn, tt.role))
				t.Logf("%+v", r)
				got := dbVerdict{r.OK, r.Role, r.Streaming, r.Detail}
				if r.OK {
					got.Detail = "" // healthy details carry lag figures
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("Check() (-want +got):\n%s", diff)
				}
				if r.LagBytes < 0 || r.LagSeconds < 0 {
					t.Errorf("Check() lag = %d bytes %.3fs, want both known (>= 0)", r.LagBytes, r.LagSeconds)
				}
			})
		}
	})

	t.Run("standby lag while replay is paused", func(t *testing.T) {
		execSQL(t, standby.DSN("postgres"), "SELECT pg_wal_replay_pause()")
		t.Cleanup(func() { execSQL(t, standby.DSN("postgres"), "SELECT pg_wal_replay_resume()") })
		execSQL(t, primary.DSN("postgres"), "INSERT INTO orders SELECT g, repeat('y', 200) FROM generate_series(1001, 11000) g")
		r := checkUntil(t, pgSpec(standby.DSN("postgres"), RoleStandby), func(r Result) bool { return r.LagBytes > 1<<20 })
		t.Logf("paused: %+v", r)
		if !r.OK || !r.Streaming || r.LagSeconds <= 0 {
			t.Errorf("Check() = %+v, want healthy, streaming, with a positive lag in seconds", r)
		}
		execSQL(t, standby.DSN("postgres"), "SELECT pg_wal_replay_resume()")
		r = checkUntil(t, pgSpec(standby.DSN("postgres"), RoleStandby), func(r Result) bool { return r.LagBytes == 0 })
		if r.LagSeconds != 0 {
			t.Errorf("Check() after catching up: lag %.3fs, want 0", r.LagSeconds)
		}
	})

	t.Run("positions", func(t *testing.T) {
		execSQL(t, primary.DSN("postgres"), "INSERT INTO orders SELECT g, 'p' FROM generate_series(20001, 20100) g")
		standby.CatchUp(t, primary)
		p := check(t, pgSpec(primary.DSN("postgres"), RolePrimary))
		s := checkUntil(t, pgSpec(standby.DSN("postgres"), RoleStandby), func(r Result) bool { return r.Replayed >= p.WAL })
		t.Logf("primary %+v\nstandby %+v", p, s)
		if p.WAL == 0 || p.Timeline != 1 {
			t.Errorf("primary position %s timeline %d, want known, timeline 1", FormatLSN(p.WAL), p.Timeline)
		}
		if s.WAL < s.Replayed || s.Timeline != 1 {
			t.Errorf("standby holds %s, replayed %s, timeline %d: want held >= replayed, timeline 1", FormatLSN(s.WAL), FormatLSN(s.Replayed), s.Timeline)
		}
		// A standby whose WAL receiver is stopped keeps the position it
		// received while the primary moves on: its lag reads 0, its
		// position tells the truth.
		conninfo := querySetting(t, standby.DSN("postgres"), "primary_conninfo")
		execSQL(t, standby.DSN("postgres"), "ALTER SYSTEM SET primary_conninfo = ''", "SELECT pg_reload_conf()")
		t.Cleanup(func() {
			execSQL(t, standby.DSN("postgres"), "ALTER SYSTEM SET primary_conninfo = '"+strings.ReplaceAll(conninfo, "'", "''")+"'", "SELECT pg_reload_conf()")
			standby.WaitStreaming(t)
		})
		stopped := checkUntil(t, pgSpec(standby.DSN("postgres"), RoleStandby), func(r Result) bool { return !r.Streaming })
		execSQL(t, primary.DSN("postgres"), "INSERT INTO orders SELECT g, repeat('z', 200) FROM generate_series(30001, 40000) g")
		p2 := check(t, pgSpec(primary.DSN("postgres"), RolePrimary))
		s2 := check(t, pgSpec(standby.DSN("postgres"), RoleStandby))
		t.Logf("after writes: primary %s, standby %+v", FormatLSN(p2.WAL), s2)
		if s2.LagBytes != 0 {
			t.Errorf("stopped standby lag = %d, want 0 (what this test shows the lag cannot tell)", s2.LagBytes)
		}
		if s2.WAL != stopped.WAL || p2.WAL < s2.WAL+1<<20 {
			t.Errorf("stopped standby holds %s (was %s), primary at %s: want it unchanged and over 1 MB behind",
				FormatLSN(s2.WAL), FormatLSN(stopped.WAL), FormatLSN(p2.WAL))
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		silent, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { silent.Close() })
		tests := []struct {
			name, dsn  string
			wantDetail string // prefix
		}{
			{"refused", "postgres://postgres@" + closedPort(t) + "/postgres?sslmode=disable&connect_timeout=0", "connect: "},
			{"silent", "postgres://postgres@" + silent.Addr().String() + "/postgres?sslmode=disable", "timeout after 500ms"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				spec := pgSpec(tt.dsn, RolePrimary)
				spec.Timeout = 500 * time.Millisecond
				r := check(t, spec)
				if r.OK || !strings.HasPrefix(r.Detail, tt.wantDetail) {
					t.Errorf("Check() = %v %q, want failing with %q", r.OK, r.Detail, tt.wantDetail)
				}
				if r.Latency > 2*time.Second {
					t.Errorf("Check() latency = %v, want the 500ms timeout to hold", r.Latency)
				}
			})
		}
	})

	t.Run("stopped primary", func(t *testing.T) {
		primary.Stop(t)
		r := checkUntil(t, pgSpec(standby.DSN("postgres"), RoleStandby), func(r Result) bool { return !r.Streaming })
		t.Logf("primary stopped: %+v", r)
		if diff := cmp.Diff(dbVerdict{true, RoleStandby, false, ""}, dbVerdict{r.OK, r.Role, r.Streaming, ""}); diff != "" {
			t.Errorf("standby Check() after the primary stopped (-want +got):\n%s", diff)
		}
		if r.LagBytes != 0 {
			t.Errorf("standby lag = %d bytes, want 0: everything received was replayed", r.LagBytes)
		}
		// The standby stays not streaming while its primary is away.
		if r := check(t, pgSpec(standby.DSN("postgres"), RoleStandby)); r.Streaming {
			t.Errorf("standby Check() = %+v, want not streaming", r)
		}
		if r := check(t, pgSpec(primary.DSN("postgres"), RolePrimary)); r.OK || !strings.HasPrefix(r.Detail, "connect: ") {
			t.Errorf("primary Check() after stop = %v %q, want failing to connect", r.OK, r.Detail)
		}
	})
}

func TestFormatLSN(t *testing.T) {
	for _, tt := range []struct {
		lsn  uint64
		want string
	}{{0, "unknown"}, {0x3A000000, "0/3A000000"}, {0x1_0000_00A8, "1/A8"}} {
		if got := FormatLSN(tt.lsn); got != tt.want {
			t.Errorf("FormatLSN(%#x) = %q, want %q", tt.lsn, got, tt.want)
		}
	}
}
