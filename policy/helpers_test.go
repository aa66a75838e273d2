package policy_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/sitewitness/witness/fsm"
	"github.com/sitewitness/witness/policy"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

var (
	ew  = []string{"east", "west"}
	ewn = []string{"east", "west", "north"}
)

// now is the fake clock of every scenario: evaluations are handed it.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// siteOf places the test witnesses: two at east, two at west, one at the
// tiebreaker, one at north (used only by four-site scenarios).
var siteOf = map[string]string{
	"e1": "east", "e2": "east",
	"w1": "west", "w2": "west",
	"t1": "tiebreak",
	"n1": "north",
}

func live(names ...string) []policy.Witness {
	ws := make([]policy.Witness, len(names))
	for i, n := range names {
		ws[i] = policy.Witness{Name: n, Site: siteOf[n]}
	}
	return ws
}

var allLive = live("e1", "e2", "w1", "w2", "t1")

// see is one fresh observation (checked half a second ago) of site by
// observer, in state st for the last `held`.
func see(observer, group, site string, st policy.State, held time.Duration) policy.Observation {
	return policy.Observation{
		Observer:     observer,
		ObserverSite: siteOf[observer],
		Group:        group,
		Site:         site,
		State:        st,
		Since:        now.Add(-held),
		CheckedAt:    now.Add(-500 * time.Millisecond),
	}
}

// seeAll is see for several observers.
func seeAll(observers []string, group, site string, st policy.State, held time.Duration) []policy.Observation {
	out := make([]policy.Observation, len(observers))
	for i, o := range observers {
		out[i] = see(o, group, site, st, held)
	}
	return out
}

// db is a database observation of a standby at site.
func db(observer, group, site string, lagBytes int64, lagSeconds float64, streaming bool) policy.Observation {
	o := see(observer, group, site, policy.Healthy, time.Hour)
	o.IsDatabase, o.Role = true, "standby"
	o.LagBytes, o.LagSeconds, o.Streaming = lagBytes, lagSeconds, streaming
	return o
}

var (
	eastW = []string{"e1", "e2"}
	westW = []string{"w1", "w2"}
	all   = []string{"e1", "e2", "w1", "w2", "t1"}
)

