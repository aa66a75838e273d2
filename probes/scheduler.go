package probes

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/sitewitness/witness/clock"
)

// DefaultMaxConcurrent bounds the checks that run at once when
// Config.MaxConcurrent is zero.
const DefaultMaxConcurrent = 16

// Log keys.
const (
	logKeyGroup  = "group"
	logKeySite   = "site"
	logKeyName   = "probe"
	logKeyFrom   = "from"
	logKeyTo     = "to"
	logKeyDetail = "detail"
)

// Config configures a [Scheduler].
type Config struct {
	// Clock drives the schedule; nil means real time. Check timeouts are
	// context deadlines, so they follow real time (or a synctest bubble's).
	Clock clock.Clock
	// MaxConcurrent bounds the checks running at once; default 16.
	MaxConcurrent int
	// OnObservation, if set, receives an Observation after every check, on
	// a goroutine of its own, one call at a time. If it falls behind, the
	// observations of a target that it has not taken yet are replaced by
	// that target's newest one; it never holds up the checks. An
	// observation of a target that SetTargets has just removed may still
	// arrive once.
	OnObservation func(Observation)
	// Logger receives state changes; nil means slog.Default().
	Logger *slog.Logger
}

// Target is one probe of one group at one site.
type Target struct {
	Group, Site string
	// Name tells apart several probes of a group at the same site; it may
	// be empty when there is one.
	Name string
	// Spec gives the interval, timeout and thresholds, and the probe
	// itself unless Checker is set.
	Spec Spec
	// Checker, if set, is run instead of New(Spec); only the timing and
	// thresholds of Spec are then used.
	Checker Checker
}

// Observation is this witness's latest verdict on one target.
type Observation struct {
	Group, Site, Name string
	Kind              Kind
	State             State
	// Since is when State began: the start of the first check of the run
	// that reached the threshold, or when the target was added.
	Since time.Time
	// CheckedAt is when the last check finished; zero before the first.
	CheckedAt time.Time
	// OK, Detail, Latency and the database fields are from the last check;
	// see [Result] for their meaning.
	OK         bool
	Detail     string
	Latency    time.Duration
	Role       string
	LagBytes   int64
	LagSeconds float64
	Streaming  bool
	WAL        uint64
	Replayed   uint64
	Timeline   uint32
}

type targetKey struct{ group, site, name string }

func compareKeys(a, b targetKey) int {
	return cmp.Or(cmp.Compare(a.group, b.group), cmp.Compare(a.site, b.site), cmp.Compare(a.name, b.name))
}

// entry is the scheduler's record of one target. key, spec, custom and
// checker never change; a changed target gets a new entry.
type entry struct {
	key     targetKey
	spec    Spec
	custom  Checker
	checker Checker

	// Guarded by Scheduler.mu.
	tracker  *Tracker
	phase    float64 // start offset as a fraction of the interval
	next     time.Time
	index    int // in Scheduler.queue; -1 when not queued
	inflight bool
	skipped  uint64

	// Guarded by Scheduler.mbMu.
	posted bool
}

// Scheduler runs the checks of a changing set of targets. Its methods are
// safe for concurrent use.
//
// Run hands the checks that are due to a fixed set of MaxConcurrent
// workers, not to a goroutine each: 20,000 targets checked every second
// start no goroutine, and none waits in line for a turn.
type Scheduler struct {
	clock   clock.Clock
	workers int
	onObs   func(Observation)
	log     *slog.Logger
	epoch   time.Time
	wake    chan struct{}

	mu      sync.Mutex
	entries map[targetKey]*entry
	queue   entryQueue
	phases  []float64 // sorted phases of the entries
	running bool
	// due holds the checks taken from queue that no worker has begun,
	// oldest first; work has a slot per worker to wake it.
	due  []*entry
	work chan struct{}

	// The mailbox: the entries with a check finished and not yet
	// delivered, in the order they finished, each once (entry.posted).
	// An entry's observation is read when it is delivered, so it is
	// the newest, and a target removed meanwhile is not delivered.
	mbMu    sync.Mutex
	pending []*entry
	ready   chan struct{}
}

