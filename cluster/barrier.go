package cluster

import (
	"context"
	"log/slog"
	"time"
)

// Backoff between a new leader's barrier attempts.
const (
	barrierRetryMin = 100 * time.Millisecond
	barrierRetryMax = 5 * time.Second
)

// barrier waits until this node, as leader, has applied every entry
// committed before its term, or timeout passes.
func (n *Node) barrier(timeout time.Duration) error {
	if n.opts.barrier != nil {
		return n.opts.barrier(timeout)
	}
	return n.raft.Barrier(timeout).Error()
}

// awaitBarrier runs barrier until it succeeds, waiting between attempts
// (through after) from barrierRetryMin, doubling up to barrierRetryMax.
// It gives up, reporting false, once ctx ends: leadership is lost or the
// node closes. A leader that stopped at a failed barrier would run no
// policy and no reconciler for the rest of its term.
func awaitBarrier(ctx context.Context, barrier func() error, after func(time.Duration) <-chan time.Time, log *slog.Logger) bool {
	wait := barrierRetryMin
	for attempt := 1; ctx.Err() == nil; attempt++ {
		err := barrier()
		if err == nil {
			return true
		}
		log.Warn("leader barrier failed; retrying", "attempt", attempt, "in", wait, keyErr, err)
		select {
		case <-ctx.Done():
		case <-after(wait):
		}
		wait = min(2*wait, barrierRetryMax)
	}
	return false
}
