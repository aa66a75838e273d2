package probes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeChecker records when it was started and how many checks ran at
// once. It holds each check for hold (or until the context ends), and
// then returns ok. Its methods are safe for concurrent use.
type fakeChecker struct {
	name string
	log  *checkLog
	hold time.Duration // < 0: until the context ends
	ok   bool
}

func (f *fakeChecker) Check(ctx context.Context) Result {
	f.log.start(f.name)
	defer f.log.end()
	switch {
	case f.hold < 0:
		<-ctx.Done()
	case f.hold > 0:
		select {
		case <-time.After(f.hold):
		case <-ctx.Done():
		}
	}
	if f.ok {
		return Result{OK: true, Detail: "fine"}
	}
	return Result{Detail: "broken"}
}

// checkLog is shared by the fake checkers of one test.
type checkLog struct {
	t0 time.Time

	mu         sync.Mutex
	starts     map[string][]time.Duration // since t0
	running    int
	maxRunning int
}

func newCheckLog() *checkLog {
	return &checkLog{t0: time.Now(), starts: map[string][]time.Duration{}}
}

func (l *checkLog) start(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.starts[name] = append(l.starts[name], time.Since(l.t0))
	l.running++
	l.maxRunning = max(l.maxRunning, l.running)
}

func (l *checkLog) end() {
	l.mu.Lock()
	l.running--
	l.mu.Unlock()
}

func (l *checkLog) startsByName() map[string][]time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]time.Duration{}
	for k, v := range l.starts {
		out[k] = append([]time.Duration(nil), v...)
	}
	return out
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

func ms(ds ...int) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = time.Duration(d) * time.Millisecond
	}
	return out
}

// timing is a spec for fake checkers: only timing and thresholds count.
func timing(interval, timeout time.Duration) Spec {
	return Spec{Interval: interval, Timeout: timeout}
}

// start runs s until the returned stop is called; stop checks Run's error.
func start(t *testing.T, s *Scheduler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	}
}

func TestSchedulerSpreadsStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := newCheckLog()
		s := NewScheduler(Config{Logger: testLogger(t)})
		var targets []Target
		for _, site := range []string{"a", "b", "c", "d"} {
			targets = append(targets, Target{Group: "g", Site: site, Spec: timing(time.Second, 100*time.Millisecond),
				Checker: &fakeChecker{name: site, log: log, ok: true}})
		}
		if err := s.SetTargets(targets); err != nil {
			t.Fatal(err)
		}
		stop := start(t, s)
		time.Sleep(2400 * time.Millisecond)
		stop()

		want := map[string][]time.Duration{
			"a": ms(0, 1000, 2000),
			"b": ms(500, 1500),
			"c": ms(750, 1750),
			"d": ms(250, 1250, 2250),
		}
		if diff := cmp.Diff(want, log.startsByName()); diff != "" {
			t.Errorf("check starts (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(1, log.maxRunning); diff != "" {
			t.Errorf("most checks at once (-want +got):\n%s", diff)
		}
	})
}

func TestSchedulerBoundsConcurrency(t *testing.T) {
	// Six targets, each check holding 800ms of a 1s interval: spread over
	// the interval (phases 0, 1/8, 1/4, 1/2, 3/4, 7/8), all six overlap
	// unless the bound is lower.
	for _, tt := range []struct {
		bound, want int
	}{
		{2, 2},
		{16, 6},
	} {
		t.Run(fmt.Sprintf("bound %d", tt.bound), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				log := newCheckLog()
				s := NewScheduler(Config{Logger: testLogger(t), MaxConcurrent: tt.bound})
				var targets []Target
				for _, site := range []string{"a", "b", "c", "d", "e", "f"} {
					targets = append(targets, Target{Group: "g", Site: site, Spec: timing(time.Second, 900*time.Millisecond),
						Checker: &fakeChecker{name: site, log: log, hold: 800 * time.Millisecond, ok: true}})
				}
				if err := s.SetTargets(targets); err != nil {
					t.Fatal(err)
				}
				stop := start(t, s)
				time.Sleep(6 * time.Second)
				stop()
				if diff := cmp.Diff(tt.want, log.maxRunning); diff != "" {
					t.Errorf("most checks at once (-want +got):\n%s", diff)
				}
				for site, starts := range log.startsByName() {
					if len(starts) < 2 {
						t.Errorf("target %s ran %d times in 6s, want at least 2", site, len(starts))
					}
				}
			})
		})
	}
}

