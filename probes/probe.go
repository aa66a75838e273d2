package probes

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Result is the outcome of one check.
type Result struct {
	OK bool
	// Detail says why, in a few words: "status 503", "timeout after 2s",
	// "role standby, want primary".
	Detail  string
	Latency time.Duration

	// Role is set by postgres probes only: RolePrimary or RoleStandby.
	// The fields below it are meaningful only when Role is set.
	Role string
	// LagBytes is, on a standby, the WAL received but not yet replayed; on
	// a primary, the largest replay lag among its standbys as the primary
	// sees it (pg_stat_replication). Negative when unknown.
	LagBytes int64
	// LagSeconds is, on a standby, the age of the last replayed transaction
	// (0 when everything received is replayed); on a primary, the largest
	// replay_lag among its standbys. Negative when unknown.
	LagSeconds float64
	// Streaming is, on a standby, whether its WAL receiver is streaming
	// from a primary; on a primary, whether at least one standby streams.
	Streaming bool
	// WAL is the WAL position the server holds, in bytes from 0/0: on a
	// primary pg_current_wal_lsn(), on a standby the furthest of what it
	// received and what it replayed. Replayed is, on a standby, what it has
	// replayed (on a primary, WAL). Timeline is the timeline it writes or
	// follows. Zero when unknown.
	WAL, Replayed uint64
	Timeline      uint32
}

// Checker runs one check. It must return soon after ctx is done; a result
// that comes back after the deadline counts as a timeout.
type Checker interface {
	Check(ctx context.Context) Result
}

// CheckerFunc adapts a function to [Checker].
type CheckerFunc func(ctx context.Context) Result

// Check calls f(ctx).
func (f CheckerFunc) Check(ctx context.Context) Result { return f(ctx) }

// Probe is a [Checker] built from a [Spec] by [New].
type Probe struct {
	spec  Spec
	check func(ctx context.Context) Result
}

// New validates spec and builds its probe. It reads the HTTP CA file, if
// any, once, here.
func New(spec Spec) (*Probe, error) {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("probe spec: %w", err)
	}
	p := &Probe{spec: spec}
	switch spec.Kind {
	case KindHTTP:
		c, err := newHTTPCheck(*spec.HTTP)
		if err != nil {
			return nil, err
		}
		p.check = c
	case KindTCP:
		p.check = newTCPCheck(*spec.TCP)
	case KindDNS:
		p.check = newDNSCheck(*spec.DNS)
	case KindPostgres:
		c, err := newPostgresCheck(*spec.Postgres)
		if err != nil {
			return nil, err
		}
		p.check = c
	case KindExec:
		p.check = newExecCheck(*spec.Exec)
	}
	return p, nil
}

// Spec returns the probe's spec with defaults applied.
func (p *Probe) Spec() Spec { return p.spec }

// Check runs the probe once, cut at the spec's timeout.
func (p *Probe) Check(ctx context.Context) Result {
	return runChecker(ctx, CheckerFunc(p.check), p.spec.Timeout)
}

// runChecker runs c under timeout, measures its latency and turns a check
// that ran out of time into a failing result that says so.
func runChecker(ctx context.Context, c Checker, timeout time.Duration) Result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	deadline, _ := ctx.Deadline()
	r := c.Check(ctx)
	r.Latency = time.Since(start)
	// A check may see its I/O deadline (set from ctx) a moment before the
	// context itself reports it.
	expired := !r.OK && !time.Now().Before(deadline)
	if expired || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		r.OK = false
		r.Detail = "timeout after " + timeout.String()
	} else if ctx.Err() != nil && r.OK {
		r.OK = false
		r.Detail = "canceled"
	}
	return r
}
