package clock

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2031, 5, 1, 12, 0, 0, 0, time.UTC)

// received returns what c holds now, without waiting.
func received(c <-chan time.Time) (time.Time, bool) {
	select {
	case v := <-c:
		return v, true
	default:
		return time.Time{}, false
	}
}

func TestFakeFiresInDueOrder(t *testing.T) {
	f := NewFake(t0)
	type firing struct {
		Name string
		At   time.Duration
	}
	var got []firing
	at := func(name string) func() {
		return func() { got = append(got, firing{name, f.Now().Sub(t0)}) }
	}
	f.AfterFunc(3*time.Second, at("c"))
	f.AfterFunc(time.Second, at("a"))
	f.AfterFunc(2*time.Second, at("b1"))
	f.AfterFunc(2*time.Second, at("b2")) // same due time: armed after b1
	f.AfterFunc(time.Second, func() {
		// Armed while firing, due within the same Advance.
		f.AfterFunc(1500*time.Millisecond, at("armed by a"))
	})
	stopped := f.AfterFunc(time.Second, at("stopped"))
	if !stopped.Stop() {
		t.Error("Stop of an armed AfterFunc reported it was not armed")
	}
	timer := f.NewTimer(2500 * time.Millisecond)

	f.Advance(2 * time.Second)
	if _, ok := received(timer.C()); ok {
		t.Error("timer due at 2.5s fired at 2s")
	}
	f.Advance(5 * time.Second)
	want := []firing{{"a", time.Second}, {"b1", 2 * time.Second}, {"b2", 2 * time.Second}, {"armed by a", 2500 * time.Millisecond}, {"c", 3 * time.Second}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("firings (-want +got):\n%s", diff)
	}
	if v, ok := received(timer.C()); !ok || !v.Equal(t0.Add(2500*time.Millisecond)) {
		t.Errorf("timer delivered %v, %v; want its due time %v", v, ok, t0.Add(2500*time.Millisecond))
	}
	if got := f.Now(); !got.Equal(t0.Add(7 * time.Second)) {
		t.Errorf("Now() = %v after advancing 7s, want %v", got, t0.Add(7*time.Second))
	}
	if n := f.Waiters(); n != 0 {
		t.Errorf("Waiters() = %d after everything fired, want 0", n)
	}
}

// A ticker passed over by several beats in one Advance delivers one tick,
// the first, and stays on its grid.
func TestFakeTickerCatchUp(t *testing.T) {
	f := NewFake(t0)
	tk := f.NewTicker(time.Second)
	defer tk.Stop()

	f.Advance(500 * time.Millisecond)
	if _, ok := received(tk.C()); ok {
		t.Fatal("ticker fired before its period")
	}
	f.Advance(500 * time.Millisecond)
	if v, ok := received(tk.C()); !ok || !v.Equal(t0.Add(time.Second)) {
		t.Fatalf("first tick %v, %v; want %v", v, ok, t0.Add(time.Second))
	}
	f.Advance(3500 * time.Millisecond) // beats at 2s, 3s, 4s
	if v, ok := received(tk.C()); !ok || !v.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("after passing three beats: tick %v, %v; want one at %v", v, ok, t0.Add(2*time.Second))
	}
	if _, ok := received(tk.C()); ok {
		t.Fatal("more than one tick delivered by one Advance")
	}
	f.Advance(400 * time.Millisecond) // 4.9s
	if _, ok := received(tk.C()); ok {
		t.Fatal("ticker left its grid: ticked before 5s")
	}
	f.Advance(100 * time.Millisecond) // 5s
	if v, ok := received(tk.C()); !ok || !v.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("tick %v, %v; want %v on the grid", v, ok, t0.Add(5*time.Second))
	}

	// An unreceived tick is kept, later beats dropped.
	f.Advance(time.Second)
	f.Advance(time.Second)
	if v, ok := received(tk.C()); !ok || !v.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("unreceived tick %v, %v; want the one of 6s", v, ok)
	}
	if _, ok := received(tk.C()); ok {
		t.Fatal("second tick kept")
	}
}

