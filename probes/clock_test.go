package probes

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// manualClock is a Clock that moves only when Advance is called.
type manualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
}

type manualTimer struct {
	c     *manualClock
	ch    chan time.Time
	when  time.Time
	armed bool
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &manualTimer{c: c, ch: make(chan time.Time, 1), when: c.now.Add(d), armed: true}
	c.timers = append(c.timers, t)
	return t
}

func (c *manualClock) NewTicker(time.Duration) Ticker { panic("the scheduler uses no tickers") }

// Advance moves the clock and fires the timers that are due.
func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if t.armed && !t.when.After(c.now) {
			t.armed = false
			select {
			case t.ch <- c.now:
			default:
			}
		}
	}
}

func (t *manualTimer) C() <-chan time.Time { return t.ch }

func (t *manualTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.armed
	t.armed = false
	select { // like time.Timer since Go 1.23: no stale tick after Stop
	case <-t.ch:
	default:
	}
	return was
}

func (t *manualTimer) Reset(d time.Duration) bool {
	was := t.Stop()
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.when = t.c.now.Add(d)
	t.armed = true
	return was
}

// TestSchedulerFollowsInjectedClock drives the schedule with a manual
// clock far from the real (or bubble) time: checks start only when the
// clock is advanced, and observations carry the clock's times.
func TestSchedulerFollowsInjectedClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Date(2031, 5, 1, 12, 0, 0, 0, time.UTC)
		clock := &manualClock{now: t0}
		log := newCheckLog()
		s := NewScheduler(Config{Clock: clock, Logger: testLogger(t)})
		err := s.SetTargets([]Target{
			{Group: "g", Site: "a", Spec: timing(time.Minute, time.Second), Checker: &fakeChecker{name: "a", log: log, ok: true}},
			{Group: "g", Site: "b", Spec: timing(time.Minute, time.Second), Checker: &fakeChecker{name: "b", log: log, ok: true}},
		})
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, s)
		defer stop()

		counts := func() map[string]int {
			out := map[string]int{}
			for k, v := range log.startsByName() {
				out[k] = len(v)
			}
			return out
		}
		steps := []struct {
			advance time.Duration
			want    map[string]int
		}{
			{0, map[string]int{"a": 1}},
			{29 * time.Second, map[string]int{"a": 1}},
			{time.Second, map[string]int{"a": 1, "b": 1}},
			{30 * time.Second, map[string]int{"a": 2, "b": 1}},
			{30 * time.Second, map[string]int{"a": 2, "b": 2}},
		}
		for i, st := range steps {
			clock.Advance(st.advance)
			synctest.Wait()
			if diff := cmp.Diff(st.want, counts()); diff != "" {
				t.Errorf("step %d: checks run (-want +got):\n%s", i, diff)
			}
		}
		want := []Observation{
			{Group: "g", Site: "a", State: StateHealthy, Since: t0, CheckedAt: t0.Add(time.Minute), OK: true, Detail: "fine"},
			{Group: "g", Site: "b", State: StateHealthy, Since: t0.Add(30 * time.Second), CheckedAt: t0.Add(90 * time.Second), OK: true, Detail: "fine"},
		}
		if diff := cmp.Diff(want, s.Snapshot()); diff != "" {
			t.Errorf("Snapshot() (-want +got):\n%s", diff)
		}
	})
}
