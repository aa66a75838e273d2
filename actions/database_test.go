package actions_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/integration/pgharness"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// A demotion (the leader's, through the witness at the site) of a
// database that runs as a standby that stays one (in recovery,
// standby.signal in place) records the token on it and leaves it
// running: it takes no write, and stopping it would fence nothing (it may
// be an old primary that came back as a standby, which reinstate rewinds
// running or not).
func TestDemoteStampsARunningStandbyAndLeavesItRunning(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	standby := pgharness.StartStandby(t, primary)
	dsn := standby.DSN("postgres")
	g := &witnessv1.Group{
		Spec: &witnessv1.GroupSpec{Name: "app", Actions: &witnessv1.Actions{Postgres: &witnessv1.PostgresAction{
			Dsn:     map[string]string{"east": dsn, "west": primary.DSN("postgres")},
			DataDir: map[string]string{"east": standby.DataDir},
			PgCtl:   filepath.Join(pgharness.BinDir(t), "pg_ctl"),
		}}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, mode := range []postgres.StopMode{postgres.StopImmediate, postgres.StopFast} {
		stopped, err := actions.LocalPostgres(g, "east").Demote(ctx, 7, mode)
		if err != nil {
			t.Fatalf("demote %s: %v", mode, err)
		}
		if stopped {
			t.Errorf("the %s demotion says it stopped the standby", mode)
		}
		st, err := postgres.Status(ctx, dsn)
		if err != nil {
			t.Fatalf("after the %s demotion the standby does not answer: %v", mode, err)
		}
		if !st.InRecovery {
			t.Errorf("after the %s demotion the node is out of recovery, want a standby", mode)
		}
		if token, _ := st.Token("app"); token != 7 {
			t.Errorf("after the %s demotion the standby holds token %d, want 7", mode, token)
		}
	}
}

// A demotion of a primary stops it, leaves it able to start only as a
// standby, and after a fast stop tells its final WAL position.
func TestDemoteStopsAPrimary(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	primary.HandOver(t)
	dsn := primary.DSN("postgres")
	g := &witnessv1.Group{Spec: &witnessv1.GroupSpec{Name: "app", Actions: &witnessv1.Actions{Postgres: &witnessv1.PostgresAction{
		Dsn:     map[string]string{"east": dsn},
		DataDir: map[string]string{"east": primary.DataDir},
		PgCtl:   filepath.Join(pgharness.BinDir(t), "pg_ctl"),
	}}}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := actions.LocalPostgres(g, "east")
	stopped, err := db.Demote(ctx, 7, postgres.StopFast)
	if err != nil || !stopped {
		t.Fatalf("demote a primary: stopped %v, %v; want stopped", stopped, err)
	}
	if _, err := postgres.Status(ctx, dsn); !errors.Is(err, postgres.ErrUnreachable) {
		t.Errorf("after the demotion: %v, want ErrUnreachable", err)
	}
	if demoted, err := db.StoppedPrimary(ctx); err != nil || !demoted {
		t.Errorf("a demoted primary: %v, %v", demoted, err)
	}
	if final, err := db.FinalPosition(ctx); err != nil || final == 0 {
		t.Errorf("final position after a fast stop: %d, %v", final, err)
	}
}
