package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// A switchover's first phase may demote the old primary (when its SQL
// fence failed); when the switchover is then given up, the group stays at
// that site at a new token whose plan promotes there, and the leader's
// promote cannot reach a stopped database. The witness at the site starts
// it again as a primary: nothing was promoted anywhere under the
// switchover (the target is promoted only at the move's token, which an
// abort rules out), so the old primary is still the group's one primary.
// Left stopped, it would be failed over to a target that may lack what it
// acknowledged.

// StoppedPrimaryReader is a LocalFencer that can tell a demoted primary
// (stopped, standby.signal, not in recovery when it stopped) from any
// other stopped node.
type StoppedPrimaryReader interface {
	StoppedPrimary(ctx context.Context, g *witnessv1.Group) (bool, error)
}

// StoppedPrimary reads the data_dir of the group's database here.
func (f pgFencer) StoppedPrimary(ctx context.Context, g *witnessv1.Group) (bool, error) {
	d := f.demoter(g)
	if d == nil {
		return false, nil
	}
	return d.StoppedPrimary(ctx)
}

// abortStartTimeout bounds one start of a demoted primary after an abort:
// the linearizable read, pg_controldata and the start until it accepts
// connections.
const abortStartTimeout = 30 * time.Second

// abortedHere reports whether g's current token gave up a switchover and
// left the group active at site, with nothing pending.
func abortedHere(g *witnessv1.Group, site string) bool {
	st := g.GetStatus()
	if st.GetActiveSite() != site || st.GetPending() != nil {
		return false
	}
	h := st.GetHistory()
	return len(h) > 0 && h[len(h)-1].GetToken() == st.GetToken() && h[len(h)-1].GetPhase() == fsm.PhaseAbort
}

// maybeStartAfterAbort starts, in the background, startAfterAbort for a
// group at token unless it is done at that token or under way; the lease
// loop asks at every check while it holds the lease, and a failure is
// logged once per reason and asked again.
func (n *Node) maybeStartAfterAbort(fencer LocalFencer, group, dsn string, token uint64) {
	if v, ok := n.abortStarted.Load(group); ok && v.(uint64) == token {
		return
	}
	key := fmt.Sprintf("abort-start/%s", group)
	if !n.hookRuns.start(key) {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.hookRuns.done(key)
		done, err := n.startAfterAbort(fencer, group, dsn, token)
		if done {
			n.abortStarted.Store(group, token)
			return
		}
		if err != nil {
			why := err.Error()
			if last, _ := n.abortStartErr.Swap(group, why); last != why {
				n.log.Warn("switchover given up with this site's database demoted: not started again yet", "group", group, "token", token, keyErr, err)
			}
		}
	}()
}

// startAfterAbort starts this site's demoted database of group as a
// primary, once a linearizable read shows the group still at this site at
// token, at a given-up switchover. It answers done when there is nothing
// more to do at this token: the database was started, or it is not a
// demoted primary (running, or a standby), or the group moved on.
func (n *Node) startAfterAbort(fencer LocalFencer, group, dsn string, token uint64) (done bool, err error) {
	sp, ok := fencer.(StoppedPrimaryReader)
	if !ok {
		return true, nil
	}
	// Not beside a demotion the leader asked of this witness.
	n.localDB.Lock()
	defer n.localDB.Unlock()
	ctx, cancel := context.WithTimeout(n.ctx, abortStartTimeout)
	defer cancel()
	g, ok := n.fsm.Group(group)
	if !ok {
		return true, nil
	}
	stopped, err := sp.StoppedPrimary(ctx, g)
	if err != nil {
		return false, fmt.Errorf("is the database a demoted primary: %w", err)
	}
	if !stopped {
		return true, nil
	}
	if err := n.readIndex(ctx); err != nil {
		return false, fmt.Errorf("no linearizable read of the group yet: %w", err)
	}
	g, ok = n.fsm.Group(group)
	if !ok || g.GetStatus().GetToken() != token || !abortedHere(g, n.cfg.Site) {
		return true, nil
	}
	if since, held := n.lease.since(n.clock.Now()); !held || (fenceAfter(g) > 0 && since >= fenceAfter(g)/2) {
		return false, fmt.Errorf("lease not held (%s since the last grant)", since.Round(time.Millisecond))
	}
	if err := fencer.Unfence(ctx, g, dsn); err != nil {
		return false, fmt.Errorf("start the demoted database as a primary: %w", err)
	}
	n.log.Warn("switchover given up: started this site's demoted database again as the group's primary (linearizable read)",
		"group", group, "token", token)
	return true, nil
}

// fenceAfter is the group's fence_after.
func fenceAfter(g *witnessv1.Group) time.Duration {
	return time.Duration(g.GetSpec().GetPolicy().GetFenceAfterMs()) * time.Millisecond
}