func TestFakeStopAndReset(t *testing.T) {
	f := NewFake(t0)

	timer := f.NewTimer(time.Second)
	f.Advance(time.Second)
	// Fired but not received: Stop reports it was not armed and drops
	// the value, like time.Timer since Go 1.23.
	if timer.Stop() {
		t.Error("Stop of a fired timer reported it armed")
	}
	if _, ok := received(timer.C()); ok {
		t.Error("value received after Stop")
	}
	if timer.Reset(2 * time.Second) {
		t.Error("Reset of a stopped timer reported it armed")
	}
	f.Advance(time.Second)
	if !timer.Reset(2 * time.Second) {
		t.Error("Reset of an armed timer reported it was not armed")
	}
	f.Advance(1500 * time.Millisecond) // 3.5s: the first Reset's 3s is gone, the second's 4s not yet
	if _, ok := received(timer.C()); ok {
		t.Error("timer fired at its Reset-replaced due time")
	}
	f.Advance(500 * time.Millisecond)
	if v, ok := received(timer.C()); !ok || !v.Equal(t0.Add(4*time.Second)) {
		t.Errorf("reset timer delivered %v, %v; want %v", v, ok, t0.Add(4*time.Second))
	}

	zero := f.NewTimer(0)
	if _, ok := received(zero.C()); !ok {
		t.Error("timer of 0 did not fire at once")
	}

	tk := f.NewTicker(time.Second)
	f.Advance(time.Second)
	tk.Reset(3 * time.Second) // drops the pending tick and moves the grid
	if _, ok := received(tk.C()); ok {
		t.Error("tick received after Reset")
	}
	f.Advance(2 * time.Second)
	if _, ok := received(tk.C()); ok {
		t.Error("ticker ticked on its old period after Reset")
	}
	f.Advance(time.Second)
	if _, ok := received(tk.C()); !ok {
		t.Error("ticker did not tick on its new period")
	}
	tk.Stop()
	f.Advance(10 * time.Second)
	if _, ok := received(tk.C()); ok {
		t.Error("stopped ticker ticked")
	}
	if n := f.Waiters(); n != 0 {
		t.Errorf("Waiters() = %d with everything stopped or fired, want 0", n)
	}
}

func TestFakeSet(t *testing.T) {
	f := NewFake(t0)
	timer := f.NewTimer(time.Minute)
	f.Set(t0.Add(-time.Hour))
	if got := f.Now(); !got.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("Now() = %v after Set back, want %v", got, t0.Add(-time.Hour))
	}
	f.Set(t0.Add(time.Minute))
	if v, ok := received(timer.C()); !ok || !v.Equal(t0.Add(time.Minute)) {
		t.Errorf("timer after Set: %v, %v; want %v", v, ok, t0.Add(time.Minute))
	}
	if d := f.Since(t0); d != time.Minute {
		t.Errorf("Since(t0) = %s, want 1m", d)
	}
}

// BlockUntil returns once the code under test waits on its timers, so the
// test's Advance is not lost before they are armed.
func TestFakeBlockUntil(t *testing.T) {
	f := NewFake(t0)
	done := make(chan time.Time)
	go func() {
		timer := f.NewTimer(time.Second)
		done <- <-timer.C()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.Advance(time.Second)
	if got := <-done; !got.Equal(t0.Add(time.Second)) {
		t.Errorf("goroutine woke at %v, want %v", got, t0.Add(time.Second))
	}

	short, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := f.BlockUntil(short, 1); err == nil {
		t.Error("BlockUntil with nothing armed and a done context returned nil")
	}
}

// Real reads the time package on every call: inside a synctest bubble it
// is the bubble's time.
func TestRealFollowsSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := Or(nil)
		start := c.Now()
		timer := c.NewTimer(time.Hour)
		<-timer.C()
		if d := c.Since(start); d != time.Hour {
			t.Errorf("Since after a 1h timer in a bubble = %s, want 1h", d)
		}
		tk := c.NewTicker(time.Minute)
		defer tk.Stop()
		<-tk.C()
		<-c.After(time.Minute)
		fired := make(chan struct{})
		c.AfterFunc(time.Minute, func() { close(fired) })
		<-fired
		if d := c.Since(start); d != time.Hour+3*time.Minute {
			t.Errorf("Since = %s, want 1h3m", d)
		}
	})
}

func TestOr(t *testing.T) {
	f := NewFake(t0)
	if Or(f) != Clock(f) {
		t.Error("Or(fake) is not the fake")
	}
	if Or(nil) != Real {
		t.Error("Or(nil) is not Real")
	}
}

func TestWithTimeoutOnFake(t *testing.T) {
	f := NewFake(t0)
	ctx, cancel := WithTimeout(context.Background(), f, time.Second)
	defer cancel()
	if _, ok := ctx.Deadline(); ok {
		t.Error("a fake-clock timeout reports a Deadline")
	}
	f.Advance(999 * time.Millisecond)
	if err := ctx.Err(); err != nil {
		t.Fatalf("ended before its timeout: %v", err)
	}
	f.Advance(time.Millisecond)
	<-ctx.Done()
	if err := ctx.Err(); err != context.DeadlineExceeded {
		t.Errorf("Err() = %v at its timeout, want DeadlineExceeded", err)
	}

	parent, stop := context.WithCancel(context.Background())
	child, cancel2 := WithTimeout(parent, f, time.Second)
	defer cancel2()
	stop()
	<-child.Done()
	if n := f.Waiters(); n != 1 {
		t.Errorf("Waiters() = %d, want 1: the timer stops at cancel", n)
	}
	f.Advance(time.Second)
	if err := child.Err(); err != context.Canceled {
		t.Errorf("Err() = %v after the parent was cancelled, want Canceled", err)
	}
	_, cancel4 := WithTimeout(context.Background(), f, time.Second)
	cancel4()
	if n := f.Waiters(); n != 0 {
		t.Errorf("Waiters() = %d after cancel, want 0", n)
	}

	expired, cancel3 := WithTimeout(context.Background(), f, 0)
	defer cancel3()
	if err := expired.Err(); err != context.DeadlineExceeded {
		t.Errorf("timeout 0: Err() = %v, want DeadlineExceeded", err)
	}
}
