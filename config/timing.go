package config

import (
	"fmt"
	"strings"
	"time"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// LeaseCheckEvery is how often a witness at a group's active site checks
// its fence lease. The cluster runs its lease check at this period; the
// margin counts one period, the most a lapsed lease can go unnoticed.
const LeaseCheckEvery = 250 * time.Millisecond

// LeaseRoundTimeout bounds one round of lease renewals with the voters. A
// witness that starts judges its lease once its first round ends, so a
// restart can delay a fence by this much; the margin counts it.
const LeaseRoundTimeout = 500 * time.Millisecond

// The bound on how far two witnesses' monotonic clocks may drift apart
// while one waits out the other's lease: ClockDriftPercent of fence_after,
// and never less than MinClockDrift.
const (
	ClockDriftPercent = 1
	MinClockDrift     = 10 * time.Millisecond
)

// DefaultFenceTimeout is the longest time a local demotion may take by
// default (less when failover_after or fence_after leave no room for it,
// see FenceTimeout).
const DefaultFenceTimeout = time.Second

// Timing is the node configuration that a group's timing depends on. A zero
// field means its default: LeaderLease that of Default(), LeaseCheck
// LeaseCheckEvery.
type Timing struct {
	// LeaderLease is raft.leader_lease_timeout: how long a leader that has
	// lost its quorum still counts itself the leader.
	LeaderLease time.Duration
	// LeaseCheck is the period of the fence lease check.
	LeaseCheck time.Duration
	// Watchdog is the node's watchdog timeout; zero when it feeds none.
	Watchdog time.Duration
}

// DefaultTiming is the timing of a node with the default configuration,
// what ParseGroups validates against.
func DefaultTiming() Timing {
	return Timing{LeaderLease: Default().Raft.LeaderLeaseTimeout.D(), LeaseCheck: LeaseCheckEvery}
}

// Timing returns the node's timing, to validate groups against
// (ParseGroupsWith) and to compute their margins (Timing.Margin).
func (n *Node) Timing() Timing {
	t := Timing{LeaderLease: n.Raft.LeaderLeaseTimeout.D(), LeaseCheck: LeaseCheckEvery}
	if n.Watchdog.Enabled() {
		t.Watchdog = n.Watchdog.Timeout.D()
	}
	return t
}

func (t Timing) orDefaults() Timing {
	d := DefaultTiming()
	if t.LeaderLease <= 0 {
		t.LeaderLease = d.LeaderLease
	}
	if t.LeaseCheck <= 0 {
		t.LeaseCheck = d.LeaseCheck
	}
	return t
}

// Margin is the least time that must separate fence_after from
// failover_after for a group, term by term: the isolated active site must
// have fenced itself before the rest of the cluster may act on the lapse of
// its lease.
type Margin struct {
	// ProbeInterval and ProbeTimeout are the group's largest: a failure is
	// dated from the start of the first failing check.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	// LeaderLease: a leader cut off from its quorum acts as leader this
	// long.
	LeaderLease time.Duration
	// LeaseCheck: a lapsed fence lease is noticed within one check period.
	LeaseCheck time.Duration
	// LeaseRound: a witness that (re)starts judges its lease only after its
	// first renewal round.
	LeaseRound time.Duration
	// FenceLimit is how long the local demotion may take (fence_timeout).
	FenceLimit time.Duration
	// ClockDrift bounds the rate difference between the clock of the
	// fencing witness and the clocks of those that wait for it.
	ClockDrift time.Duration
}

// Total is the sum of the terms.
func (m Margin) Total() time.Duration {
	return m.ProbeInterval + m.ProbeTimeout + m.LeaderLease + m.LeaseCheck + m.LeaseRound + m.FenceLimit + m.ClockDrift
}

// String names each term and its value: "probe interval 1s + probe timeout
// 800ms + leader lease 500ms + lease check 250ms + fence limit 2s + clock
// drift 50ms".
func (m Margin) String() string {
	terms := []struct {
		name string
		d    time.Duration
	}{
		{"probe interval", m.ProbeInterval}, {"probe timeout", m.ProbeTimeout}, {"leader lease", m.LeaderLease},
		{"lease check", m.LeaseCheck}, {"lease round", m.LeaseRound}, {"fence limit", m.FenceLimit}, {"clock drift", m.ClockDrift},
	}
	parts := make([]string, len(terms))
	for i, tm := range terms {
		parts[i] = tm.name + " " + tm.d.String()
	}
	return strings.Join(parts, " + ")
}

// ClockDrift is the clock-rate allowance for a wait of fence_after:
// ClockDriftPercent of it, at least MinClockDrift,
// rounded up to the millisecond.
func ClockDrift(fenceAfter time.Duration) time.Duration {
	d := fenceAfter * ClockDriftPercent / 100
	if r := d % time.Millisecond; r != 0 {
		d += time.Millisecond - r
	}
	return max(MinClockDrift, d)
}

// Margin returns the margin of a validated group spec under this timing.
// It is the same margin that validation required of the spec.
func (t Timing) Margin(spec *witnessv1.GroupSpec) Margin {
	var interval, timeout time.Duration
	for _, s := range spec.GetSites() {
		for _, p := range s.GetProbes() {
			interval = max(interval, time.Duration(p.GetIntervalMs())*time.Millisecond)
			timeout = max(timeout, time.Duration(p.GetTimeoutMs())*time.Millisecond)
		}
	}
	po := spec.GetPolicy()
	fenceAfter := time.Duration(po.GetFenceAfterMs()) * time.Millisecond
	return t.margin(interval, timeout, fenceAfter, FenceTimeout(spec))
}

func (t Timing) margin(interval, timeout, fenceAfter, fenceLimit time.Duration) Margin {
	t = t.orDefaults()
	return Margin{
		ProbeInterval: interval, ProbeTimeout: timeout,
		LeaderLease: t.LeaderLease, LeaseCheck: t.LeaseCheck, LeaseRound: LeaseRoundTimeout,
		FenceLimit: fenceLimit, ClockDrift: ClockDrift(fenceAfter),
	}
}

// FenceHold is how long, on its own monotonic clock, a voter or the leader
// waits after it last acknowledged the fence lease of a group's active site
// before it may count that site as fenced: fence_after + Margin(spec). By
// then the site's own witness has seen its lease lapse, noticed it, and
// finished (or killed) its local demotion, even if its clock ran slow.
func (t Timing) FenceHold(spec *witnessv1.GroupSpec) time.Duration {
	return time.Duration(spec.GetPolicy().GetFenceAfterMs())*time.Millisecond + t.Margin(spec).Total()
}

// FenceTimeout is the group's fence_timeout: how long the local demotion of
// its database may take before the postmaster is killed. A spec without it
// (applied before the key existed) gets the default, derived the same way
// on every witness: DefaultFenceTimeout, at most a fifth of failover_after
// and half of fence_after.
func FenceTimeout(spec *witnessv1.GroupSpec) time.Duration {
	po := spec.GetPolicy()
	if ms := po.GetFenceTimeoutMs(); ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	failoverAfter := time.Duration(po.GetFailoverAfterMs()) * time.Millisecond
	fenceAfter := time.Duration(po.GetFenceAfterMs()) * time.Millisecond
	return defaultFenceTimeout(failoverAfter, fenceAfter)
}

func defaultFenceTimeout(failoverAfter, fenceAfter time.Duration) time.Duration {
	d := min(DefaultFenceTimeout, failoverAfter/5)
	if fenceAfter > 0 {
		d = min(d, fenceAfter/2)
	}
	return d.Truncate(time.Millisecond)
}

// MarginError is the reason a fence_after is refused: the gap it leaves
// before failover_after is below the margin. It wraps ErrConflict.
type MarginError struct {
	FenceAfter    time.Duration
	FailoverAfter time.Duration
	Margin        Margin
}

func (e *MarginError) Error() string {
	return fmt.Sprintf("%s leaves %s before failover_after %s; needs ≥ %s (%s)",
		e.FenceAfter, e.FailoverAfter-e.FenceAfter, e.FailoverAfter, e.Margin.Total(), e.Margin)
}

func (e *MarginError) Unwrap() error { return ErrConflict }

// WatchdogFit is the least fence_after a group needs on a witness that
// feeds a watchdog, term by term. The witness feeds the device only while
// its lease has more than the watchdog timeout left, so that an unfed
// device fires before the lease runs out, and so before any quorum of
// voters may report the site's lease expired; a lease renewed every lease
// check, each round taking up to the lease round, must leave that room.
type WatchdogFit struct {
	Watchdog   time.Duration
	LeaseCheck time.Duration
	LeaseRound time.Duration
}

// Total is the sum of the terms.
func (w WatchdogFit) Total() time.Duration { return w.Watchdog + w.LeaseCheck + w.LeaseRound }

func (w WatchdogFit) String() string {
	return fmt.Sprintf("watchdog timeout %s + lease check %s + lease round %s", w.Watchdog, w.LeaseCheck, w.LeaseRound)
}

// WatchdogFit returns the fit under this timing; its Total is zero when
// the node feeds no watchdog.
func (t Timing) WatchdogFit() WatchdogFit {
	if t.Watchdog <= 0 {
		return WatchdogFit{}
	}
	t = t.orDefaults()
	return WatchdogFit{Watchdog: t.Watchdog, LeaseCheck: t.LeaseCheck, LeaseRound: LeaseRoundTimeout}
}

// WatchdogError is the reason a fence_after is refused on a witness with a
// watchdog: it is shorter than the watchdog timeout plus the lease check
// and round. It wraps ErrConflict.
type WatchdogError struct {
	FenceAfter time.Duration
	Fit        WatchdogFit
}

func (e *WatchdogError) Error() string {
	return fmt.Sprintf("%s is too short for this witness's watchdog; needs ≥ %s (%s) so the watchdog fires before the lease runs out",
		e.FenceAfter, e.Fit.Total(), e.Fit)
}

func (e *WatchdogError) Unwrap() error { return ErrConflict }
