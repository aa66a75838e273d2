package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/actions"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// catchUpWait bounds how long a witness asked to run a hook waits for its
// replica to reach the token of the request. It stays well inside the
// margin the reconciler adds to a hook's timeout.
const catchUpWait = 2 * time.Second

// Errors of running a hook on a site's witness.
var (
	// ErrNoSiteWitness: no live witness at the site a hook must run on
	// answered.
	ErrNoSiteWitness = errors.New("no live witness at the site")
	// ErrHookRefused: the witness at the site refused to run the hook (a
	// stale token, a hook not meant for its site, a caller that is not
	// its leader, …).
	ErrHookRefused = errors.New("hook refused")
)

// hookRuns remembers the hooks running on this witness, so that a retry
// that overtakes a slow run does not start the command twice.
type hookRuns struct {
	mu      sync.Mutex
	running map[string]bool
}

func (r *hookRuns) start(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running == nil {
		r.running = map[string]bool{}
	}
	if r.running[key] {
		return false
	}
	r.running[key] = true
	return true
}

func (r *hookRuns) done(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.running, key)
}

// RunHook runs a hook on a witness at site, for the leader's reconciler
// (actions.SiteHooks): on this witness when it is at that site, else on a
// live witness there found through gossip, trying each in name order until
// one answers. A witness that refuses (stale token, not its site) is not
// asked again elsewhere: the others hold the same replicated state.
func (n *Node) RunHook(ctx context.Context, site string, req actions.HookRequest) error {
	preq := &witnessv1.RunHookRequest{Group: req.Group, Hook: req.Hook, Token: req.Token, Step: req.Step, Leader: n.cfg.Name, Term: n.raft.CurrentTerm()}
	if site == n.cfg.Site {
		resp, err := n.runHook(ctx, preq)
		return hookOutcome(req, n.cfg.Name, site, resp, err)
	}
	var resp *witnessv1.RunHookResponse
	node, answered, err := n.askSiteWitnesses(ctx, site, func(c witnessv1.AdminClient) (err error) {
		resp, err = c.RunHook(ctx, preq)
		return err
	})
	if !answered {
		return fmt.Errorf("hook %s on site %s: %w", req.Hook, site, err)
	}
	return hookOutcome(req, node, site, resp, err)
}

// hookOutcome turns the answer of the witness node into the step's error.
func hookOutcome(req actions.HookRequest, node, site string, resp *witnessv1.RunHookResponse, err error) error {
	switch {
	case err != nil && status.Code(err) == codes.Canceled, errors.Is(err, context.Canceled):
		return fmt.Errorf("hook %s on %s (%s): %w", req.Hook, node, site, context.Canceled)
	case err != nil && status.Code(err) == codes.DeadlineExceeded, errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("hook %s on %s (%s): no answer in time: %w", req.Hook, node, site, context.DeadlineExceeded)
	case err != nil:
		st := status.Convert(err)
		return fmt.Errorf("hook %s on %s (%s): %s: %s: %w", req.Hook, node, site, st.Code(), st.Message(), ErrHookRefused)
	case !resp.GetOk():
		return &HookError{Node: resp.GetNode(), Site: resp.GetSite(), ExitCode: int(resp.GetExitCode()), Err: resp.GetError()}
	}
	return nil
}

// HookError is a hook that ran on a site's witness and failed there.
type HookError struct {
	Node, Site string
	// ExitCode is the command's exit status, -1 when it was killed (its
	// timeout) or did not start.
	ExitCode int
	// Err is the error there, naming the hook: "hook NAME: exit status 3:
	// <last line of output>".
	Err string
}

func (e *HookError) Error() string { return fmt.Sprintf("on %s (%s): %s", e.Node, e.Site, e.Err) }

// runHook serves RunHook on the witness that runs the hook. Everything
// about the command comes from this witness's replica, not the request;
// the request is refused with a status error when it does not match it.
func (n *Node) runHook(ctx context.Context, req *witnessv1.RunHookRequest) (*witnessv1.RunHookResponse, error) {
	if req.GetGroup() == "" || req.GetHook() == "" || req.GetToken() == 0 || req.GetStep() == "" {
		return nil, status.Error(codes.InvalidArgument, "group, hook, token and step are required")
	}
	if err := n.checkLeaderCall(ctx, req.GetLeader(), req.GetTerm()); err != nil {
		return nil, err
	}
	g, err := n.groupAtToken(ctx, req.GetGroup(), req.GetToken())
	if err != nil {
		return nil, err
	}
	h, ok := actions.FindHook(g, req.GetHook())
	switch {
	case !ok:
		return nil, status.Errorf(codes.NotFound, "group %q has no hook %q", req.GetGroup(), req.GetHook())
	case h.GetStep() != req.GetStep():
		return nil, status.Errorf(codes.FailedPrecondition, "hook %q runs at step %s, not %s", h.GetName(), h.GetStep(), req.GetStep())
	case h.GetStep() == actions.HookLocalFence:
		return nil, status.Errorf(codes.FailedPrecondition, "hook %q is a local_fence hook: only the self-fencing lease runs it", h.GetName())
	case h.GetRunOn() != n.cfg.Site:
		return nil, status.Errorf(codes.FailedPrecondition, "hook %q runs on %q, this witness is at site %q", h.GetName(), h.GetRunOn(), n.cfg.Site)
	}
	key := fmt.Sprintf("%s/%s/%d", req.GetGroup(), req.GetHook(), req.GetToken())
	if !n.hookRuns.start(key) {
		return nil, status.Errorf(codes.Aborted, "hook %q of %q at token %d is already running here", h.GetName(), req.GetGroup(), req.GetToken())
	}
	defer n.hookRuns.done(key)
	log := n.log.With("group", req.GetGroup(), "hook", h.GetName(), "step", h.GetStep(), "token", req.GetToken(), "asked_by", req.GetLeader())
	log.Info("running hook for the leader")
	res, err := actions.RunHook(ctx, g, h, actions.Witness{Node: n.cfg.Name, Site: n.cfg.Site})
	resp := &witnessv1.RunHookResponse{Node: n.cfg.Name, Site: n.cfg.Site, Ok: err == nil, ExitCode: int32(res.ExitCode),
		Output: res.Output, DurationMs: res.Duration.Milliseconds()}
	if err != nil {
		resp.Error = err.Error()
		log.Warn("hook failed", keyErr, err, "output", res.Output)
	} else {
		log.Info("hook done", "took", res.Duration, "output", res.Output)
	}
	return resp, nil
}

// groupAtToken returns the group from this witness's replica once it holds
// token: a replica behind the leader is given catchUpWait to apply it; a
// replica that already holds a newer token refuses, so a deposed leader
// cannot make a witness run a hook for a decision since replaced.
func (n *Node) groupAtToken(ctx context.Context, name string, token uint64) (*witnessv1.Group, error) {
	wctx, cancel := context.WithTimeout(ctx, catchUpWait)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		g, ok := n.fsm.Group(name)
		have := g.GetStatus().GetToken()
		switch {
		case ok && have == token:
			return g, nil
		case ok && have > token:
			return nil, status.Errorf(codes.FailedPrecondition, "stale token %d: group %q is at token %d on this witness", token, name, have)
		}
		select {
		case <-wctx.Done():
			if !ok {
				return nil, status.Errorf(codes.Unavailable, "group %q is not in this witness's replica yet", name)
			}
			return nil, status.Errorf(codes.Unavailable, "this witness's replica is at token %d of %q, behind %d", have, name, token)
		case <-t.C:
		}
	}
}
