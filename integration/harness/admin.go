package harness

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/sitewitness/witness/actions"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// callTimeout bounds one admin call: a stopped or cut-off witness must not
// hold the harness up, and a loaded machine may be slow to answer.
const callTimeout = 5 * time.Second

// Witness returns the witness named name.
func (e *Env) Witness(name string) *Witness {
	for _, w := range e.Witnesses {
		if w.Name == name {
			return w
		}
	}
	return nil
}

// Status asks w for its view of the cluster.
func (w *Witness) Status() (*witnessv1.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return w.Admin.Status(ctx, &witnessv1.StatusRequest{})
}

// Leader returns the witness that says it leads, asking every running,
// not stopped witness.
func (e *Env) Leader() (*Witness, error) {
	var errs []error
	for _, w := range e.Witnesses {
		if !w.Proc.Running() || w.Proc.isStopped() {
			continue
		}
		st, err := w.Status()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", w.Name, err))
			continue
		}
		if st.GetLeader() == w.Name {
			return w, nil
		}
	}
	errs = append(errs, errors.New("no witness says it leads"))
	return nil, errors.Join(errs...)
}

// WaitLeader waits for a leader that skip (when not nil) does not refuse.
func (e *Env) WaitLeader(timeout time.Duration, skip func(*Witness) bool) (*Witness, error) {
	var l *Witness
	err := waitFor(timeout, "a leader", func() error {
		w, err := e.Leader()
		if err != nil {
			return err
		}
		if skip != nil && skip(w) {
			return fmt.Errorf("%s leads", w.Name)
		}
		l = w
		return nil
	})
	return l, err
}