func TestSchedulerHungProbeDoesNotBlockOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := newCheckLog()
		t0 := time.Now()
		s := NewScheduler(Config{Logger: testLogger(t)})
		spec := timing(time.Second, 900*time.Millisecond)
		err := s.SetTargets([]Target{
			{Group: "g", Site: "fast", Spec: spec, Checker: &fakeChecker{name: "fast", log: log, ok: true}},
			{Group: "g", Site: "hung", Spec: spec, Checker: &fakeChecker{name: "hung", log: log, hold: -1, ok: true}},
		})
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, s)
		time.Sleep(3450 * time.Millisecond)
		got := s.Snapshot()
		stop()

		if diff := cmp.Diff(ms(0, 1000, 2000, 3000), log.startsByName()["fast"]); diff != "" {
			t.Errorf("fast target's starts (-want +got):\n%s", diff)
		}
		want := []Observation{
			{Group: "g", Site: "fast", State: StateHealthy, Since: t0, // the run's first check
				CheckedAt: t0.Add(3 * time.Second),
				OK:        true, Detail: "fine"},
			{Group: "g", Site: "hung", State: StateFailing, Since: t0.Add(500 * time.Millisecond), // its first (hung) check began
				CheckedAt: t0.Add(3400 * time.Millisecond),
				Detail:    "timeout after 900ms", Latency: 900 * time.Millisecond},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Snapshot() (-want +got):\n%s", diff)
		}
	})
}

func TestSchedulerAddRemoveTargets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := newCheckLog()
		t0 := time.Now()
		s := NewScheduler(Config{Logger: testLogger(t)})
		spec := timing(time.Second, 100*time.Millisecond)
		a := Target{Group: "g", Site: "a", Spec: spec, Checker: &fakeChecker{name: "a", log: log, ok: true}}
		b := Target{Group: "g", Site: "b", Spec: spec, Checker: &fakeChecker{name: "b", log: log, ok: true}}
		c := Target{Group: "g", Site: "c", Spec: spec, Checker: &fakeChecker{name: "c", log: log, ok: true}}
		if err := s.SetTargets([]Target{a, b}); err != nil {
			t.Fatal(err)
		}
		stop := start(t, s)
		defer stop()

		time.Sleep(1600 * time.Millisecond)
		if err := s.SetTargets([]Target{b, c}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2000 * time.Millisecond) // to 3.6s

		wantStarts := map[string][]time.Duration{
			"a": ms(0, 1000),
			"b": ms(500, 1500, 2500, 3500),
			"c": ms(2000, 3000),
		}
		if diff := cmp.Diff(wantStarts, log.startsByName()); diff != "" {
			t.Errorf("check starts (-want +got):\n%s", diff)
		}
		want := []Observation{
			{Group: "g", Site: "b", State: StateHealthy, Since: t0.Add(500 * time.Millisecond), CheckedAt: t0.Add(3500 * time.Millisecond), OK: true, Detail: "fine"},
			{Group: "g", Site: "c", State: StateHealthy, Since: t0.Add(2000 * time.Millisecond), CheckedAt: t0.Add(3000 * time.Millisecond), OK: true, Detail: "fine"},
		}
		if diff := cmp.Diff(want, s.Snapshot()); diff != "" {
			t.Errorf("Snapshot() after replacing a with c (-want +got):\n%s", diff)
		}

		// Changing b's spec starts it afresh.
		b.Spec.FailThreshold = 5
		if err := s.SetTargets([]Target{b, c}); err != nil {
			t.Fatal(err)
		}
		want[0] = Observation{Group: "g", Site: "b", State: StateUnknown, Since: t0.Add(3600 * time.Millisecond)}
		if diff := cmp.Diff(want, s.Snapshot()); diff != "" {
			t.Errorf("Snapshot() after changing b (-want +got):\n%s", diff)
		}
	})
}

func TestSchedulerSlowConsumer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := newCheckLog()
		t0 := time.Now()
		release := make(chan struct{})
		var mu sync.Mutex
		var delivered []time.Duration // CheckedAt since t0
		s := NewScheduler(Config{Logger: testLogger(t), OnObservation: func(o Observation) {
			mu.Lock()
			first := len(delivered) == 0
			delivered = append(delivered, o.CheckedAt.Sub(t0))
			mu.Unlock()
			if first {
				<-release
			}
		}})
		err := s.SetTargets([]Target{{Group: "g", Site: "a", Spec: timing(time.Second, 100*time.Millisecond),
			Checker: &fakeChecker{name: "a", log: log, ok: true}}})
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, s)
		defer stop()

		time.Sleep(5500 * time.Millisecond)
		if diff := cmp.Diff(t0.Add(5*time.Second), s.Snapshot()[0].CheckedAt); diff != "" {
			t.Errorf("last check while the consumer is stuck (-want +got):\n%s", diff)
		}
		close(release)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if diff := cmp.Diff(ms(0, 5000), delivered); diff != "" {
			t.Errorf("delivered observations (-want +got):\n%s", diff)
		}
	})
}