// NewScheduler returns a scheduler with no targets.
func NewScheduler(cfg Config) *Scheduler {
	clk := clock.Or(cfg.Clock)
	n := cfg.MaxConcurrent
	if n <= 0 {
		n = DefaultMaxConcurrent
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Scheduler{
		clock:   clk,
		workers: n,
		work:    make(chan struct{}, n),
		onObs:   cfg.OnObservation,
		log:     log.With("component", "probes"),
		epoch:   clk.Now(),
		wake:    make(chan struct{}, 1),
		entries: make(map[targetKey]*entry),
		ready:   make(chan struct{}, 1),
	}
}

// SetTargets replaces the set of targets. Targets that are unchanged (same
// key, spec and checker) keep their state and schedule; new or changed
// targets start unknown; missing ones stop, and a check of theirs still
// running is discarded. If any target is invalid, nothing changes and the
// error joins a [*TargetError] for each bad target.
func (s *Scheduler) SetTargets(targets []Target) error {
	var errs []error
	seen := make(map[targetKey]bool, len(targets))
	fresh := make([]*entry, 0, len(targets))
	for _, t := range targets {
		k := targetKey{t.Group, t.Site, t.Name}
		if seen[k] {
			errs = append(errs, &TargetError{Group: t.Group, Site: t.Site, Name: t.Name, Err: ErrDuplicateTarget})
			continue
		}
		seen[k] = true
		spec := t.Spec.WithDefaults()
		checker := t.Checker
		if checker == nil {
			p, err := New(spec)
			if err != nil {
				errs = append(errs, &TargetError{Group: t.Group, Site: t.Site, Name: t.Name, Err: err})
				continue
			}
			checker = p
		} else if err := errors.Join(spec.validateTiming()...); err != nil {
			errs = append(errs, &TargetError{Group: t.Group, Site: t.Site, Name: t.Name, Err: err})
			continue
		}
		fresh = append(fresh, &entry{key: k, spec: spec, custom: t.Checker, checker: checker, index: -1})
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	slices.SortFunc(fresh, func(a, b *entry) int { return compareKeys(a.key, b.key) })

	s.mu.Lock()
	now := s.clock.Now()
	for k, e := range s.entries {
		if !seen[k] {
			s.removeLocked(e)
		}
	}
	// Targets that share a Checker (see Shared) start at the same moment
	// of their interval, so that one check feeds them all.
	phaseOf := map[Checker]float64{}
	for _, e := range s.entries {
		if comparableChecker(e.custom) {
			phaseOf[e.custom] = e.phase
		}
	}
	for _, e := range fresh {
		old := s.entries[e.key]
		if old != nil && sameTarget(old, e) {
			continue
		}
		e.tracker = NewTracker(e.spec.FailThreshold, e.spec.RecoverThreshold, now)
		shared, isShared := phaseOf[e.custom]
		switch {
		case old != nil:
			e.phase = old.phase
			s.removeLocked(old)
		case isShared:
			e.phase = shared
		default:
			e.phase = largestGapMidpoint(s.phases)
		}
		if comparableChecker(e.custom) && !isShared {
			phaseOf[e.custom] = e.phase
		}
		s.insertPhase(e.phase)
		s.entries[e.key] = e
		e.next = alignedAtOrAfter(s.startOf(e), e.spec.Interval, now)
		heap.Push(&s.queue, e)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// Snapshot returns the observation of every target, sorted by group, site
// and name.
func (s *Scheduler) Snapshot() []Observation {
	s.mu.Lock()
	out := make([]Observation, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e.observation())
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Observation) int {
		return compareKeys(targetKey{a.Group, a.Site, a.Name}, targetKey{b.Group, b.Site, b.Name})
	})
	return out
}

// Run runs the checks until ctx is done, then waits for the checks in
// flight and the observation callback to return, and returns nil.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return ErrAlreadyRunning
	}
	s.running = true
	now := s.clock.Now()
	for _, e := range s.entries {
		e.next = alignedAtOrAfter(s.startOf(e), e.spec.Interval, now)
	}
	heap.Init(&s.queue)
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		s.mu.Lock()
		for _, e := range s.due { // taken, never begun
			e.inflight = false
		}
		s.due = nil
		s.running = false
		s.mu.Unlock()
	}()
	if s.onObs != nil {
		wg.Go(func() { s.deliver(ctx) })
	}
	for range s.workers {
		wg.Go(func() { s.work1(ctx) })
	}
	timer := s.clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		now := s.clock.Now()
		due := s.takeDueLocked(now)
		s.due = append(s.due, due...)
		var wait time.Duration
		pending := len(s.queue) > 0
		if pending {
			wait = s.queue[0].next.Sub(now)
		}
		s.mu.Unlock()
		for range min(len(due), s.workers) {
			select {
			case s.work <- struct{}{}:
			default: // every worker is already called
			}
		}
		timer.Stop()
		var tick <-chan time.Time
		if pending {
			timer.Reset(wait)
			tick = timer.C()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		case <-s.wake:
		}
	}
}