// Group reads the group from the leader, or from any witness that answers
// when there is no leader.
func (e *Env) Group() (*witnessv1.Group, error) {
	ws := slices.Clone(e.Witnesses)
	if l, err := e.Leader(); err == nil {
		ws = append([]*Witness{l}, ws...)
	}
	var errs []error
	for _, w := range ws {
		if !w.Proc.Running() || w.Proc.isStopped() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		resp, err := w.Admin.GetGroup(ctx, &witnessv1.GetGroupRequest{Name: Group})
		cancel()
		if err == nil {
			return resp.GetGroup(), nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", w.Name, err))
	}
	return nil, fmt.Errorf("no witness answered: %w", errors.Join(errs...))
}

// PlanDone reports whether every required step of g's plan at its
// current token succeeded. Fence and notify are best effort: an old site
// that cannot be reached keeps its fence step failing (and retried) while
// the rest of the plan goes on.
func PlanDone(g *witnessv1.Group) bool {
	for _, step := range actions.Plan(g) {
		if step == actions.StepFence || step == actions.StepNotify {
			continue
		}
		if StepResult(g, step) == nil {
			return false
		}
	}
	return true
}

// StepResult is the successful result of step at g's current token, or
// nil.
func StepResult(g *witnessv1.Group, step string) *witnessv1.StepResult {
	for _, s := range g.GetStatus().GetSteps() {
		if s.GetToken() == g.GetStatus().GetToken() && s.GetStep() == step && s.GetOk() {
			return s
		}
	}
	return nil
}

// WaitStable waits until the group is active at site with a token of at
// least minToken, its plan done, and DNS answering site's value.
func (e *Env) WaitStable(timeout time.Duration, site string, minToken uint64) error {
	return waitFor(timeout, fmt.Sprintf("group %s stable at %s", Group, site), func() error {
		g, err := e.Group()
		if err != nil {
			return err
		}
		st := g.GetStatus()
		if st.GetActiveSite() != site || st.GetToken() < minToken {
			return fmt.Errorf("active at %s, token %d", st.GetActiveSite(), st.GetToken())
		}
		if !PlanDone(g) {
			return fmt.Errorf("plan at token %d not done: %v", st.GetToken(), st.GetSteps())
		}
		a, err := queryRecord(siteAddr["dns"] + ":53")
		if err != nil {
			return err
		}
		if a.Value != recordValue[site] || a.Token != st.GetToken() {
			return fmt.Errorf("DNS answers %s with fence token %d site %s", a.Value, a.Token, a.Site)
		}
		return nil
	})
}

// Switchover asks the leader to move the group to site at its current
// token, waits until the move commits (its first phase fences the old site
// at one token, the move takes the next) and returns the token of the
// move. A switchover that ends in an abort is an error.
func (e *Env) Switchover(site string) (uint64, error) {
	g, err := e.Group()
	if err != nil {
		return 0, err
	}
	l, err := e.WaitLeader(time.Minute, nil)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := l.Admin.Switchover(ctx, &witnessv1.SwitchoverRequest{Group: Group, ToSite: site, ExpectedToken: g.GetStatus().GetToken(), Reason: "harness", By: "harness"})
	if err != nil {
		return 0, err
	}
	prepared := resp.GetToken()
	var moved *witnessv1.Transition
	err = waitFor(time.Minute, "the switchover's move", func() error {
		g, err := e.Group()
		if err != nil {
			return err
		}
		for _, t := range g.GetStatus().GetHistory() {
			if t.GetToken() == prepared+1 {
				moved = t
				return nil
			}
		}
		return fmt.Errorf("group at token %d, pending %v", g.GetStatus().GetToken(), g.GetStatus().GetPending())
	})
	if err != nil {
		return 0, err
	}
	if moved.GetPhase() != "" || moved.GetToSite() != site {
		return 0, fmt.Errorf("switchover to %s ended at token %d, %s at %s: %s", site, moved.GetToken(), moved.GetPhase(), moved.GetToSite(), moved.GetReason())
	}
	return moved.GetToken(), nil
}

// Failovers lists the group's failover transitions after token after.
func Failovers(g *witnessv1.Group, after uint64) []*witnessv1.Transition {
	var out []*witnessv1.Transition
	for _, t := range g.GetStatus().GetHistory() {
		if t.GetToken() > after && t.GetKind() == witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER {
			out = append(out, t)
		}
	}
	return out
}

// Transitions lists every transition after token after that moved the
// group: the first phase of a switchover and an abort keep it where it was.
func Transitions(g *witnessv1.Group, after uint64) []*witnessv1.Transition {
	var out []*witnessv1.Transition
	for _, t := range g.GetStatus().GetHistory() {
		if t.GetToken() > after && t.GetPhase() == "" {
			out = append(out, t)
		}
	}
	return out
}

// WaitHealthy waits until every witness site sees every site of the group
// healthy, as the leader explains it: a scenario starts from there.
func (e *Env) WaitHealthy(timeout time.Duration) error {
	return waitFor(timeout, "every site seen healthy by every witness site", func() error {
		l, err := e.Leader()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		resp, err := l.Admin.GetGroup(ctx, &witnessv1.GetGroupRequest{Name: Group})
		if err != nil {
			return err
		}
		for _, sv := range resp.GetExplanation().GetSites() {
			if len(sv.GetObservers()) != len(witnessSites) {
				return fmt.Errorf("%s observed by %d sites", sv.GetSite(), len(sv.GetObservers()))
			}
			for _, ov := range sv.GetObservers() {
				if ov.GetState() != "healthy" {
					return fmt.Errorf("%s sees %s %s", ov.GetSite(), sv.GetSite(), ov.GetState())
				}
			}
		}
		return nil
	})
}

// LeadFrom makes a witness of site the leader: while another leads, that
// leader is stopped (SIGSTOP) until someone else leads, then resumed.
func (e *Env) LeadFrom(site string, timeout time.Duration) (*Witness, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		l, err := e.WaitLeader(time.Until(deadline), nil)
		if err != nil {
			return nil, err
		}
		if l.Site == site {
			return l, nil
		}
		if err := l.Proc.Signal(syscall.SIGSTOP); err != nil {
			return nil, err
		}
		_, err = e.WaitLeader(time.Until(deadline), func(w *Witness) bool { return w == l })
		if cerr := l.Proc.Signal(syscall.SIGCONT); cerr != nil {
			return nil, cerr
		}
		if err != nil {
			return nil, err
		}
		// Let the resumed witness learn that it no longer leads.
		if err := waitFor(time.Until(deadline), l.Name+" to follow", func() error {
			st, err := l.Status()
			if err != nil {
				return err
			}
			if st.GetLeader() == l.Name || st.GetLeader() == "" {
				return fmt.Errorf("%s says the leader is %q", l.Name, st.GetLeader())
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no witness of %s came to lead within %s", site, timeout)
}
