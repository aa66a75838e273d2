package postgres_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/integration/pgharness"
)

// postmasterPID reads the running postmaster's pid of srv.
func postmasterPID(t *testing.T, srv *pgharness.Server) int {
	t.Helper()
	pid, err := pgharness.PostmasterPID(srv.DataDir)
	if err != nil || pid == 0 {
		t.Fatalf("postmaster.pid of %s: pid %d, %v", srv.Name, pid, err)
	}
	return pid
}

// backendPIDs lists the pids of every process of srv that pg_stat_activity
// knows, walsenders and background workers included.
func backendPIDs(t *testing.T, srv *pgharness.Server) []int {
	t.Helper()
	rows, err := connect(t, srv.DSN("postgres")).Query(testContext(t), "SELECT pid FROM pg_stat_activity")
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// wantStopped checks what a finished demotion promises: the postmaster
// and the given backends are gone, the DSN refuses connections, and
// standby.signal is in place, owned by the data directory's owner.
func wantStopped(t *testing.T, srv *pgharness.Server, postmaster int, backends []int) {
	t.Helper()
	if pgharness.Alive(postmaster) {
		t.Errorf("postmaster %d still running", postmaster)
	}
	for _, pid := range backends {
		if pgharness.Alive(pid) {
			t.Errorf("backend %d still running", pid)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, srv.DSN("postgres")); err == nil {
		conn.Close(ctx)
		t.Error("the demoted node accepts connections")
	}
	dir, err := os.Stat(srv.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := os.Stat(filepath.Join(srv.DataDir, "standby.signal"))
	if err != nil {
		t.Fatalf("standby.signal: %v", err)
	}
	owner := func(fi os.FileInfo) [2]uint32 {
		st := fi.Sys().(*syscall.Stat_t)
		return [2]uint32{st.Uid, st.Gid}
	}
	if diff := cmp.Diff(owner(dir), owner(sig)); diff != "" {
		t.Errorf("standby.signal owner, uid and gid (-data directory +file):\n%s", diff)
	}
}

func inRecovery(t *testing.T, srv *pgharness.Server) bool {
	t.Helper()
	var in bool
	if err := connect(t, srv.DSN("postgres")).QueryRow(testContext(t), "SELECT pg_is_in_recovery()").Scan(&in); err != nil {
		t.Fatal(err)
	}
	return in
}

// TestDemoter demotes a throwaway primary and starts it again, through
// pg_ctl and through a configured command. The subtests depend on each
// other and run in order.
func TestDemoter(t *testing.T) {
	srv := pgharness.StartPrimary(t)
	srv.HandOver(t)
	dsn := srv.DSN("postgres")
	pgCtl := filepath.Join(pgharness.BinDir(t), "pg_ctl")
	d := &postgres.Demoter{DataDir: srv.DataDir, PgCtl: pgCtl, Timeout: 20 * time.Second}
	if _, err := connect(t, dsn).Exec(testContext(t), "CREATE TABLE items (id int)"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(srv.DataDir, "log", "witness-start.log"))
			t.Logf("pg_ctl start log:\n%s", log)
		}
	}()

	t.Run("immediate demotion stops a primary and leaves standby.signal", func(t *testing.T) {
		held := connect(t, dsn)
		pid, backends := postmasterPID(t, srv), backendPIDs(t, srv)
		start := time.Now()
		if err := d.Demote(testContext(t), dsn, postgres.StopImmediate); err != nil {
			t.Fatal(err)
		}
		t.Logf("immediate demotion took %v", time.Since(start))
		wantStopped(t, srv, pid, backends)
		if _, err := held.Exec(testContext(t), "SELECT 1"); err == nil {
			t.Error("a session of the demoted node still answers")
		}
	})

	t.Run("demoting a stopped node succeeds", func(t *testing.T) {
		if err := d.Demote(testContext(t), dsn, postgres.StopImmediate); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("start as standby comes up in recovery and takes no write", func(t *testing.T) {
		if err := d.StartAsStandby(testContext(t), dsn); err != nil {
			t.Fatal(err)
		}
		if !inRecovery(t, srv) {
			t.Fatal("started as standby but not in recovery")
		}
		// A hot standby refuses a read-write transaction (0A000) and a
		// write (25006), whatever the client asks for.
		for _, stmts := range [][]string{
			{"BEGIN READ WRITE", "INSERT INTO items VALUES (1)", "COMMIT"},
			{"SET default_transaction_read_only = off", "INSERT INTO items VALUES (1)"},
		} {
			err := write(testContext(t), dsn, stmts)
			if code := sqlState(err); code != "0A000" && code != "25006" {
				t.Errorf("%v on the standby: got %v, want SQLSTATE 0A000 or 25006", stmts, err)
			}
		}
	})

	t.Run("a running standby with standby.signal is one that stays", func(t *testing.T) {
		if ok, err := d.StandbyRunning(testContext(t), dsn); err != nil || !ok {
			t.Errorf("StandbyRunning = %v, %v; want true", ok, err)
		}
	})

	t.Run("a running standby without standby.signal is not one that stays", func(t *testing.T) {
		// It would come back a primary from its next restart: the
		// self-fence must stop it, not only stamp it.
		sig := filepath.Join(srv.DataDir, "standby.signal")
		if err := os.Rename(sig, sig+".away"); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := os.Rename(sig+".away", sig); err != nil {
				t.Fatal(err)
			}
		}()
		if ok, err := d.StandbyRunning(testContext(t), dsn); err != nil || ok {
			t.Errorf("StandbyRunning = %v, %v; want false", ok, err)
		}
	})

	t.Run("start as standby of a running standby succeeds", func(t *testing.T) {
		if err := d.StartAsStandby(testContext(t), dsn); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("start as primary of a running standby is refused", func(t *testing.T) {
		if err := d.StartAsPrimary(testContext(t), dsn); !errors.Is(err, postgres.ErrNotPrimary) {
			t.Errorf("got %v, want ErrNotPrimary", err)
		}
	})

	t.Run("fast demotion stops a standby", func(t *testing.T) {
		pid, backends := postmasterPID(t, srv), backendPIDs(t, srv)
		if err := d.Demote(testContext(t), dsn, postgres.StopFast); err != nil {
			t.Fatal(err)
		}
		wantStopped(t, srv, pid, backends)
	})

	t.Run("a standby stopped in recovery is not started as a primary", func(t *testing.T) {
		if stopped, err := d.StoppedPrimary(testContext(t)); err != nil || stopped {
			t.Errorf("StoppedPrimary of a stopped standby = %v, %v; want false", stopped, err)
		}
		if stopped, err := d.StoppedStandby(testContext(t)); err != nil || !stopped {
			t.Errorf("StoppedStandby of a stopped standby = %v, %v; want true", stopped, err)
		}
		// Without standby.signal it would come up promoted.
		if err := d.StartAsPrimary(testContext(t), dsn); !errors.Is(err, postgres.ErrNotPrimary) {
			t.Errorf("start as primary of a standby stopped in recovery: %v, want ErrNotPrimary", err)
		}
		if _, err := os.Stat(filepath.Join(srv.DataDir, "standby.signal")); err != nil {
			t.Errorf("standby.signal after a refused start as primary: %v", err)
		}
		if pid, err := os.ReadFile(filepath.Join(srv.DataDir, "postmaster.pid")); err == nil {
			t.Errorf("a postmaster runs after a refused start as primary: %s", pid)
		}
	})

	t.Run("a demoted primary is a stopped primary", func(t *testing.T) {
		if err := d.StartAsStandby(testContext(t), dsn); err != nil {
			t.Fatal(err)
		}
		if err := write(testContext(t), dsn, []string{"SELECT pg_promote(true, 30)"}); err != nil {
			t.Fatal(err)
		}
		if inRecovery(t, srv) {
			t.Fatal("still in recovery after pg_promote")
		}
		if err := d.Demote(testContext(t), dsn, postgres.StopFast); err != nil {
			t.Fatal(err)
		}
		if stopped, err := d.StoppedPrimary(testContext(t)); err != nil || !stopped {
			t.Errorf("StoppedPrimary of a demoted primary = %v, %v; want true", stopped, err)
		}
		if stopped, err := d.StoppedStandby(testContext(t)); err != nil || stopped {
			t.Errorf("StoppedStandby of a demoted primary = %v, %v; want false", stopped, err)
		}
	})

	t.Run("start as primary removes standby.signal and takes writes", func(t *testing.T) {
		if err := d.StartAsPrimary(testContext(t), dsn); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(srv.DataDir, "standby.signal")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("standby.signal after start as primary: %v", err)
		}
		if err := write(testContext(t), dsn, []string{"INSERT INTO items VALUES (2)"}); err != nil {
			t.Errorf("write on the primary: %v", err)
		}
	})

	t.Run("a running primary is no standby", func(t *testing.T) {
		if ok, err := d.StandbyRunning(testContext(t), dsn); err != nil || ok {
			t.Errorf("StandbyRunning of a primary = %v, %v; want false", ok, err)
		}
	})

	t.Run("start as standby of a running primary is refused", func(t *testing.T) {
		if err := d.StartAsStandby(testContext(t), dsn); !errors.Is(err, postgres.ErrNotStandby) {
			t.Errorf("got %v, want ErrNotStandby", err)
		}
	})

	t.Run("a stop command that does not stop the server is escalated to SIGKILL", func(t *testing.T) {
		// A session in a long statement, as a busy backend would be.
		busy, err := pgx.Connect(testContext(t), dsn)
		if err != nil {
			t.Fatal(err)
		}
		busyDone := make(chan error)
		go func() {
			_, err := busy.Exec(context.Background(), "SELECT pg_sleep(60)")
			busyDone <- err
		}()
		defer busy.Close(context.Background())
		if err := waitRows(t, dsn, "SELECT count(*) > 0 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'"); err != nil {
			t.Fatal(err)
		}
		pid, backends := postmasterPID(t, srv), backendPIDs(t, srv)
		stuck := &postgres.Demoter{DataDir: srv.DataDir, Command: []string{"/bin/true"}, Timeout: time.Second}
		start := time.Now()
		if err := stuck.Demote(testContext(t), dsn, postgres.StopImmediate); err != nil {
			t.Fatal(err)
		}
		elapsed := time.Since(start)
		t.Logf("escalated demotion took %v", elapsed)
		if elapsed < time.Second {
			t.Errorf("demotion took %v: the postmaster went before the time limit, nothing was escalated", elapsed)
		}
		wantStopped(t, srv, pid, backends)
		if err := <-busyDone; err == nil {
			t.Error("a statement of the killed server finished")
		}
	})

	t.Run("a node killed by a demotion starts as standby", func(t *testing.T) {
		if err := d.StartAsStandby(testContext(t), dsn); err != nil {
			t.Fatal(err)
		}
		if !inRecovery(t, srv) {
			t.Error("not in recovery")
		}
	})

	t.Run("a configured stop command gets the data directory and the mode", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "mode")
		cmdD := &postgres.Demoter{DataDir: srv.DataDir, Timeout: 20 * time.Second, Command: []string{"/bin/sh", "-c",
			`printf %s "$WITNESS_STOP_MODE" > "$0" && kill -INT "$(head -n 1 "$WITNESS_DATA_DIR/postmaster.pid")"`, out}}
		pid, backends := postmasterPID(t, srv), backendPIDs(t, srv)
		start := time.Now()
		if err := cmdD.Demote(testContext(t), dsn, postgres.StopFast); err != nil {
			t.Fatal(err)
		}
		if elapsed := time.Since(start); elapsed > 10*time.Second {
			t.Errorf("demotion took %v: the command's stop was not seen", elapsed)
		}
		wantStopped(t, srv, pid, backends)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff("fast", string(got)); diff != "" {
			t.Errorf("WITNESS_STOP_MODE (-want +got):\n%s", diff)
		}
	})
}

// TestDemoteChecksTheDSN: a demotion is done when the DSN refuses
// connections, not when a command returned.
func TestDemoteChecksTheDSN(t *testing.T) {
	srv := pgharness.StartPrimary(t)
	other := pgharness.StartPrimary(t)
	srv.HandOver(t)
	d := &postgres.Demoter{DataDir: srv.DataDir, PgCtl: filepath.Join(pgharness.BinDir(t), "pg_ctl")}
	err := d.Demote(testContext(t), other.DSN("postgres"), postgres.StopImmediate)
	if !errors.Is(err, postgres.ErrStillRunning) {
		t.Errorf("got %v, want ErrStillRunning", err)
	}
}

func TestDemoteInvalidArguments(t *testing.T) {
	dsn := "postgres://postgres@" + closedPort(t) + "/postgres?sslmode=disable"
	tests := []struct {
		name string
		d    postgres.Demoter
		mode postgres.StopMode
	}{
		{"no data directory", postgres.Demoter{}, postgres.StopFast},
		{"unknown mode", postgres.Demoter{DataDir: t.TempDir()}, "smart"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.d.Demote(testContext(t), dsn, tt.mode); !errors.Is(err, postgres.ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
		})
	}
}
