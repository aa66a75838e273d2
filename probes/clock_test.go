package probes

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/clock"
)

// TestSchedulerFollowsInjectedClock drives the schedule with a manual
// clock far from the real (or bubble) time: checks start only when the
// clock is advanced, and observations carry the clock's times.
func TestSchedulerFollowsInjectedClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Date(2031, 5, 1, 12, 0, 0, 0, time.UTC)
		fake := clock.NewFake(t0)
		log := newCheckLog()
		s := NewScheduler(Config{Clock: fake, Logger: testLogger(t)})
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
			fake.Advance(st.advance)
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
