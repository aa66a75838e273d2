package clock

import (
	"testing"
	"time"
)

// A clock 10 % fast, 2 s ahead: its Now runs 1.1 s per second of base
// time, and its timers fire after their duration of its own time.
func TestSkewedRunsAtItsRate(t *testing.T) {
	f := NewFake(t0)
	s := Skewed(f, 1.1, 2*time.Second)
	start := s.Now()
	if d := start.Sub(f.Now()); d != 2*time.Second {
		t.Fatalf("offset %s, want 2s", d)
	}
	timer := s.NewTimer(1100 * time.Millisecond)
	ticker := s.NewTicker(550 * time.Millisecond)
	defer ticker.Stop()
	f.Advance(999 * time.Millisecond)
	if _, ok := received(timer.C()); ok {
		t.Fatal("fired before a second of base time")
	}
	if _, ok := received(ticker.C()); !ok {
		t.Fatal("ticker of 550ms (500ms of base time) did not tick")
	}
	f.Advance(2 * time.Millisecond)
	if _, ok := received(timer.C()); !ok {
		t.Fatal("1.1s timer did not fire after 1.001s of base time")
	}
	if got := s.Since(start); got != 1101100*time.Microsecond {
		t.Errorf("Since after 1.001s of base time: %s, want 1.1011s", got)
	}
	timer.Reset(2200 * time.Millisecond)
	f.Advance(2*time.Second + time.Millisecond)
	if _, ok := received(timer.C()); !ok {
		t.Error("a reset 2.2s timer did not fire after 2s of base time")
	}
}

// A timer never fires before its duration has passed by this clock's Now:
// one that fired a nanosecond early would leave a loop that waits for a
// deadline asking for a timer of zero, which fires without time passing
// (inside a synctest bubble, for ever).
func TestSkewedTimerNeverFiresEarly(t *testing.T) {
	for _, rate := range []float64{0.997, 0.9999999, 1.0000001, 1.003, 1.7} {
		for _, d := range []time.Duration{1, 3, 999, 1234567891, 7 * time.Second} {
			f := NewFake(t0)
			s := Skewed(f, rate, -time.Second)
			start := s.Now()
			timer := s.NewTimer(d)
			f.Advance(time.Duration(float64(d)/rate) - 1)
			for i := 0; ; i++ {
				if _, ok := received(timer.C()); ok {
					break
				}
				if i == 5 {
					t.Fatalf("rate %v, %s: not fired", rate, d)
				}
				f.Advance(1)
			}
			if got := s.Since(start); got < d {
				t.Errorf("rate %v: a timer of %s fired after %s", rate, d, got)
			}
		}
	}
}