// takeDueLocked marks every entry whose time has come as in flight,
// advances its next run, and returns those to start. An entry still in
// flight from its previous run skips this one.
func (s *Scheduler) takeDueLocked(now time.Time) []*entry {
	var due []*entry
	for len(s.queue) > 0 && !s.queue[0].next.After(now) {
		e := s.queue[0]
		if e.inflight {
			e.skipped++
			s.log.Debug("check skipped, previous still running", logKeyGroup, e.key.group, logKeySite, e.key.site, logKeyName, e.key.name)
		} else {
			e.inflight = true
			due = append(due, e)
		}
		e.next = alignedAtOrAfter(e.next.Add(e.spec.Interval), e.spec.Interval, now.Add(time.Nanosecond))
		heap.Fix(&s.queue, 0)
	}
	return due
}

// work1 is one worker: it runs the due checks, oldest first, one at a
// time, until ctx ends.
func (s *Scheduler) work1(ctx context.Context) {
	for {
		s.mu.Lock()
		var e *entry
		if len(s.due) > 0 {
			e = s.due[0]
			s.due[0] = nil
			s.due = s.due[1:]
		}
		s.mu.Unlock()
		if e == nil {
			select {
			case <-ctx.Done():
				return
			case <-s.work:
			}
			continue
		}
		s.runCheck(ctx, e)
	}
}

func (s *Scheduler) runCheck(ctx context.Context, e *entry) {
	if ctx.Err() != nil || !s.current(e) {
		s.release(e) // stopping, or removed while it waited for a worker
		return
	}
	started := s.clock.Now()
	r := runChecker(ctx, e.checker, e.spec.Timeout)
	if ctx.Err() != nil {
		s.release(e)
		return
	}
	s.finish(e, r, started, s.clock.Now())
}

func (s *Scheduler) current(e *entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entries[e.key] == e
}

func (s *Scheduler) release(e *entry) {
	s.mu.Lock()
	e.inflight = false
	s.mu.Unlock()
}

// finish records the result of e's check and queues its observation.
func (s *Scheduler) finish(e *entry, r Result, started, now time.Time) {
	s.mu.Lock()
	e.inflight = false
	if s.entries[e.key] != e {
		s.mu.Unlock()
		return // removed or replaced while it ran
	}
	from := e.tracker.State()
	changed := e.tracker.Observe(r, started, now)
	var obs Observation
	if changed {
		obs = e.observation()
	}
	s.mu.Unlock()
	if changed {
		s.log.Info("target state changed", logKeyGroup, obs.Group, logKeySite, obs.Site, logKeyName, obs.Name,
			logKeyFrom, from.String(), logKeyTo, obs.State.String(), logKeyDetail, obs.Detail)
	}
	if s.onObs != nil {
		s.post(e)
	}
}

// post puts e in the mailbox, unless it is there already, and never
// blocks.
func (s *Scheduler) post(e *entry) {
	s.mbMu.Lock()
	if !e.posted {
		e.posted = true
		s.pending = append(s.pending, e)
	}
	s.mbMu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// deliverChunk is how many observations deliver reads under one hold of
// Scheduler.mu.
const deliverChunk = 256

func (s *Scheduler) deliver(ctx context.Context) {
	var taken, spare []*entry
	batch := make([]Observation, 0, deliverChunk)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.ready:
		}
		s.mbMu.Lock()
		taken, s.pending = s.pending, spare[:0]
		for _, e := range taken {
			e.posted = false
		}
		s.mbMu.Unlock()
		for chunk := range slices.Chunk(taken, deliverChunk) {
			batch = batch[:0]
			s.mu.Lock()
			for _, e := range chunk {
				if s.entries[e.key] == e { // not removed or replaced since
					batch = append(batch, e.observation())
				}
			}
			s.mu.Unlock()
			for _, obs := range batch {
				if ctx.Err() != nil {
					return
				}
				s.onObs(obs)
			}
		}
		clear(taken)
		spare = taken
	}
}

