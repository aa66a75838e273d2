package postgres_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/integration/pgharness"
)

// After a fast stop, pg_controldata's latest checkpoint is past every
// commit the primary acknowledged, and the standby that streamed from it
// replays up to it: the position a switchover waits for.
func TestFinalPositionOfAFastStop(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	standby := pgharness.StartStandby(t, primary)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, primary.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE rows (n int); INSERT INTO rows SELECT generate_series(1, 10000)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	var c postgres.Client
	live, inRecovery, err := c.Position(ctx, primary.DSN("postgres"))
	if err != nil || inRecovery || live == 0 {
		t.Fatalf("primary Position() = %s, recovery %v, %v", postgres.FormatLSN(live), inRecovery, err)
	}

	d := &postgres.Demoter{DataDir: primary.DataDir, PgCtl: filepath.Join(pgharness.BinDir(t), "pg_ctl")}
	if _, err := d.FinalPosition(ctx); !errors.Is(err, postgres.ErrInvalid) {
		t.Fatalf("FinalPosition() of a running server: %v, want ErrInvalid (not shut down)", err)
	}
	primary.Stop(t)
	final, err := d.FinalPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if final < live {
		t.Fatalf("final position %s before the live one %s", postgres.FormatLSN(final), postgres.FormatLSN(live))
	}
	replayed, inRecovery, err := c.Position(ctx, standby.DSN("postgres"))
	for err == nil && replayed < final && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
		replayed, inRecovery, err = c.Position(ctx, standby.DSN("postgres"))
	}
	if err != nil || !inRecovery || replayed < final {
		t.Fatalf("standby replayed %s (recovery %v, %v), want at least %s", postgres.FormatLSN(replayed), inRecovery, err, postgres.FormatLSN(final))
	}
}

func TestParseLSN(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint64
		ok   bool
	}{{"0/3A000000", 0x3A000000, true}, {"1/A8", 0x1_0000_00A8, true}, {"3A000000", 0, false}, {"x/1", 0, false}} {
		got, err := postgres.ParseLSN(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseLSN(%q) = %#x, %v", tt.in, got, err)
		}
		if tt.ok && postgres.FormatLSN(got) != tt.in {
			t.Errorf("FormatLSN(%#x) = %q, want %q", got, postgres.FormatLSN(got), tt.in)
		}
	}
}
