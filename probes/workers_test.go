package probes

import (
	"fmt"
	"runtime"
	"testing"
	"testing/synctest"
	"time"
)

// TestSchedulerChecksOnFixedWorkers: many targets whose checks are due
// faster than MaxConcurrent of them can run are checked by that many
// goroutines, not by a goroutine each waiting for a turn; and each
// target still gets checked.
func TestSchedulerChecksOnFixedWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const targets, workers = 1000, 4
		log := newCheckLog()
		s := NewScheduler(Config{Logger: testLogger(t), MaxConcurrent: workers})
		var ts []Target
		for i := range targets {
			ts = append(ts, Target{Group: fmt.Sprintf("g%04d", i), Site: "east", Spec: timing(time.Second, 900*time.Millisecond),
				Checker: &fakeChecker{name: fmt.Sprint(i), log: log, hold: 5 * time.Millisecond, ok: true}})
		}
		if err := s.SetTargets(ts); err != nil {
			t.Fatal(err)
		}
		before := runtime.NumGoroutine()
		stop := start(t, s)
		most := 0
		for range 40 {
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
			most = max(most, runtime.NumGoroutine()-before)
		}
		stop()
		// Run itself, its timer and the workers; no observation callback.
		if most > workers+3 {
			t.Errorf("up to %d goroutines while checks were due, want the %d workers and Run", most, workers)
		}
		if checked := len(log.startsByName()); checked < targets/2 {
			t.Errorf("%d of %d targets checked in 4s", checked, targets)
		}
		if log.maxRunning > workers {
			t.Errorf("%d checks at once, want at most %d", log.maxRunning, workers)
		}
	})
}
