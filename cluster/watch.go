package cluster

import (
	"context"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/policy"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// watchEvery is how often a watch looks for changes.
const watchEvery = 100 * time.Millisecond

// Kinds of watch events.
const (
	WatchObservation = "observation"
	WatchDecision    = "decision"
	WatchTransition  = "transition"
	WatchStep        = "step"
)

// Watch streams what this witness sees change (see the RPC's comment).
func (s *adminServer) Watch(req *witnessv1.WatchRequest, stream witnessv1.Admin_WatchServer) error {
	if g := req.GetGroup(); g != "" {
		if _, ok := s.n.fsm.Group(g); !ok {
			return status.Errorf(codes.NotFound, "group %q not found", g)
		}
	}
	return s.n.watch(stream.Context(), req.GetGroup(), stream.Send)
}

// watchView is what a watch compares from one look to the next.
type watchView struct {
	verdicts  map[[3]string]string // group, site, observer site -> state
	decisions map[string]policy.Decision
	tokens    map[string]uint64           // group -> highest transition token sent
	steps     map[string]map[stepKey]bool // group -> step results sent
}

type stepKey struct {
	token   uint64
	step    string
	attempt int32
	started int64
}

// watch sends events for group ("" for all) until ctx ends or send fails.
func (n *Node) watch(ctx context.Context, group string, send func(*witnessv1.WatchEvent) error) error {
	t := n.clock.NewTicker(watchEvery)
	defer t.Stop()
	var prev *watchView
	for {
		now := n.clock.Now()
		cur, events := n.watchLook(group, prev, now)
		for _, e := range events {
			if err := send(e); err != nil {
				return err
			}
		}
		prev = cur
		select {
		case <-ctx.Done():
			return nil
		case <-n.ctx.Done():
			return status.Error(codes.Unavailable, "witness shutting down")
		case <-t.C():
		}
	}
}

// watchLook looks at the state once and returns it with the events since
// prev: for the first look (prev nil), the current verdicts and decisions
// only.
func (n *Node) watchLook(group string, prev *watchView, now time.Time) (*watchView, []*witnessv1.WatchEvent) {
	groups := n.fsm.Groups()
	if group != "" {
		groups = slices.DeleteFunc(groups, func(g *witnessv1.Group) bool { return g.GetSpec().GetName() != group })
	}
	in := policy.Input{Now: now, Groups: groups, Live: n.live()}
	var out policy.Output
	n.obs.read(func(obs []policy.Observation) {
		in.Observations = obs
		out = policy.Evaluate(in)
	})
	cur := &watchView{verdicts: map[[3]string]string{}, decisions: map[string]policy.Decision{}, tokens: map[string]uint64{}, steps: map[string]map[stepKey]bool{}}
	var events []*witnessv1.WatchEvent
	ev := func(e *witnessv1.WatchEvent) {
		if e.AtUnixNano == 0 {
			e.AtUnixNano = now.UnixNano()
		}
		e.Node = n.cfg.Name
		events = append(events, e)
	}
	for _, g := range groups {
		name, st := g.GetSpec().GetName(), g.GetStatus()

		// Committed transitions and step results, in log order: what
		// the replica applied since the last look.
		cur.tokens[name] = st.GetToken()
		cur.steps[name] = map[stepKey]bool{}
		for _, r := range st.GetSteps() {
			cur.steps[name][stepKey{r.GetToken(), r.GetStep(), r.GetAttempt(), r.GetStartedUnixNano()}] = true
		}
		if prev != nil {
			sent, known := prev.tokens[name]
			for _, h := range st.GetHistory() {
				if !known || h.GetToken() > sent {
					ev(&witnessv1.WatchEvent{AtUnixNano: h.GetAtUnixNano(), Group: name, Kind: WatchTransition, Transition: h})
				}
			}
			for _, r := range st.GetSteps() {
				k := stepKey{r.GetToken(), r.GetStep(), r.GetAttempt(), r.GetStartedUnixNano()}
				if !prev.steps[name][k] {
					ev(&witnessv1.WatchEvent{AtUnixNano: r.GetStartedUnixNano() + r.GetDurationMs()*int64(time.Millisecond), Group: name, Kind: WatchStep, Step: r})
				}
			}
		}

		// Verdicts and the decision, as this witness evaluates them now.
		d, ok := out.Decisions[name]
		if !ok {
			continue
		}
		for _, sv := range d.Sites {
			for _, ov := range sv.Observers {
				k, state := [3]string{name, sv.Site, ov.Site}, obsWord(ov.State)
				cur.verdicts[k] = state
				if prev == nil || prev.verdicts[k] != state {
					ev(&witnessv1.WatchEvent{Group: name, Kind: WatchObservation, Site: sv.Site, ObserverSite: ov.Site, State: state})
				}
			}
		}
		cur.decisions[name] = d
		if p, seen := prev.decision(name); !seen || p.State != d.State || p.Action != d.Action {
			ev(&witnessv1.WatchEvent{Group: name, Kind: WatchDecision, State: string(d.State), Reason: d.Reason})
		}
	}
	return cur, events
}

func (v *watchView) decision(group string) (policy.Decision, bool) {
	if v == nil {
		return policy.Decision{}, false
	}
	d, ok := v.decisions[group]
	return d, ok
}
