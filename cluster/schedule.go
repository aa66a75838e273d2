package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/fsm"
	"github.com/sitewitness/witness/policy"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// A scheduled switchover waits in the replicated state (GroupStatus
// scheduled) until its time, so that it survives a leader change; the
// leader then starts it as if the operator asked at that moment: the same
// checks of the target, the same two phases. When the target is not
// eligible at the time, the leader asks again at every evaluation for
// scheduleGrace, then drops it and records why. Any transition of the
// group before its time drops it too (the state machine records that).

// scheduleGrace is how long after its time a scheduled switchover waits
// for its target to become eligible before it is dropped.
const scheduleGrace = time.Minute

// scheduleSwitchover records req, whose time is still to come.
func (n *Node) scheduleSwitchover(ctx context.Context, g *witnessv1.Group, req *witnessv1.SwitchoverRequest) (*witnessv1.SwitchoverResponse, error) {
	if err := n.checkSite(g, req.GetToSite()); err != nil {
		return nil, err
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "switchover scheduled by operator"
	}
	now := n.nowNano()
	sch := &witnessv1.ScheduledSwitchover{ToSite: req.GetToSite(), AtUnixNano: req.GetAtUnixNano(), Reason: reason,
		By: n.caller(ctx, req.GetBy()), AskedUnixNano: now}
	if _, err := (&adminServer{n: n}).apply(ctx, &witnessv1.ScheduleSwitchoverCommand{Group: g.GetSpec().GetName(), Switchover: sch, AtUnixNano: now}); err != nil {
		return nil, err
	}
	n.log.Warn("switchover scheduled", "group", g.GetSpec().GetName(), "to", sch.GetToSite(),
		"at", time.Unix(0, sch.GetAtUnixNano()).UTC().Format(time.RFC3339), "by", sch.GetBy(), "reason", reason)
	return &witnessv1.SwitchoverResponse{FromSite: g.GetStatus().GetActiveSite(), Scheduled: sch}, nil
}

// checkSite refuses a site that is not the group's, or its active one.
func (n *Node) checkSite(g *witnessv1.Group, site string) error {
	known := false
	for _, s := range g.GetSpec().GetSites() {
		known = known || s.GetName() == site
	}
	switch {
	case !known:
		return status.Errorf(codes.InvalidArgument, "%q is not a site of group %q", site, g.GetSpec().GetName())
	case site == g.GetStatus().GetActiveSite():
		return status.Errorf(codes.FailedPrecondition, "group %q is already active at %s", g.GetSpec().GetName(), site)
	}
	return nil
}

// CancelSwitchover cancels a group's scheduled switchover.
func (s *adminServer) CancelSwitchover(ctx context.Context, req *witnessv1.CancelSwitchoverRequest) (*witnessv1.CancelSwitchoverResponse, error) {
	if req.GetGroup() == "" {
		return nil, status.Error(codes.InvalidArgument, "group is required")
	}
	if resp, handled, err := forward(ctx, s.n, req, witnessv1.AdminClient.CancelSwitchover); handled {
		return resp, err
	}
	g, ok := s.n.fsm.Group(req.GetGroup())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "group %q not found", req.GetGroup())
	}
	sch := g.GetStatus().GetScheduled()
	if sch == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "group %q has no scheduled switchover", req.GetGroup())
	}
	outcome := "cancelled by " + s.n.caller(ctx, req.GetBy())
	if r := req.GetReason(); r != "" {
		outcome += ": " + r
	}
	if _, err := s.apply(ctx, &witnessv1.ScheduleSwitchoverCommand{Group: req.GetGroup(), Outcome: outcome, AtUnixNano: s.n.nowNano()}); err != nil {
		return nil, err
	}
	s.n.log.Warn("scheduled switchover cancelled", "group", req.GetGroup(), "to", sch.GetToSite(), "outcome", outcome)
	return &witnessv1.CancelSwitchoverResponse{Cancelled: sch}, nil
}

// startScheduled starts, on the leader, each scheduled switchover whose
// time has come, or drops one whose target stayed ineligible for
// scheduleGrace. It returns when it should look again: the next
// scheduled time, or zero.
func (n *Node) startScheduled(ctx context.Context, now time.Time) (wake time.Time) {
	for _, g := range n.fsm.Groups() {
		sch := g.GetStatus().GetScheduled()
		if sch == nil {
			continue
		}
		at := time.Unix(0, sch.GetAtUnixNano())
		if now.Before(at) {
			if wake.IsZero() || at.Before(wake) {
				wake = at
			}
			continue
		}
		name := g.GetSpec().GetName()
		err := n.checkTarget(g, sch.GetToSite())
		if err == nil && g.GetStatus().GetPending() != nil {
			err = fmt.Errorf("a switchover to %s is under way", g.GetStatus().GetPending().GetToSite())
		}
		if err != nil {
			why := status.Convert(err).Message()
			if now.Sub(at) < scheduleGrace {
				if last, _ := n.scheduleWaits.Swap(name, why); last != why {
					n.log.Warn("scheduled switchover waits", "group", name, "to", sch.GetToSite(), "why", why, "gives_up_in", (scheduleGrace - now.Sub(at)).Round(time.Second))
				}
				continue
			}
			n.commit(ctx, "drop a scheduled switchover", &witnessv1.ScheduleSwitchoverCommand{Group: name, AtUnixNano: now.UnixNano(),
				Outcome: fmt.Sprintf("dropped: %s still not a target %s after its time: %s", sch.GetToSite(), scheduleGrace, why)})
			continue
		}
		res, err := n.Apply(ctx, &witnessv1.TransitionCommand{
			Moves: []*witnessv1.Move{{Group: name, ExpectedToken: g.GetStatus().GetToken(), ToSite: sch.GetToSite(), FromPrimary: n.primaryAt(name, now),
				ToNode: n.targetNode(name, sch.GetToSite(), policy.JudgePlanned)}},
			Kind:   witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER,
			Reason: "scheduled: " + sch.GetReason(), AtUnixNano: now.UnixNano(), By: sch.GetBy(),
			Prepare: true, Scheduled: true,
		})
		if err == nil {
			err = res.Err
		}
		switch {
		case errors.Is(err, fsm.ErrStaleToken):
			// The group changed under it: looked at again next time.
		case err != nil:
			n.log.Warn("scheduled switchover not started", "group", name, keyErr, err)
		default:
			n.scheduleWaits.Delete(name)
			n.log.Warn("scheduled switchover started", "group", name, "to", sch.GetToSite(), "token", res.Tokens[name], "by", sch.GetBy())
		}
	}
	return wake
}
