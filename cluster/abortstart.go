package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// The leader's promote step reaches a database over SQL, and SQL cannot
// start a stopped one. Where this witness demoted its site's database and
// the group is then meant to take writes here again, the witness starts it
// as a primary itself, in two cases:
//
//   - A switchover given up: its first phase may demote the old primary
//     (when its SQL fence failed), and the abort leaves the group at that
//     site at a new token. Nothing was promoted anywhere under the
//     switchover (the target is promoted only at the move's token, which
//     an abort rules out), so the old primary is still the group's one
//     primary. Left stopped, it would be failed over to a target that may
//     lack what it acknowledged.
//   - A group created (or re-created) here: once the leader's promote step
//     of the creation's token was allowed (every creation fence of the
//     other sites held), the start is that promotion.
//
// A database stopped here before a move *to* this site is not started
// this way: it may be an old primary whose history another site's writes
// left behind, which only reinstate may bring back (as a standby).

// abortStartTimeout bounds one start of a demoted primary:
// the linearizable read, pg_controldata and the start until it accepts
// connections.
const abortStartTimeout = 30 * time.Second

// startsHere says why this site's demoted database of g is to be started
// as a primary at g's current token ("" when it is not): the token gave up
// a switchover and left the group here, or created the group here and the
// leader's promote step at it was allowed. Either way nothing is pending.
func startsHere(g *witnessv1.Group, site string) string {
	st := g.GetStatus()
	if st.GetActiveSite() != site || st.GetPending() != nil {
		return ""
	}
	h := st.GetHistory()
	if len(h) == 0 || h[len(h)-1].GetToken() != st.GetToken() {
		return ""
	}
	last := h[len(h)-1]
	switch {
	case last.GetPhase() == fsm.PhaseAbort:
		return "switchover given up"
	case last.GetPhase() == "" && last.GetFromSite() == "" && promoteAllowed(g):
		return "group created here"
	}
	return ""
}

// promoteAllowed reports whether the leader ran the promote step of g's
// current token: its result carries the rule that allowed it, whether or
// not it reached the database.
func promoteAllowed(g *witnessv1.Group) bool {
	st := g.GetStatus()
	for _, r := range st.GetSteps() {
		if r.GetToken() == st.GetToken() && r.GetStep() == actions.StepPromote && r.GetRule() != "" {
			return true
		}
	}
	return false
}

// maybeStartDemoted starts, in the background, startDemoted for a
// group at token unless it is done at that token or under way; the lease
// loop asks at every check while it holds the lease, and a failure is
// logged once per reason and asked again.
func (n *Node) maybeStartDemoted(group string, token uint64) {
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
		done, err := n.startDemoted(group, token)
		if done {
			n.abortStarted.Store(group, token)
			return
		}
		if err != nil {
			why := err.Error()
			if last, _ := n.abortStartErr.Swap(group, why); last != why {
				n.log.Warn("this site's demoted database is the group's primary again, but not started yet", "group", group, "token", token, keyErr, err)
			}
		}
	}()
}

// startDemoted starts this site's demoted database of group as a primary,
// once a linearizable read shows the group still at this site at token,
// for a reason of startsHere. It answers done when there is nothing
// more to do at this token: the database was started, or it is not a
// demoted primary (running, or a standby), or the group moved on.
func (n *Node) startDemoted(group string, token uint64) (done bool, err error) {
	// Not beside a demotion the leader asked of this witness.
	n.localDB.Lock()
	defer n.localDB.Unlock()
	ctx, cancel := context.WithTimeout(n.ctx, abortStartTimeout)
	defer cancel()
	g, ok := n.fsm.Group(group)
	if !ok {
		return true, nil
	}
	stopped, err := n.localDatabase(g).StoppedPrimary(ctx)
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
	why := ""
	if ok && g.GetStatus().GetToken() == token {
		why = startsHere(g, n.cfg.Site)
	}
	if why == "" {
		return true, nil
	}
	if since, held := n.lease.since(n.clock.Now()); !held || (fenceAfter(g) > 0 && since >= fenceAfter(g)/2) {
		return false, fmt.Errorf("lease not held (%s since the last grant)", since.Round(time.Millisecond))
	}
	if err := n.localDatabase(g).Unfence(ctx, token); err != nil {
		return false, fmt.Errorf("start the demoted database as a primary: %w", err)
	}
	n.log.Warn("started this site's demoted database again as the group's primary (linearizable read)",
		"group", group, "token", token, "why", why)
	return true, nil
}

// fenceAfter is the group's fence_after.
func fenceAfter(g *witnessv1.Group) time.Duration {
	return time.Duration(g.GetSpec().GetPolicy().GetFenceAfterMs()) * time.Millisecond
}
