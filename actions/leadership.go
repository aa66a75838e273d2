package actions

import (
	"context"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// leaderCheck shares one leadership check among the steps that ask for
// one while it is under way: a site failover of thousands of groups
// starts its steps after a few checks, not one each. A step that joins a
// check counts its leadership as verified when that check began, which is
// earlier than it asked; the leader lease is measured from then, so
// joining never stretches it. A check that began longer ago than fresh
// is not joined (the step would have little of its lease left): the step
// starts a check of its own.
type leaderCheck struct {
	mu  sync.Mutex // held only to read or swap cur, never across a check
	cur *check
}

type check struct {
	began time.Time
	done  chan struct{} // closed once err is set
	err   error
}

// verify returns when the leadership check it joined or began ended:
// the time that check began, and its error.
func (c *leaderCheck) verify(verify func() error, now func() time.Time, fresh time.Duration) (time.Time, error) {
	c.mu.Lock()
	cur := c.cur
	if cur != nil {
		select {
		case <-cur.done:
			cur = nil // ended: a step that asks now needs a check begun now
		default:
			if now().Sub(cur.began) > fresh {
				cur = nil
			}
		}
	}
	if cur != nil {
		c.mu.Unlock()
		<-cur.done
		return cur.began, cur.err
	}
	cur = &check{began: now(), done: make(chan struct{})}
	c.cur = cur
	c.mu.Unlock()
	cur.err = verify()
	close(cur.done)
	return cur.began, cur.err
}

// verifyLeader checks this node's leadership, sharing a check under way
// (leaderCheck), and returns when the check began.
func (r *Reconciler) verifyLeader() (time.Time, error) {
	return r.checks.verify(r.Leader.VerifyLeader, r.now, r.leaderLease()/2)
}

// stepsPerEntry bounds the step results committed in one entry.
const stepsPerEntry = 1024

// stepLog commits step results through Raft in few entries, like a
// group commit: a result handed in while an entry is being committed
// waits for the next one, which carries every result handed in meanwhile
// (fsm.RecordStepsCommand). A lone result goes out at once, in an entry
// of its own. Each group's result is refused or applied on its own: a
// stale token refuses that group's result only.
//
// Its loop runs with the reconciler (Run), so it ends with leadership; a
// result not yet committed then is not recorded, as a step that ended
// after its witness stopped leading never is.
type stepLog struct {
	leader Leader
	wake   chan struct{} // one slot: results are queued

	mu    sync.Mutex
	queue []*pendingStep
}

type pendingStep struct {
	rec  *witnessv1.RecordStepCommand
	done chan error // one slot
}

func newStepLog(l Leader) *stepLog {
	return &stepLog{leader: l, wake: make(chan struct{}, 1)}
}

// record commits one step result of group and returns once it is
// committed: nil, or why it was not (not the leader, a stale token).
func (s *stepLog) record(ctx context.Context, group string, res *witnessv1.StepResult) error {
	p := &pendingStep{rec: &witnessv1.RecordStepCommand{Group: group, Result: res}, done: make(chan error, 1)}
	s.mu.Lock()
	s.queue = append(s.queue, p)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run commits the queued results until ctx ends.
func (s *stepLog) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			s.drop(ctx.Err())
			return
		case <-s.wake:
		}
		for {
			s.mu.Lock()
			n := min(len(s.queue), stepsPerEntry)
			batch := s.queue[:n:n]
			s.queue = s.queue[n:]
			s.mu.Unlock()
			if n == 0 {
				break
			}
			if err := ctx.Err(); err != nil {
				// Leadership ended: what is queued is not recorded.
				deliver(batch, err)
				continue
			}
			s.commit(ctx, batch)
		}
	}
}

// commit applies one entry of results and tells each of them its fate.
func (s *stepLog) commit(ctx context.Context, batch []*pendingStep) {
	var cmd proto.Message = batch[0].rec
	if len(batch) > 1 {
		all := &witnessv1.RecordStepsCommand{Records: make([]*witnessv1.RecordStepCommand, len(batch))}
		for i, p := range batch {
			all.Records[i] = p.rec
		}
		cmd = all
	}
	res, err := s.leader.Apply(ctx, cmd)
	if err != nil {
		deliver(batch, err)
		return
	}
	for _, p := range batch {
		if len(batch) == 1 {
			p.done <- res.Err
			continue
		}
		p.done <- res.Refused[p.rec.GetGroup()]
	}
}

// drop refuses every queued result with err.
func (s *stepLog) drop(err error) {
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	s.mu.Unlock()
	deliver(q, err)
}

func deliver(batch []*pendingStep, err error) {
	for _, p := range batch {
		p.done <- err
	}
}

// record commits one step result of a group: through the step log while
// Run runs, else in an entry of its own.
func (r *Reconciler) record(ctx context.Context, group string, res *witnessv1.StepResult) error {
	r.mu.Lock()
	log := r.steps
	r.mu.Unlock()
	if log != nil {
		return log.record(ctx, group, res)
	}
	out, err := r.Leader.Apply(ctx, &witnessv1.RecordStepCommand{Group: group, Result: res})
	if err == nil {
		err = out.Err
	}
	return err
}
