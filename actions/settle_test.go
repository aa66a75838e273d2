package actions_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/actionstest"
	"github.com/sitewitness/witness/clock"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// ttlRunner settles as Targets does with a DNS server that answers the
// new value at once: once the TTL has passed since the switch, on its
// clock. It notes when settling succeeded and how often it was asked.
type ttlRunner struct {
	*actionstest.Runner
	clock clock.Clock
	ttl   time.Duration

	mu        sync.Mutex
	asked     int
	settledAt time.Time
}

func (r *ttlRunner) Settled(ctx context.Context, g *witnessv1.Group, switched time.Time) error {
	r.mu.Lock()
	r.asked++
	now := r.clock.Now()
	r.mu.Unlock()
	if left := switched.Add(r.ttl).Sub(now); left > 0 {
		return fmt.Errorf("%s left: %w", left, actions.ErrNotSettled)
	}
	if err := r.Runner.Settled(ctx, g, switched); err != nil {
		return err
	}
	r.mu.Lock()
	r.settledAt = now
	r.mu.Unlock()
	return nil
}

func (r *ttlRunner) result() (time.Time, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.settledAt, r.asked
}

// The settle step finishes within one reconciler tick of the switch plus
// the TTL, at a group's creation and after a failover alike: the wait for
// the TTL is not a failure whose retries back off.
func TestSettleFinishesWithinATickOfTheTTL(t *testing.T) {
	for _, tc := range []struct {
		name string
		move func(t *testing.T, l *actionstest.Leader)
	}{
		{"creation", func(*testing.T, *actionstest.Leader) {}},
		{"failover", func(t *testing.T, l *actionstest.Leader) { failover(t, l, "west") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const tick, ttl = 500 * time.Millisecond, 5 * time.Second // the record's TTL in pgDNSGroup
				l, r := setup(t)
				tc.move(t, l)
				fake := clock.NewFake(time.Date(2031, 5, 1, 12, 0, 0, 0, time.UTC))
				sr := &ttlRunner{Runner: r, clock: fake, ttl: ttl}
				ctx, cancel := context.WithCancel(context.Background())
				rec := &actions.Reconciler{Leader: l, Runner: sr, Node: "n1", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Tick: tick, Clock: fake}
				done := make(chan struct{})
				go func() { rec.Run(ctx); close(done) }()
				defer func() { cancel(); <-done }()
				synctest.Wait()
				for i := range 600 { // 60 s
					if at, _ := sr.result(); !at.IsZero() {
						break
					}
					if i == 20 {
						// A failing site seen again cuts the backoff of
						// failed steps short; waiting for the TTL is none.
						if n := rec.RetryNow(); n != 0 {
							t.Errorf("RetryNow found %d steps waiting while only settle waits for the TTL, want 0", n)
						}
					}
					fake.Advance(100 * time.Millisecond)
					synctest.Wait()
				}
				g, _ := l.FSM.Group("app")
				var switched time.Time
				for _, s := range g.GetStatus().GetSteps() {
					if s.GetToken() == g.GetStatus().GetToken() && s.GetStep() == actions.StepDNS && s.GetOk() {
						switched = time.Unix(0, s.GetStartedUnixNano()).Add(time.Duration(s.GetDurationMs()) * time.Millisecond)
					}
				}
				at, asked := sr.result()
				if switched.IsZero() || at.IsZero() {
					t.Fatalf("not settled within 60s: switched %v, settled %v", switched, at)
				}
				if late := at.Sub(switched.Add(ttl)); late > tick {
					t.Errorf("settled %s after the switch, %s past the TTL; want within a tick (%s) of it (asked %d times)", at.Sub(switched), late, tick, asked)
				}
				// Once right after the switch, once the TTL has passed.
				if asked > 2 {
					t.Errorf("asked %d times whether DNS settled; want no polling before the TTL has passed", asked)
				}
				// A settled group leaves no wait behind (a leader of
				// 10,000 groups kept an empty one for each).
				if n := rec.RetryGroups(); n != 0 {
					t.Errorf("the reconciler holds retry waits of %d groups once every step succeeded, want none", n)
				}
			})
		})
	}
}