func (s *Scheduler) removeLocked(e *entry) {
	if e.index >= 0 {
		heap.Remove(&s.queue, e.index)
	}
	if i, ok := slices.BinarySearch(s.phases, e.phase); ok {
		s.phases = slices.Delete(s.phases, i, i+1)
	}
	delete(s.entries, e.key)
}

func (s *Scheduler) insertPhase(p float64) {
	i, _ := slices.BinarySearch(s.phases, p)
	s.phases = slices.Insert(s.phases, i, p)
}

// startOf is e's first run on the scheduler's grid: the epoch shifted by
// e's phase of its interval.
func (s *Scheduler) startOf(e *entry) time.Time {
	return s.epoch.Add(time.Duration(e.phase * float64(e.spec.Interval)))
}

func (e *entry) observation() Observation {
	r, at := e.tracker.Last()
	return Observation{
		Group:      e.key.group,
		Site:       e.key.site,
		Name:       e.key.name,
		Kind:       e.spec.Kind,
		State:      e.tracker.State(),
		Since:      e.tracker.Since(),
		CheckedAt:  at,
		OK:         r.OK,
		Detail:     r.Detail,
		Latency:    r.Latency,
		Role:       r.Role,
		LagBytes:   r.LagBytes,
		LagSeconds: r.LagSeconds,
		Streaming:  r.Streaming,
		WAL:        r.WAL,
		Replayed:   r.Replayed,
		Timeline:   r.Timeline,
	}
}

func sameTarget(a, b *entry) bool {
	return reflect.DeepEqual(a.spec, b.spec) && sameChecker(a.custom, b.custom)
}

// comparableChecker reports whether c can key a map: a pointer, such as
// a Shared probe, and not nil.
func comparableChecker(c Checker) bool {
	return c != nil && reflect.TypeOf(c).Comparable()
}

func sameChecker(a, b Checker) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	ta := reflect.TypeOf(a)
	if ta != reflect.TypeOf(b) || !ta.Comparable() {
		return false
	}
	return a == b
}

// largestGapMidpoint returns the middle of the largest gap between the
// sorted phases in [0, 1), wrapping around; 0 when there are none.
func largestGapMidpoint(phases []float64) float64 {
	if len(phases) == 0 {
		return 0
	}
	bestStart, bestGap := phases[len(phases)-1], phases[0]+1-phases[len(phases)-1]
	for i := 0; i+1 < len(phases); i++ {
		if g := phases[i+1] - phases[i]; g > bestGap {
			bestStart, bestGap = phases[i], g
		}
	}
	p := bestStart + bestGap/2
	if p >= 1 {
		p--
	}
	return p
}

// alignedAtOrAfter returns the first time at or after now that is base
// plus a whole number of intervals.
func alignedAtOrAfter(base time.Time, interval time.Duration, now time.Time) time.Time {
	if !base.Before(now) {
		return base
	}
	k := (now.Sub(base) + interval - 1) / interval
	return base.Add(k * interval)
}

// entryQueue is a min-heap of entries by next run.
type entryQueue []*entry

func (q entryQueue) Len() int { return len(q) }
func (q entryQueue) Less(i, j int) bool {
	if c := q[i].next.Compare(q[j].next); c != 0 {
		return c < 0
	}
	return compareKeys(q[i].key, q[j].key) < 0
}
func (q entryQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index = i
	q[j].index = j
}
func (q *entryQueue) Push(x any) {
	e := x.(*entry)
	e.index = len(*q)
	*q = append(*q, e)
}
func (q *entryQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*q = old[:len(old)-1]
	return e
}
