package probes

import "time"

// State is a target's health as seen from this witness.
type State uint8

// The states of a target.
const (
	// StateUnknown: neither threshold has been reached since the target
	// was added.
	StateUnknown State = iota
	// StateHealthy: the last RecoverThreshold checks succeeded (and the
	// target has not failed FailThreshold times in a row since).
	StateHealthy
	// StateFailing: the last FailThreshold checks failed (and the target
	// has not succeeded RecoverThreshold times in a row since).
	StateFailing
)

func (s State) String() string {
	switch s {
	case StateHealthy:
		return "healthy"
	case StateFailing:
		return "failing"
	default:
		return "unknown"
	}
}

// Tracker turns check results into a [State]. The zero value is not ready;
// use [NewTracker]. A Tracker is not safe for concurrent use.
type Tracker struct {
	failThreshold, recoverThreshold int

	state          State
	since          time.Time
	okRun, failRun int
	runStart       time.Time // when the first check of the current run started
	last           Result
	checkedAt      time.Time
}

// NewTracker returns an unknown tracker whose state dates from now.
// Thresholds below 1 count as 1.
func NewTracker(failThreshold, recoverThreshold int, now time.Time) *Tracker {
	return &Tracker{
		failThreshold:    max(failThreshold, 1),
		recoverThreshold: max(recoverThreshold, 1),
		since:            now,
	}
}

// Observe records r, a check that started at started and ended at now, and
// reports whether the state changed.
//
// A new state dates from the start of the first check of the run that
// reached the threshold, not from the check that completed it: a target
// that failed three checks a second apart has been failing since the first
// of them began. Policy timers such as failover_after therefore count from
// the first evidence of an outage, and the thresholds only decide whether
// it is one.
func (t *Tracker) Observe(r Result, started, now time.Time) bool {
	t.last = r
	t.checkedAt = now
	next := t.state
	if r.OK {
		if t.okRun == 0 {
			t.runStart = started
		}
		t.okRun++
		t.failRun = 0
		if t.okRun >= t.recoverThreshold {
			next = StateHealthy
		}
	} else {
		if t.failRun == 0 {
			t.runStart = started
		}
		t.failRun++
		t.okRun = 0
		if t.failRun >= t.failThreshold {
			next = StateFailing
		}
	}
	if next == t.state {
		return false
	}
	t.state = next
	t.since = t.runStart
	return true
}

// State returns the current state.
func (t *Tracker) State() State { return t.state }

// Since returns when the current state began (see [Tracker.Observe]), or
// when the tracker was made.
func (t *Tracker) Since() time.Time { return t.since }

// Last returns the last result and when it was observed (zero before any).
func (t *Tracker) Last() (Result, time.Time) { return t.last, t.checkedAt }