func cat(parts ...[]policy.Observation) []policy.Observation {
	var out []policy.Observation
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// eastLost: east's witnesses are gone; west and the tiebreaker have seen
// east failing for `held` and west healthy for an hour.
func eastLost(group string, held time.Duration) []policy.Observation {
	return cat(
		seeAll([]string{"w1", "w2", "t1"}, group, "east", policy.Failing, held),
		seeAll([]string{"w1", "w2", "t1"}, group, "west", policy.Healthy, time.Hour),
	)
}

// allHealthy: every witness sees every given site healthy for an hour.
func allHealthy(group string, sites ...string) []policy.Observation {
	var out []policy.Observation
	for _, s := range sites {
		out = append(out, seeAll(all, group, s, policy.Healthy, time.Hour)...)
	}
	return out
}

type groupOpt func(*witnessv1.Group)

// group is a group created at token `token`, active at its first site,
// armed, in auto mode, with failover_after 10s.
func group(name string, token uint64, sites []string, opts ...groupOpt) *witnessv1.Group {
	spec := &witnessv1.GroupSpec{Name: name, Policy: &witnessv1.Policy{
		Mode:            witnessv1.Mode_MODE_AUTO,
		FailoverAfterMs: 10_000,
		FenceAfterMs:    5_000,
	}}
	for _, s := range sites {
		spec.Sites = append(spec.Sites, &witnessv1.SiteSpec{Name: s})
	}
	g := &witnessv1.Group{Spec: spec, SpecVersion: 1, Status: &witnessv1.GroupStatus{
		ActiveSite: sites[0],
		Token:      token,
		Mode:       witnessv1.Mode_MODE_AUTO,
		Armed:      true,
		History: []*witnessv1.Transition{{
			Token: token, ToSite: sites[0], Kind: witnessv1.TransitionKind_TRANSITION_KIND_INITIAL,
			AtUnixNano: now.Add(-24 * time.Hour).UnixNano(),
		}},
	}}
	for _, o := range opts {
		o(g)
	}
	return g
}

func withMode(m witnessv1.Mode) groupOpt {
	return func(g *witnessv1.Group) {
		g.Spec.Policy.Mode = m
		g.Status.Mode = m
	}
}

func withLagLimit(bytes, ms int64) groupOpt {
	return func(g *witnessv1.Group) {
		g.Spec.Policy.MaxLagBytes, g.Spec.Policy.MaxLagMs = bytes, ms
	}
}

// withPostgres gives every site a postgres probe.
func withPostgres() groupOpt {
	return func(g *witnessv1.Group) {
		for _, s := range g.Spec.Sites {
			s.Probes = append(s.Probes, &witnessv1.ProbeSpec{Kind: "postgres", Dsn: "host=" + s.Name})
		}
	}
}

// failedOver: the group failed over from its first to its second site
// `ago`, at token+1, and is disarmed since.
func failedOver(ago time.Duration) groupOpt {
	return func(g *witnessv1.Group) {
		st := g.Status
		from, to := st.ActiveSite, g.Spec.Sites[1].Name
		st.Token++
		st.History = append(st.History, &witnessv1.Transition{
			Token: st.Token, FromSite: from, ToSite: to,
			Kind: witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER, AtUnixNano: now.Add(-ago).UnixNano(),
		})
		st.ActiveSite, st.Armed, st.DisarmedAtToken = to, false, st.Token
	}
}

// switchingOver puts the group in the first phase of a switchover to its
// second site, begun ago before now.
func switchingOver(ago time.Duration) groupOpt {
	return func(g *witnessv1.Group) {
		st := g.Status
		to := g.Spec.Sites[1].Name
		st.Token++
		st.History = append(st.History, &witnessv1.Transition{
			Token: st.Token, FromSite: st.ActiveSite, ToSite: st.ActiveSite, Phase: fsm.PhasePrepare,
			Kind: witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER, AtUnixNano: now.Add(-ago).UnixNano(),
		})
		st.Pending = &witnessv1.PendingSwitchover{ToSite: to, AtUnixNano: now.Add(-ago).UnixNano()}
	}
}

// switchoverAborted gives up a switchover to the group's second site,
// committed ago before now: a new token at the active site.
func switchoverAborted(ago time.Duration) groupOpt {
	return func(g *witnessv1.Group) {
		switchingOver(ago + time.Second)(g)
		st := g.Status
		st.Token++
		st.History = append(st.History, &witnessv1.Transition{
			Token: st.Token, FromSite: st.ActiveSite, ToSite: st.ActiveSite, Phase: fsm.PhaseAbort,
			Kind: witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER, AtUnixNano: now.Add(-ago).UnixNano(),
		})
		st.Pending = nil
	}
}

func withRearm(r witnessv1.Rearm, holdDown time.Duration) groupOpt {
	return func(g *witnessv1.Group) {
		g.Spec.Policy.Rearm, g.Spec.Policy.HoldDownMs = r, holdDown.Milliseconds()
	}
}

// summary is an Output with only what a scenario asserts: proposals as
// "east: app@1→west db@2→west", decisions as "action from→to: reason".
type summary struct {
	Proposals []string
	Decisions map[string]string
	Rearm     []string
}

func summarize(out policy.Output) summary {
	s := summary{Decisions: make(map[string]string, len(out.Decisions)), Rearm: out.Rearm}
	for _, p := range out.Proposals {
		var moves []string
		for _, m := range p.GetMoves() {
			moves = append(moves, fmt.Sprintf("%s@%d→%s", m.GetGroup(), m.GetExpectedToken(), m.GetToSite()))
		}
		s.Proposals = append(s.Proposals, fmt.Sprintf("%s %s [%s]", p.GetKind(), strings.Join(moves, " "), p.GetReason()))
	}
	for name, d := range out.Decisions {
		line := d.Action.String()
		if d.To != "" {
			line += fmt.Sprintf(" %s→%s@%d", d.From, d.To, d.ExpectedToken)
		}
		s.Decisions[name] = line + ": " + d.Reason
	}
	return s
}
