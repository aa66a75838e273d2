package cluster

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sitewitness/witness/fsm"
	"github.com/sitewitness/witness/policy"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// decideEvery is how often the leader evaluates the policy at the least.
const decideEvery = 250 * time.Millisecond

// decide runs the policy on every tick while this node leads and commits
// what it proposes. When a site is failing but not yet for failover_after,
// the policy says when it will be, and the next evaluation happens then
// rather than at the next tick, so a failover is not late by up to a tick.
// A proposal carries the token it expects to replace; a lost
// compare-and-swap is normal (someone else moved the group first) and is
// logged, never retried blindly: the next evaluation decides afresh.
func (n *Node) decide(ctx context.Context) {
	t := n.clock.NewTimer(decideEvery)
	defer t.Stop()
	var hold siteHold
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		now := n.clock.Now()
		out := n.decisions(now)
		n.metrics.decided(out)
		ready, held := hold.release(now, out)
		for _, p := range ready {
			n.propose(ctx, p)
		}
		for _, g := range out.Rearm {
			n.commit(ctx, "re-arm", &witnessv1.SetArmedCommand{Group: g, Armed: true, AtUnixNano: n.clock.Now().UnixNano(), By: n.cfg.Name + " (rearm: auto)"})
		}
		n.recordProposals(ctx, out)
		wake := out.Wake
		if at := n.startScheduled(ctx, n.clock.Now()); !at.IsZero() && (wake.IsZero() || at.Before(wake)) {
			wake = at
		}
		if !held.IsZero() && (wake.IsZero() || held.Before(wake)) {
			wake = held
		}
		t.Reset(nextDecision(now, n.clock.Now(), wake))
	}
}

// nextDecision is how long to wait, at now, before evaluating again after
// an evaluation that started at began: a tick after began, or just past
// wake when that comes first.
func nextDecision(began, now, wake time.Time) time.Duration {
	next := began.Add(decideEvery)
	if !wake.IsZero() && wake.Before(next) {
		next = wake.Add(time.Millisecond)
	}
	return max(next.Sub(now), time.Millisecond)
}

func (n *Node) propose(ctx context.Context, p *witnessv1.TransitionCommand) {
	p.By = n.cfg.Name
	res, err := n.Apply(ctx, p)
	if err != nil {
		n.log.Warn("failover not committed", keyErr, err)
		return
	}
	if res.Err != nil {
		if errors.Is(res.Err, fsm.ErrStaleToken) {
			n.log.Info("failover lost the token race; deciding again next tick", keyErr, res.Err)
		} else {
			n.log.Warn("failover refused", keyErr, res.Err)
		}
		return
	}
	for _, m := range p.GetMoves() {
		if err, refused := res.Refused[m.GetGroup()]; refused {
			n.log.Info("failover of one group refused; the others of its site committed", "group", m.GetGroup(), keyErr, err)
			continue
		}
		n.log.Warn("failover committed", "group", m.GetGroup(), "to", m.GetToSite(), "token", res.Tokens[m.GetGroup()], "reason", p.GetReason())
	}
}

// recordProposals keeps each group's recorded proposal (observe and manual
// modes) in step with the decision, writing only when it changes.
func (n *Node) recordProposals(ctx context.Context, out policy.Output) {
	for _, g := range n.fsm.Groups() {
		name := g.GetSpec().GetName()
		d := out.Decisions[name]
		var want *witnessv1.Proposal
		if d.Action == policy.ActionWouldFailover || d.Action == policy.ActionPending {
			want = &witnessv1.Proposal{Action: d.Action.String(), FromSite: d.From, ToSite: d.To, ExpectedToken: d.ExpectedToken, Reason: d.Reason,
				FromPrimary: d.Primary.Proto(d.From), ToNode: d.ToNode}
		}
		have := g.GetStatus().GetProposal()
		if want == nil && have == nil {
			continue
		}
		if want != nil && have != nil && have.GetAction() == want.GetAction() && have.GetToSite() == want.GetToSite() && have.GetExpectedToken() == want.GetExpectedToken() {
			continue
		}
		if want != nil {
			want.AtUnixNano, want.By = n.clock.Now().UnixNano(), n.cfg.Name
			n.log.Warn("policy proposes a move it will not make itself", "group", name, "action", want.GetAction(), "to", want.GetToSite(), "reason", want.GetReason())
		}
		n.commit(ctx, "record proposal", &witnessv1.RecordProposalCommand{Group: name, Proposal: want})
	}
}

// commit applies a command and logs a refusal.
func (n *Node) commit(ctx context.Context, what string, cmd proto.Message) bool {
	res, err := n.Apply(ctx, cmd)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		n.log.Warn(what+" not committed", keyErr, err)
		return false
	}
	return true
}

// explain is the policy's view of one group from this witness.
func (n *Node) explain(group string) *witnessv1.Explanation {
	now := n.clock.Now()
	d, ok := n.evaluate(now).Decisions[group]
	if !ok {
		return nil
	}
	e := &witnessv1.Explanation{Action: d.Action.String(), Reason: d.Reason, FromSite: d.From, ToSite: d.To, AtUnixNano: now.UnixNano(), EvaluatedBy: n.cfg.Name,
		Targets: int32(d.Targets), NoTarget: d.NoTarget}
	for _, s := range d.Sites {
		sv := &witnessv1.SiteView{Site: s.Site, Active: s.Active, Database: s.Database, Role: s.Role, LagBytes: s.LagBytes, LagSeconds: s.LagSeconds, Streaming: s.Streaming,
			WalLsn: s.WAL, ReplayedLsn: s.Replayed, Timeline: s.Timeline, PrimaryLsn: s.PrimaryWAL}
		for _, nv := range s.Nodes {
			sv.Nodes = append(sv.Nodes, &witnessv1.NodeView{Name: nv.Name, Role: nv.Role, Timeline: nv.Timeline, WalLsn: nv.WAL, ReplayedLsn: nv.Replayed,
				Streaming: nv.Streaming, Failing: nv.Failing})
		}
		for _, o := range s.Observers {
			ov := &witnessv1.ObserverView{Site: o.Site, State: o.State.String(), Witnesses: int32(o.Witnesses)}
			if !o.Since.IsZero() {
				ov.SinceUnixNano = o.Since.UnixNano()
			}
			sv.Observers = append(sv.Observers, ov)
		}
		e.Sites = append(e.Sites, sv)
	}
	return e
}
