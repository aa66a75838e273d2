package postgres_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/integration/pgharness"
)

// forked makes the situation after an asynchronous failover: the standby
// is promoted (the new primary), then the old primary commits rows the
// new one never receives. The old primary is handed over, still running.
func forked(t *testing.T, lost int) (old, promoted *pgharness.Server) {
	t.Helper()
	ctx := testContext(t)
	old = pgharness.StartPrimary(t)
	promoted = pgharness.StartStandby(t, old)
	oc := connect(t, old.DSN("postgres"))
	if _, err := oc.Exec(ctx, "ALTER SYSTEM SET autovacuum = off"); err != nil {
		t.Fatal(err)
	}
	if _, err := oc.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	if _, err := oc.Exec(ctx, "CREATE TABLE rows (n int PRIMARY KEY); INSERT INTO rows SELECT generate_series(1, 10)"); err != nil {
		t.Fatal(err)
	}
	promoted.CatchUp(t, old)
	pc := connect(t, promoted.DSN("postgres"))
	if _, err := pc.Exec(ctx, "SELECT pg_promote(true, 60)"); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"); err != nil {
		t.Fatal(err)
	}
	for i := range lost {
		if _, err := oc.Exec(ctx, "INSERT INTO rows VALUES ($1)", 100+i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pc.Exec(ctx, "INSERT INTO rows VALUES (11)"); err != nil {
		t.Fatal(err)
	}
	old.HandOver(t)
	return old, promoted
}

func reinstater(t *testing.T, srv *pgharness.Server) *postgres.Reinstater {
	return &postgres.Reinstater{
		Demoter: postgres.Demoter{DataDir: srv.DataDir, PgCtl: filepath.Join(pgharness.BinDir(t), "pg_ctl")},
		BinDir:  pgharness.BinDir(t),
		SaveDir: filepath.Join(t.TempDir(), "saved"),
	}
}

func count(t *testing.T, dsn, query string) int {
	t.Helper()
	ctx := testContext(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// rewind reinstates old as the standby of promoted, for group app at
// token 7 with slot witness_east, and checks that it took every step of a
// rewind.
func rewind(ctx context.Context, t *testing.T, r *postgres.Reinstater, old, promoted *pgharness.Server) *postgres.ReinstateReport {
	t.Helper()
	rep, err := r.Reinstate(ctx, postgres.ReinstateRequest{
		Group: "app", Token: 7, LocalDSN: old.DSN("postgres"), SourceDSN: promoted.DSN("postgres"),
		Slot: "witness_east", ApplicationName: "east",
	})
	if err != nil {
		t.Fatalf("reinstate: %v (steps %+v)", err, rep)
	}
	if got, want := stepNames(rep), "check stop save rewind slot configure start stream"; got != want || rep.Method != "rewind" {
		t.Errorf("method %q, steps %q; want rewind, %q", rep.Method, got, want)
	}
	return rep
}

// stepNames are the names of the report's steps, in order.
func stepNames(rep *postgres.ReinstateReport) string {
	var names []string
	for _, s := range rep.Steps {
		names = append(names, s.Name)
	}
	return strings.Join(names, " ")
}

func TestReinstateRewindsOldPrimaryAfterSavingItsCommits(t *testing.T) {
	old, promoted := forked(t, 3)
	r := reinstater(t, old)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep := rewind(ctx, t, r, old, promoted)
	sa := rep.SetAside
	if sa == nil || sa.Transactions != 3 || sa.First.IsZero() || sa.Last.Before(sa.First) {
		t.Fatalf("set aside %+v, want 3 transactions with their times", sa)
	}
	// The saved copy holds the three lost commits.
	out, _ := exec.Command(filepath.Join(pgharness.BinDir(t), "pg_waldump"), "--path="+sa.Dir, "--start="+sa.Fork,
		"--timeline=1").CombinedOutput()
	if got := strings.Count(string(out), "desc: COMMIT "); got != 3 {
		t.Errorf("saved WAL holds %d commits, want 3:\n%s", got, out)
	}
	if _, err := os.Stat(filepath.Join(sa.Dir, "summary.txt")); err != nil {
		t.Error(err)
	}
	// The old primary now streams from the new one, and its rows are the
	// new primary's.
	if _, err := connect(t, promoted.DSN("postgres")).Exec(testContext(t), "INSERT INTO rows VALUES (12)"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for count(t, old.DSN("postgres"), "SELECT count(*) FROM rows WHERE n = 12") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("row committed on the new primary never reached the reinstated standby")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := count(t, old.DSN("postgres"), "SELECT count(*) FROM rows WHERE n >= 100"); n != 0 {
		t.Errorf("reinstated standby still has %d diverged rows", n)
	}
	if n := count(t, promoted.DSN("postgres"), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'witness_east' AND active"); n != 1 {
		t.Error("slot witness_east not active on the new primary")
	}
	// Again: already streaming, nothing done.
	rep, err := r.Reinstate(ctx, postgres.ReinstateRequest{
		Group: "app", Token: 7, LocalDSN: old.DSN("postgres"), SourceDSN: promoted.DSN("postgres"), Slot: "witness_east",
	})
	if err != nil || len(rep.Steps) != 1 || rep.Method != "" {
		t.Errorf("second reinstate: %v, %+v; want only the check", err, rep)
	}
}

func TestReinstateRefusesPrimaryWithHigherToken(t *testing.T) {
	old, promoted := forked(t, 1)
	ctx := testContext(t)
	if err := postgres.Promote(ctx, old.DSN("postgres"), "app", 9); err != nil {
		t.Fatal(err)
	}
	r := reinstater(t, old)
	_, err := r.Reinstate(ctx, postgres.ReinstateRequest{
		Group: "app", Token: 7, LocalDSN: old.DSN("postgres"), SourceDSN: promoted.DSN("postgres"),
	})
	var hte *postgres.HigherTokenError
	if !errors.As(err, &hte) || hte.Held != 9 {
		t.Fatalf("reinstate of a primary at token 9 with token 7: %v, want *HigherTokenError", err)
	}
	if inRecovery(t, old) {
		t.Error("the refused node was changed: it is in recovery")
	}
	if n := count(t, old.DSN("postgres"), "SELECT count(*) FROM rows WHERE n >= 100"); n != 1 {
		t.Errorf("the refused node lost its rows: %d left", n)
	}
}

func TestReinstateStopsWhenCommitsCannotBeSaved(t *testing.T) {
	old, promoted := forked(t, 2)
	r := reinstater(t, old)
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r.SaveDir = filepath.Join(blocker, "saved") // under a file: cannot be made
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := r.Reinstate(ctx, postgres.ReinstateRequest{
		Group: "app", Token: 7, LocalDSN: old.DSN("postgres"), SourceDSN: promoted.DSN("postgres"),
	})
	if !errors.Is(err, postgres.ErrNotSaved) {
		t.Fatalf("reinstate with an unwritable save directory: %v, want ErrNotSaved", err)
	}
	if last := rep.Steps[len(rep.Steps)-1].Name; last != "save" {
		t.Errorf("stopped after step %q, want save", last)
	}
	// Not rewound: started again, the old primary still has its commits.
	d := postgres.Demoter{DataDir: old.DataDir, PgCtl: filepath.Join(pgharness.BinDir(t), "pg_ctl")}
	if err := d.StartAsPrimary(ctx, old.DSN("postgres")); err != nil {
		t.Fatal(err)
	}
	if n := count(t, old.DSN("postgres"), "SELECT count(*) FROM rows WHERE n >= 100"); n != 2 {
		t.Errorf("old primary has %d of its 2 diverged rows after a refused reinstate", n)
	}
}

func TestRepointStandby(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	a := pgharness.StartStandby(t, primary)
	b := pgharness.StartStandby(t, primary)
	ctx := testContext(t)
	if _, err := connect(t, a.DSN("postgres")).Exec(ctx, "SELECT pg_promote(true, 60)"); err != nil {
		t.Fatal(err)
	}
	if err := postgres.RepointStandby(ctx, b.DSN("postgres"), a.DSN("postgres"), "west-2"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for count(t, a.DSN("postgres"), "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'west-2' AND state = 'streaming'") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("repointed standby not streaming from the new primary")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := postgres.RepointStandby(ctx, a.DSN("postgres"), primary.DSN("postgres"), "x"); !errors.Is(err, postgres.ErrNotStandby) {
		t.Errorf("repoint of a primary: %v, want ErrNotStandby", err)
	}
}

func TestCheckRewind(t *testing.T) {
	primary := pgharness.StartPrimary(t) // wal_log_hints on, superuser
	ctx := testContext(t)
	problems, err := postgres.CheckRewind(ctx, primary.DSN("postgres"))
	if err != nil || len(problems) != 0 {
		t.Fatalf("check of a rewindable node: %v, %v", problems, err)
	}
	if _, err := connect(t, primary.DSN("postgres")).Exec(ctx, "CREATE ROLE plain LOGIN"); err != nil {
		t.Fatal(err)
	}
	dsn := strings.Replace(primary.DSN("postgres"), "postgres@", "plain@", 1)
	problems, err = postgres.CheckRewind(ctx, dsn)
	if err != nil || len(problems) != 1 || !strings.Contains(problems[0], "REPLICATION") || !strings.Contains(problems[0], "pg_read_binary_file") {
		t.Fatalf("check as a plain role: %q, %v; want the missing grants", problems, err)
	}
}

// Without wal_log_hints (nor checksums) before the fork, pg_rewind cannot
// run: the check says so, the old data directory is kept whole and a
// fresh base backup makes the standby.
func TestReinstateFallsBackToBaseBackup(t *testing.T) {
	ctx := testContext(t)
	old := pgharness.StartPrimary(t)
	pgExecT(t, old, "ALTER SYSTEM SET wal_log_hints = off")
	old.Stop(t)
	old.Start(t)
	promoted := pgharness.StartStandby(t, old)
	problems, err := postgres.CheckRewind(ctx, old.DSN("postgres"))
	if err != nil || len(problems) != 1 || !strings.Contains(problems[0], "wal_log_hints") {
		t.Errorf("check of a node without wal_log_hints: %q, %v", problems, err)
	}
	pgExecT(t, old, "CREATE TABLE rows (n int)")
	promoted.CatchUp(t, old)
	pgExecT(t, promoted, "SELECT pg_promote(true, 60)")
	pgExecT(t, old, "INSERT INTO rows VALUES (100)")
	old.HandOver(t)
	r := reinstater(t, old)
	lctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := r.Reinstate(lctx, postgres.ReinstateRequest{
		Group: "app", Token: 7, LocalDSN: old.DSN("postgres"), SourceDSN: promoted.DSN("postgres"), Slot: "witness_east",
	})
	if err != nil {
		t.Fatalf("reinstate: %v (%+v)", err, rep)
	}
	if rep.Method != "basebackup" || !strings.Contains(rep.Steps[0].Detail, "wal_log_hints") {
		t.Errorf("method %q, check %q; want a base backup because of wal_log_hints", rep.Method, rep.Steps[0].Detail)
	}
	if n := count(t, old.DSN("postgres"), "SELECT count(*) FROM rows"); n != 0 {
		t.Errorf("base-backed standby has %d rows of the old timeline", n)
	}
	if _, err := os.Stat(filepath.Join(rep.MovedAside, "PG_VERSION")); err != nil {
		t.Errorf("old data directory not kept: %v", err)
	}
	if !inRecovery(t, old) {
		t.Error("reinstated node is not a standby")
	}
}

// An old primary that came back as a standby (prepare-start, or a leader's
// fence that found it so) holds commits past the fork on its old
// timeline: it is rewound at once, never repointed at the new primary,
// which it could not follow.
func TestReinstateRewindsAnOldPrimaryBackAsAStandby(t *testing.T) {
	old, promoted := forked(t, 2)
	r := reinstater(t, old)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := r.Demote(ctx, old.DSN("postgres"), postgres.StopFast); err != nil {
		t.Fatal(err)
	}
	if err := r.StartAsStandby(ctx, old.DSN("postgres")); err != nil {
		t.Fatal(err)
	}
	rep := rewind(ctx, t, r, old, promoted)
	if d := rep.Steps[0].Detail; !strings.Contains(d, "past the fork") || !strings.Contains(d, "not repointed") {
		t.Errorf("check says %q, want the standby past the fork named", d)
	}
	if sa := rep.SetAside; sa == nil || sa.Transactions != 2 {
		t.Errorf("set aside %+v, want the 2 commits past the fork", sa)
	}
}

func pgExecT(t *testing.T, srv *pgharness.Server, stmt string) {
	t.Helper()
	if _, err := connect(t, srv.DSN("postgres")).Exec(testContext(t), stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// A standby of the old primary is pointed at the new one; one that had
// received WAL past the fork (the old primary's shutdown checkpoint,
// written after the promotion) cannot follow it and is rewound instead.
func TestReinstateRepointsAStandby(t *testing.T) {
	for _, tt := range []struct {
		name        string
		stopFirst   bool // the old primary stops before the promotion
		wantMethod  string
		wantStepsTo string
	}{
		{"follows the new timeline", true, "repoint", "check repoint"},
		{"past the fork", false, "rewind", "check stop save rewind slot configure start stream"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			old := pgharness.StartPrimary(t)
			promoted := pgharness.StartStandby(t, old)
			other := pgharness.StartStandby(t, old)
			pgExecT(t, old, "CREATE TABLE rows (n int)")
			promoted.CatchUp(t, old)
			other.CatchUp(t, old)
			if tt.stopFirst {
				old.Stop(t)
			}
			pgExecT(t, promoted, "SELECT pg_promote(true, 60)")
			old.Stop(t)
			other.HandOver(t)
			r := reinstater(t, other)
			lctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			rep, err := r.Reinstate(lctx, postgres.ReinstateRequest{
				Group: "app", Token: 7, LocalDSN: other.DSN("postgres"), SourceDSN: promoted.DSN("postgres"), Slot: "witness_south", ApplicationName: "south",
			})
			if err != nil {
				t.Fatalf("reinstate: %v (%+v)", err, rep)
			}
			if got := stepNames(rep); rep.Method != tt.wantMethod || got != tt.wantStepsTo {
				t.Errorf("method %q, steps %q; want %q, %q", rep.Method, got, tt.wantMethod, tt.wantStepsTo)
			}
			pgExecT(t, promoted, "INSERT INTO rows VALUES (1)")
			deadline := time.Now().Add(30 * time.Second)
			for count(t, other.DSN("postgres"), "SELECT count(*) FROM rows") != 1 {
				if time.Now().After(deadline) {
					t.Fatal("reinstated standby does not replay the new primary's rows")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if n := count(t, promoted.DSN("postgres"), "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'south'"); n != 1 {
				t.Error("the new primary does not stream to south")
			}
		})
	}
}
