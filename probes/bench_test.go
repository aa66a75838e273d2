package probes

import (
	"fmt"
	"log/slog"
	"testing"
	"time"
)

func BenchmarkTrackerObserve(b *testing.B) {
	tr := NewTracker(3, 2, time.Time{})
	ok := Result{OK: true, Detail: "status 200"}
	fail := Result{Detail: "status 503"}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r := ok
		if i%4 == 0 {
			r = fail
		}
		tr.Observe(r, now, now)
	}
}

// BenchmarkSchedulerBookkeeping measures what the scheduler does around
// one check, without the check's I/O and without goroutines: take the due
// target off the queue, record its result, update its state and post its
// observation.
func BenchmarkSchedulerBookkeeping(b *testing.B) {
	for _, n := range []int{30, 300, 3000} {
		b.Run(fmt.Sprintf("targets=%d", n), func(b *testing.B) {
			s := NewScheduler(Config{
				Logger:        slog.New(slog.DiscardHandler),
				OnObservation: func(Observation) {},
			})
			targets := make([]Target, n)
			for i := range targets {
				targets[i] = Target{Group: fmt.Sprintf("g%d", i/3), Site: fmt.Sprintf("s%d", i%3),
					Spec: timing(time.Second, 500*time.Millisecond), Checker: CheckerFunc(nil)}
			}
			if err := s.SetTargets(targets); err != nil {
				b.Fatal(err)
			}
			step := time.Second / time.Duration(n)
			now := s.epoch
			results := []Result{{OK: true, Detail: "status 200"}, {Detail: "status 503"}}
			b.ReportAllocs()
			runs := 0
			for b.Loop() {
				now = now.Add(step)
				s.mu.Lock()
				due := s.takeDueLocked(now)
				s.mu.Unlock()
				for _, e := range due {
					s.finish(e, results[runs/7%2], now, now)
					runs++
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(runs, 1)), "ns/run")
		})
	}
}
