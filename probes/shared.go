package probes

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sitewitness/witness/clock"
)

// Shared runs each distinct probe once for all the targets that name it:
// a thousand groups whose sites are behind the same load balancer probe
// it once per interval, not a thousand times. Two targets share a probe
// when their specs are identical but for the thresholds (same kind, target,
// parameters, interval and timeout); each target keeps its own thresholds
// and state. The Scheduler starts targets that share a Checker at the same
// moment of their interval, so one check feeds them all at once.
//
// Its zero value is ready; it is safe for concurrent use.
type Shared struct {
	// Clock tells how old a result is; nil means real time.
	Clock clock.Clock

	mu     sync.Mutex
	checks map[string]*sharedCheck
}

// Targets returns targets with every target's Checker set to the shared
// probe of its spec, and forgets the probes no target names any more.
// Targets that already have a Checker are left as they are.
func (s *Shared) Targets(targets []Target) ([]Target, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.checks == nil {
		s.checks = map[string]*sharedCheck{}
	}
	used := make(map[string]bool, len(s.checks))
	out := make([]Target, len(targets))
	for i, t := range targets {
		out[i] = t
		if t.Checker != nil {
			continue
		}
		spec := t.Spec.WithDefaults()
		key := sharedKey(spec)
		c := s.checks[key]
		if c == nil {
			p, err := New(spec)
			if err != nil {
				return nil, &TargetError{Group: t.Group, Site: t.Site, Name: t.Name, Err: err}
			}
			c = &sharedCheck{probe: p, fresh: spec.Interval / 2, clock: clock.Or(s.Clock)}
			s.checks[key] = c
		}
		used[key] = true
		out[i].Checker = c
	}
	for key := range s.checks {
		if !used[key] {
			delete(s.checks, key)
		}
	}
	return out, nil
}

// Len is how many distinct probes the shared targets run.
func (s *Shared) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.checks)
}

// sharedKey identifies a probe: its spec without the thresholds, which
// belong to each target.
func sharedKey(spec Spec) string {
	spec.FailThreshold, spec.RecoverThreshold = 0, 0
	return fmt.Sprintf("%s|%s|%s|%+v|%+v|%+v|%+v|%+v", spec.Kind, spec.Interval, spec.Timeout, deref(spec.HTTP), deref(spec.TCP), deref(spec.DNS), deref(spec.Postgres), deref(spec.Exec))
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// sharedCheck is one probe run for many targets: a check asked while one
// runs waits for it, and one asked within half an interval of the last
// takes its result.
type sharedCheck struct {
	probe *Probe
	fresh time.Duration
	clock clock.Clock

	mu      sync.Mutex
	running chan struct{} // closed when the check in flight ends
	last    Result
	at      time.Time // when the last check started; zero before
}

// Check runs the probe, or takes the result of the run in flight or of a
// recent one.
func (c *sharedCheck) Check(ctx context.Context) Result {
	c.mu.Lock()
	if ch := c.running; ch != nil {
		c.mu.Unlock()
		select {
		case <-ch:
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.last
		case <-ctx.Done():
			return Result{Detail: "canceled"}
		}
	}
	now := c.clock.Now()
	if !c.at.IsZero() && now.Sub(c.at) < c.fresh {
		defer c.mu.Unlock()
		return c.last
	}
	ch := make(chan struct{})
	c.running = ch
	c.mu.Unlock()
	r := c.probe.Check(ctx)
	c.mu.Lock()
	c.last, c.at, c.running = r, now, nil
	c.mu.Unlock()
	close(ch)
	return r
}
