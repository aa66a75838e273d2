package actions_test

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/clock"
)

// fakeRun is a reconciler running on a fake clock inside the calling
// test's synctest bubble: the test moves time itself, and synctest.Wait
// tells when the reconciler has done all it can until time moves on.
type fakeRun struct {
	t      *testing.T
	clock  *clock.Fake
	rec    *actions.Reconciler
	cancel context.CancelFunc
	done   chan struct{}
}

// startFake runs rec until stop, on its Clock if that is a *clock.Fake,
// else on a new one; zero fields get the values runUntil uses. Call it
// inside synctest.Test.
func startFake(t *testing.T, rec *actions.Reconciler) *fakeRun {
	t.Helper()
	f := &fakeRun{t: t, rec: rec, done: make(chan struct{})}
	if fc, ok := rec.Clock.(*clock.Fake); ok {
		f.clock = fc
	} else {
		f.clock = clock.NewFake(time.Date(2031, 5, 1, 12, 0, 0, 0, time.UTC))
		rec.Clock = f.clock
	}
	if rec.Node == "" {
		rec.Node = "n1"
	}
	if rec.Log == nil {
		rec.Log = slog.New(slog.DiscardHandler)
	}
	if rec.Tick == 0 {
		rec.Tick = 10 * time.Millisecond
	}
	if rec.MaxBackoff == 0 {
		rec.MaxBackoff = 20 * time.Millisecond
	}
	var ctx context.Context
	ctx, f.cancel = context.WithCancel(context.Background())
	go func() { rec.Run(ctx); close(f.done) }()
	synctest.Wait()
	return f
}

// advance moves the clock d on and waits until the reconciler is idle.
func (f *fakeRun) advance(d time.Duration) {
	f.clock.Advance(d)
	synctest.Wait()
}

// until moves the clock a tick at a time until cond holds, failing once
// limit has passed on the clock.
func (f *fakeRun) until(limit time.Duration, cond func() bool) {
	f.t.Helper()
	for waited := time.Duration(0); !cond(); waited += f.rec.Tick {
		if waited >= limit {
			f.t.Fatalf("condition not reached within %s on the clock", limit)
		}
		f.advance(f.rec.Tick)
	}
}

// stop ends the reconciler and waits for it.
func (f *fakeRun) stop() {
	f.cancel()
	<-f.done
}

// runOnFake runs a reconciler on a fake clock until cond holds, as
// runUntil does on real time. Call it inside synctest.Test.
func runOnFake(t *testing.T, l actions.Leader, r actions.Runner, cond func() bool) {
	t.Helper()
	f := startFake(t, &actions.Reconciler{Leader: l, Runner: r})
	defer f.stop()
	f.until(5*time.Second, cond)
}
