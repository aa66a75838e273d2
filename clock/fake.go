package clock

import (
	"context"
	"sync"
	"time"
)

// Fake is a Clock that moves only when told to. Timers and tickers fire
// as Advance or Set passes their due times, earliest first (ties in the
// order they were armed); at each firing Now reads the due time, so the
// value a channel receives, and Now in an AfterFunc callback, is the time
// it was due at, and a timer armed by a callback fires within the same
// Advance if it falls due there.
//
// A channel receives a firing without blocking Advance: a timer's or a
// ticker's channel holds one value, and a ticker delivers at most one
// tick per Advance, dropping the beats it passes over as time.Ticker
// drops ticks for a slow receiver; it stays on its grid, its next tick
// being the first beat after the new time. AfterFunc callbacks run in
// Advance's goroutine, in due order, with no lock held: a callback must
// not wait for the goroutine that calls Advance, nor call Advance or Set.
//
// Code under test usually runs in goroutines of its own: a test calls
// BlockUntil before Advance so that it moves the clock only once that
// code has armed the timers it waits on. Inside a testing/synctest
// bubble, synctest.Wait after Advance waits until that code has done
// what the firings started.
type Fake struct {
	step sync.Mutex // one Advance or Set at a time

	mu     sync.Mutex
	now    time.Time
	seq    uint64
	armed  map[*fakeTimer]struct{}
	change chan struct{} // closed when a timer is armed; nil until waited on
}

// NewFake returns a Fake that reads start until it is moved.
func NewFake(start time.Time) *Fake {
	return &Fake{now: start, armed: map[*fakeTimer]struct{}{}}
}

var _ Clock = (*Fake)(nil)

// Now is the fake's current time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Since is Now().Sub(t).
func (f *Fake) Since(t time.Time) time.Duration { return f.Now().Sub(t) }

// NewTimer returns a timer that fires once the clock has moved d on. A
// timer of d <= 0 fires at once.
func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, ch: make(chan time.Time, 1)}
	f.mu.Lock()
	f.arm(t, d)
	f.mu.Unlock()
	return t
}

// After is NewTimer(d).C().
func (f *Fake) After(d time.Duration) <-chan time.Time { return f.NewTimer(d).C() }

// AfterFunc calls fn once the clock has moved d on, in the goroutine that
// moves it; a d <= 0 calls it at the next Advance or Set.
func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	t := &fakeTimer{f: f, fn: fn}
	f.mu.Lock()
	f.arm(t, max(d, 0))
	f.mu.Unlock()
	return t
}

// NewTicker returns a ticker that fires every d; d must be above zero.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	t := &fakeTimer{f: f, ch: make(chan time.Time, 1), period: d}
	f.mu.Lock()
	f.arm(t, d)
	f.mu.Unlock()
	return fakeTicker{t}
}

// Advance moves the clock d on, firing what falls due on the way.
func (f *Fake) Advance(d time.Duration) {
	f.step.Lock()
	defer f.step.Unlock()
	f.mu.Lock()
	to := f.now.Add(d)
	f.mu.Unlock()
	f.moveTo(to)
}

// Set moves the clock to t, firing what falls due on the way. A t before
// Now moves the clock back and fires nothing: timers and tickers keep
// their due times.
func (f *Fake) Set(t time.Time) {
	f.step.Lock()
	defer f.step.Unlock()
	f.mu.Lock()
	if t.Before(f.now) {
		f.now = t
		f.mu.Unlock()
		return
	}
	f.mu.Unlock()
	f.moveTo(t)
}

// Waiters is how many timers and tickers are armed: made or reset and
// neither fired (a timer) nor stopped.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.armed)
}

// BlockUntil waits until at least n timers and tickers are armed, or ctx
// ends.
func (f *Fake) BlockUntil(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		if len(f.armed) >= n {
			f.mu.Unlock()
			return nil
		}
		if f.change == nil {
			f.change = make(chan struct{})
		}
		ch := f.change
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// moveTo fires, earliest first, every firing due up to to, then sets the
// clock to to. Called with step held.
func (f *Fake) moveTo(to time.Time) {
	for {
		f.mu.Lock()
		t := f.next(to)
		if t == nil {
			f.now = to
			f.mu.Unlock()
			return
		}
		f.now = t.when
		fn := t.fn
		switch {
		case t.period > 0:
			// One tick; the beats up to to are dropped.
			t.send(f.now)
			t.when = t.when.Add((to.Sub(t.when)/t.period + 1) * t.period)
			f.seq++
			t.seq = f.seq
		default:
			delete(f.armed, t)
			if fn == nil {
				t.send(f.now)
			}
		}
		f.mu.Unlock()
		if fn != nil {
			fn()
		}
	}
}

// next is the armed timer due earliest, not after to; nil if none.
func (f *Fake) next(to time.Time) *fakeTimer {
	var first *fakeTimer
	for t := range f.armed {
		if t.when.After(to) {
			continue
		}
		if first == nil || t.when.Before(first.when) || (t.when.Equal(first.when) && t.seq < first.seq) {
			first = t
		}
	}
	return first
}

// arm sets t due d from now; f.mu held. A channel timer already due fires
// at once, as a real one would.
func (f *Fake) arm(t *fakeTimer, d time.Duration) {
	t.when = f.now.Add(d)
	f.seq++
	t.seq = f.seq
	if d <= 0 && t.period == 0 && t.fn == nil {
		t.send(f.now)
		return
	}
	f.armed[t] = struct{}{}
	if f.change != nil {
		close(f.change)
		f.change = nil
	}
}

// fakeTimer is a Fake's timer, ticker or AfterFunc.
type fakeTimer struct {
	f      *Fake
	ch     chan time.Time
	fn     func()
	period time.Duration // a ticker's
	when   time.Time
	seq    uint64
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

// send delivers now unless a value waits unreceived.
func (t *fakeTimer) send(now time.Time) {
	select {
	case t.ch <- now:
	default:
	}
}

// disarm stops t and drops a value not yet received; f.mu held.
func (t *fakeTimer) disarm() bool {
	_, was := t.f.armed[t]
	delete(t.f.armed, t)
	if t.ch != nil {
		select {
		case <-t.ch:
		default:
		}
	}
	return was
}

// Stop disarms the timer or ticker. No value is received after it.
func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return t.disarm()
}

// Reset arms the timer to fire d from now; for a ticker, it sets the
// period to d and the next tick d from now.
func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	was := t.disarm()
	if t.period > 0 {
		if d <= 0 {
			panic("clock: non-positive interval for Ticker.Reset")
		}
		t.period = d
	}
	t.f.arm(t, d)
	return was
}

// fakeTicker is a ticker's view of a fakeTimer.
type fakeTicker struct{ *fakeTimer }

func (t fakeTicker) Stop()                 { t.fakeTimer.Stop() }
func (t fakeTicker) Reset(d time.Duration) { t.fakeTimer.Reset(d) }
