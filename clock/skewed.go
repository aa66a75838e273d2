package clock

import (
	"math"
	"time"
)

// Skewed returns a clock that runs at rate times base's speed (1.01: one
// per cent fast) and reads offset ahead of it: the clock of another
// machine, whose oscillator drifts and whose wall time NTP has set a
// little differently. Durations given to its timers and tickers are its
// own: a 1 s timer of a clock running 1 % fast fires after about 0.99 s of
// base time. The times its timers and tickers send on C are base's; read
// Now instead. A nil base is Real.
//
// Go's monotonic clock is not stepped by NTP, so a Witness decision, made
// on durations of one machine's clock, sees the rate and not the offset;
// the offset shows where one machine's wall time is read on another
// (transition times, observation times).
func Skewed(base Clock, rate float64, offset time.Duration) Clock {
	base = Or(base)
	if rate <= 0 {
		rate = 1
	}
	return &skewed{base: base, rate: rate, origin: base.Now(), offset: offset}
}

type skewed struct {
	base   Clock
	rate   float64
	origin time.Time
	offset time.Duration
}

func (s *skewed) Now() time.Time {
	t := s.base.Now()
	elapsed := t.Sub(s.origin)
	return t.Add(s.offset + time.Duration(float64(elapsed)*(s.rate-1)))
}

func (s *skewed) Since(t time.Time) time.Duration { return s.Now().Sub(t) }

// onBase is how long base takes to run d of this clock's time, rounded
// up and a nanosecond more: a timer may fire late, never early. One that
// fired a nanosecond early by this clock's Now would leave a loop waiting
// for a deadline asking for a timer of zero, which fires without time
// passing.
func (s *skewed) onBase(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return time.Duration(math.Ceil(float64(d)/s.rate)) + 1
}

func (s *skewed) NewTimer(d time.Duration) Timer {
	return skewedTimer{s.base.NewTimer(s.onBase(d)), s}
}

func (s *skewed) NewTicker(d time.Duration) Ticker {
	return skewedTicker{s.base.NewTicker(s.onBase(d)), s}
}

func (s *skewed) After(d time.Duration) <-chan time.Time { return s.base.After(s.onBase(d)) }

func (s *skewed) AfterFunc(d time.Duration, f func()) Timer {
	return skewedTimer{s.base.AfterFunc(s.onBase(d), f), s}
}

type skewedTimer struct {
	Timer
	s *skewed
}

func (t skewedTimer) Reset(d time.Duration) bool { return t.Timer.Reset(t.s.onBase(d)) }

type skewedTicker struct {
	Ticker
	s *skewed
}

func (t skewedTicker) Reset(d time.Duration) { t.Ticker.Reset(t.s.onBase(d)) }