// TestSchedulerDropsRemovedTargetsUndelivered: an observation still in
// the mailbox when its target is removed is not delivered: the consumer
// would otherwise take up a target it no longer has.
func TestSchedulerDropsRemovedTargetsUndelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := newCheckLog()
		release := make(chan struct{})
		var mu sync.Mutex
		var delivered []string
		s := NewScheduler(Config{Logger: testLogger(t), OnObservation: func(o Observation) {
			mu.Lock()
			first := len(delivered) == 0
			delivered = append(delivered, o.Site)
			mu.Unlock()
			if first {
				<-release
			}
		}})
		a := Target{Group: "g", Site: "a", Spec: timing(time.Second, 100*time.Millisecond), Checker: &fakeChecker{name: "a", log: log, ok: true}}
		b := Target{Group: "g", Site: "b", Spec: timing(time.Second, 100*time.Millisecond), Checker: &fakeChecker{name: "b", log: log, ok: true}}
		if err := s.SetTargets([]Target{a}); err != nil {
			t.Fatal(err)
		}
		stop := start(t, s)
		defer stop()
		synctest.Wait() // a's first observation is being delivered, and waits
		if err := s.SetTargets([]Target{a, b}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond) // b checked, in the mailbox
		synctest.Wait()
		if err := s.SetTargets([]Target{a}); err != nil {
			t.Fatal(err)
		}
		close(release)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if slices.Contains(delivered, "b") {
			t.Errorf("delivered %v: b's observation after b was removed", delivered)
		}
		if len(delivered) < 2 || delivered[len(delivered)-1] != "a" {
			t.Errorf("delivered %v, want a's later observation after the consumer was released", delivered)
		}
	})
}

func TestSchedulerThresholds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		var mu sync.Mutex
		var states []State
		s := NewScheduler(Config{Logger: testLogger(t), OnObservation: func(o Observation) {
			mu.Lock()
			states = append(states, o.State)
			mu.Unlock()
		}})
		err := s.SetTargets([]Target{{Group: "g", Site: "a", Spec: timing(time.Second, 100*time.Millisecond),
			Checker: &fakeChecker{name: "a", log: newCheckLog()}}})
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, s)
		defer stop()
		time.Sleep(2500 * time.Millisecond)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if diff := cmp.Diff([]State{StateUnknown, StateUnknown, StateFailing}, states); diff != "" {
			t.Errorf("observed states (-want +got):\n%s", diff)
		}
		// Failing since the first of the three failed checks began.
		if diff := cmp.Diff(t0, s.Snapshot()[0].Since); diff != "" {
			t.Errorf("Since (-want +got):\n%s", diff)
		}
	})
}

func TestSchedulerRejectsBadTargets(t *testing.T) {
	s := NewScheduler(Config{Logger: testLogger(t)})
	good := Target{Group: "g", Site: "a", Spec: Spec{Kind: KindTCP, TCP: &TCPSpec{Address: "127.0.0.1:1"}}}
	if err := s.SetTargets([]Target{good}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		targets []Target
		wantErr error
	}{
		{"duplicate", []Target{good, good}, ErrDuplicateTarget},
		{"invalid spec", []Target{good, {Group: "g", Site: "b", Spec: Spec{Kind: KindHTTP}}}, ErrMissing},
		{"custom checker with bad timing", []Target{{Group: "g", Site: "c", Spec: timing(time.Second, 2*time.Second),
			Checker: CheckerFunc(func(context.Context) Result { return Result{} })}}, ErrTimeoutNotBelowInterval},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.SetTargets(tt.targets)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("SetTargets() = %v, want %v", err, tt.wantErr)
			}
			var te *TargetError
			if !errors.As(err, &te) {
				t.Errorf("SetTargets() = %v, want a *TargetError", err)
			}
			if diff := cmp.Diff([]string{"a"}, sites(s.Snapshot())); diff != "" {
				t.Errorf("targets after a rejected SetTargets (-want +got):\n%s", diff)
			}
		})
	}
}

func sites(obs []Observation) []string {
	var out []string
	for _, o := range obs {
		out = append(out, o.Site)
	}
	return out
}

func TestSchedulerRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(Config{Logger: testLogger(t)})
		stop := start(t, s)
		defer stop()
		synctest.Wait()
		if err := s.Run(context.Background()); !errors.Is(err, ErrAlreadyRunning) {
			t.Errorf("second Run() = %v, want ErrAlreadyRunning", err)
		}
	})
}

// TestSchedulerRealProbe runs a real tcp probe on loopback through the
// scheduler, in real time, until it sees the listener go away.
func TestSchedulerRealProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	obs := make(chan Observation, 100)
	s := NewScheduler(Config{Logger: testLogger(t), OnObservation: func(o Observation) { obs <- o }})
	err = s.SetTargets([]Target{{Group: "app", Site: "east", Spec: Spec{
		Kind: KindTCP, Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, TCP: &TCPSpec{Address: ln.Addr().String()},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, s)
	defer stop()

	waitFor := func(want State) Observation {
		t.Helper()
		deadline := time.NewTimer(10 * time.Second)
		defer deadline.Stop()
		for {
			select {
			case o := <-obs:
				if o.State == want {
					return o
				}
			case <-deadline.C:
				t.Fatalf("no %v observation within 10s; snapshot %+v", want, s.Snapshot())
			}
		}
	}
	if o := waitFor(StateHealthy); o.Kind != KindTCP || o.Detail != "connected" {
		t.Errorf("healthy observation = %+v, want kind tcp, detail connected", o)
	}
	ln.Close()
	if o := waitFor(StateFailing); !strings.Contains(o.Detail, "connection refused") {
		t.Errorf("failing observation detail = %q, want connection refused", o.Detail)
	}
}
