package policy

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// rolePrimary is the Role a database observation reports for a primary;
// lag and streaming are checked on every other role.
const rolePrimary = "primary"

// probePostgres is the probe kind that makes the data-loss guard require
// database observations of a target.
const probePostgres = "postgres"

// Evaluate decides, for every group of in, what should happen now. It
// reads nothing but in and keeps nothing between calls.
func Evaluate(in Input) Output {
	e := newEvaluator(in)
	out := Output{Decisions: make(map[string]Decision, len(in.Groups))}
	bySite := make(map[string][]pending)
	for gi, g := range in.Groups {
		// Unnamed groups and repeats of a name get no decision.
		if !e.indexed[gi] {
			continue
		}
		name := g.GetSpec().GetName()
		d := e.group(g, e.recs[e.start[gi]:e.start[gi+1]])
		if e.brief {
			d.Sites = nil // scratch, the next group's
		}
		out.Decisions[name] = d
		switch d.Action {
		case ActionFailover:
			bySite[d.From] = append(bySite[d.From], pending{
				move:   &witnessv1.Move{Group: name, ExpectedToken: d.ExpectedToken, ToSite: d.To, FromPrimary: d.Primary.Proto(d.From), ToNode: d.ToNode},
				reason: d.Reason,
			})
		case ActionRearm:
			out.Rearm = append(out.Rearm, name)
		}
	}
	slices.Sort(out.Rearm)
	out.Proposals = proposals(bySite, in.Now)
	if e.wake != 0 {
		out.Wake = fromNanos(e.wake)
	}
	return out
}

type pending struct {
	move   *witnessv1.Move
	reason string
}

// proposals turns the failovers into one TransitionCommand per failed
// site, sorted by site, each with its moves sorted by group.
func proposals(bySite map[string][]pending, now time.Time) []*witnessv1.TransitionCommand {
	if len(bySite) == 0 {
		return nil
	}
	sites := make([]string, 0, len(bySite))
	for s := range bySite {
		sites = append(sites, s)
	}
	slices.Sort(sites)
	cmds := make([]*witnessv1.TransitionCommand, 0, len(sites))
	for _, s := range sites {
		ps := bySite[s]
		slices.SortFunc(ps, func(a, b pending) int { return strings.Compare(a.move.GetGroup(), b.move.GetGroup()) })
		moves := make([]*witnessv1.Move, len(ps))
		for i, p := range ps {
			moves[i] = p.move
		}
		reason := ps[0].reason
		if len(ps) > 1 {
			reason = fmt.Sprintf("site %s down: %d groups fail over", s, len(ps))
		}
		cmds = append(cmds, &witnessv1.TransitionCommand{
			Moves:      moves,
			Kind:       witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER,
			Reason:     reason,
			AtUnixNano: now.UnixNano(),
		})
	}
	return cmds
}

// evaluator holds what one evaluation shares across groups: the live
// sites, the observations bucketed by group, and scratch space reused for
// every group so that a group costs a handful of allocations.
type evaluator struct {
	now time.Time
	// sites are the observer sites, sorted: the configured ones and those
	// of the live witnesses.
	sites []string
	// witnessSite maps a live witness (by index) to its site's index.
	witnessSite []int
	obs         []Observation
	// indexed marks the groups evaluated: named, and not a repeated name.
	indexed []bool
	// recs holds the fresh observations of live witnesses in compact form,
	// grouped by group: group gi's are recs[start[gi]:start[gi+1]].
	recs  []rec
	start []int32
	// views and observerViews are carved into every group's Sites;
	// with brief (Input.DecisionsOnly) each group's are made in
	// briefViews and briefObservers, reused by the next group.
	views          []SiteView
	observerViews  []ObserverView
	brief          bool
	briefViews     []SiteView
	briefObservers []ObserverView

	// scratch, sized per group
	wc []witnessCell // [target site][witness]
	sc []siteCell    // [target site][observer site]
	db []dbCell      // [target site]
	// nodes are the database cells of the named nodes of a group with
	// several at a site, in the order first seen.
	nodes []nodeCell
	// node is the node that the last call of eligible chose, "" for a
	// site's only one.
	node string
	fs   []int64 // failing sinces of one check

	// primaries are Input.Primaries.
	primaries map[GroupSite]Position

	// wake is the earliest time (Unix nanos, 0 for none) at which a site
	// that is failing but not yet for failover_after will have been.
	wake int64
	// due is, for the group evaluated last, when its active site's
	// verdict held failover_after (Unix nanos).
	due int64
}

// rec is the part of an Observation that the verdicts need, small enough
// that a group's observations sit together in memory.
type rec struct {
	since int64 // unix nanoseconds, saturated
	// lagBytes and lagSeconds are copied from database observations.
	lagBytes   int64
	lagSeconds float64
	obs        int32 // index in Input.Observations
	witness    uint16
	site       uint16 // index among the group's sites
	state      State
	db         bool
	primary    bool // a database observation of a primary
	streaming  bool
	node       bool // the observation names a node of several at its site
}

// The seconds within which unix nanoseconds fit an int64 (1678 to 2262).
const (
	minSec = math.MinInt64/int64(time.Second) + 1
	maxSec = math.MaxInt64 / int64(time.Second)
)

// nanos is t in unix nanoseconds, saturated (a zero time is MinInt64).
func nanos(t time.Time) int64 {
	switch sec := t.Unix(); {
	case sec < minSec:
		return math.MinInt64
	case sec >= maxSec:
		return math.MaxInt64
	}
	return t.UnixNano()
}

// fromNanos undoes nanos; MinInt64 is the zero time.
func fromNanos(n int64) time.Time {
	if n == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func newEvaluator(in Input) *evaluator {
	e := &evaluator{now: in.Now, obs: in.Observations, primaries: in.Primaries}
	stale := in.StaleAfter
	if stale <= 0 {
		stale = DefaultStaleAfter
	}
	freshFrom := in.Now.Add(-stale)

	witnessIdx := make(map[string]int, len(in.Live))
	var witnessSiteName []string
	for _, w := range in.Live {
		if _, dup := witnessIdx[w.Name]; dup {
			continue
		}
		witnessIdx[w.Name] = len(witnessSiteName)
		witnessSiteName = append(witnessSiteName, w.Site)
		if !slices.Contains(e.sites, w.Site) {
			e.sites = append(e.sites, w.Site)
		}
	}
	for _, s := range in.ObserverSites {
		if s != "" && !slices.Contains(e.sites, s) {
			e.sites = append(e.sites, s)
		}
	}
	slices.Sort(e.sites)
	e.witnessSite = make([]int, len(witnessSiteName))
	for i, s := range witnessSiteName {
		e.witnessSite[i] = slices.Index(e.sites, s)
	}

	// Index the groups by name, and their sites' names in one table:
	// group gi's are siteNames[siteStart[gi]:siteStart[gi+1]].
	groupIdx := make(map[string]int32, len(in.Groups))
	indexed := make([]bool, len(in.Groups))
	e.indexed = indexed
	siteStart := make([]int32, len(in.Groups)+1)
	nsites := 0
	for _, g := range in.Groups {
		nsites += len(g.GetSpec().GetSites())
	}
	siteNames := make([]string, 0, nsites)
	for i, g := range in.Groups {
		spec := g.GetSpec()
		if name := spec.GetName(); name != "" {
			if _, dup := groupIdx[name]; !dup {
				groupIdx[name] = int32(i)
				indexed[i] = true
				for _, s := range spec.GetSites() {
					siteNames = append(siteNames, s.GetName())
				}
			}
		}
		siteStart[i+1] = int32(len(siteNames))
	}
	if e.brief = in.DecisionsOnly; !e.brief {
		e.views = make([]SiteView, len(siteNames))
		e.observerViews = make([]ObserverView, len(siteNames)*len(e.sites))
	}

	// Bucket the fresh observations of live witnesses on known (group,
	// site) by group, in compact form: a counting sort whose first pass
	// finds each observation's group, witness and site, and whose second
	// writes the records in place. Gossip usually arrives in runs of one
	// observer and one group, groups in order, so the last lookups are
	// remembered and the next group is tried before the map.
	gOf := make([]int32, len(in.Observations))
	wsOf := make([]uint32, len(in.Observations)) // witness<<16 | site
	e.start = make([]int32, len(in.Groups)+1)
	lastGroup, lastG := "", int32(-1)
	lastObserver, lastW := "", -1
	for i := range in.Observations {
		o := &in.Observations[i]
		gOf[i] = -1
		if o.CheckedAt.Before(freshFrom) {
			continue
		}
		if o.Observer != lastObserver || lastW < 0 {
			w, ok := witnessIdx[o.Observer]
			lastObserver, lastW = o.Observer, w
			if !ok {
				lastW = -1
			}
		}
		if lastW < 0 {
			continue
		}
		if o.Group != lastGroup || lastG < 0 {
			if n := int(lastG) + 1; n < len(in.Groups) && indexed[n] && in.Groups[n].GetSpec().GetName() == o.Group {
				lastGroup, lastG = o.Group, int32(n)
			} else if g, ok := groupIdx[o.Group]; ok {
				lastGroup, lastG = o.Group, g
			} else {
				lastGroup, lastG = o.Group, -1
			}
		}
		if lastG < 0 {
			continue
		}
		t := slices.Index(siteNames[siteStart[lastG]:siteStart[lastG+1]], o.Site)
		if t < 0 || t > math.MaxUint16 || lastW > math.MaxUint16 {
			continue
		}
		gOf[i] = lastG
		wsOf[i] = uint32(lastW)<<16 | uint32(t)
		e.start[lastG+1]++
	}
	for i := 1; i < len(e.start); i++ {
		e.start[i] += e.start[i-1]
	}
	e.recs = make([]rec, e.start[len(e.start)-1])
	next := slices.Clone(e.start[:len(in.Groups)])
	for i, g := range gOf {
		if g < 0 {
			continue
		}
		o := &in.Observations[i]
		r := &e.recs[next[g]]
		next[g]++
		*r = rec{
			since:   nanos(o.Since),
			obs:     int32(i),
			witness: uint16(wsOf[i] >> 16),
			site:    uint16(wsOf[i]),
			state:   o.State,
		}
		if o.IsDatabase {
			r.db, r.primary, r.streaming = true, o.Role == rolePrimary, o.Streaming
			r.lagBytes, r.lagSeconds = o.LagBytes, o.LagSeconds
			r.node = o.Node != ""
		}
	}
	return e
}

// witnessCell combines one witness's observations (one per probe) of one
// (group, site).
type witnessCell struct {
	n, failing, healthy int32
	failSince           int64 // earliest Since of a failing probe
	healthySince        int64 // latest Since of a healthy probe
	// The probes of several PostgreSQL nodes at a site count as one,
	// healthy while any node is: one standby down does not fail its site.
	nodes, nodesHealthy, nodesFailing int32
	nodesFailSince                    int64 // latest Since of a failing node probe
	nodesHealthySince                 int64 // earliest Since of a healthy node probe
}

func (c *witnessCell) verdict() (State, int64) {
	failing, healthy, n := c.failing, c.healthy, c.n
	failSince, healthySince := c.failSince, c.healthySince
	if c.nodes > 0 {
		n = n - c.nodes + 1
		switch {
		case c.nodesHealthy > 0:
			if healthy == 0 || c.nodesHealthySince > healthySince {
				healthySince = c.nodesHealthySince
			}
			healthy++
		case c.nodesFailing == c.nodes:
			if failing == 0 || c.nodesFailSince < failSince {
				failSince = c.nodesFailSince
			}
			failing++
		}
	}
	switch {
	case failing > 0:
		return Failing, failSince
	case healthy == n:
		return Healthy, healthySince
	}
	return Unknown, math.MinInt64
}

// add folds in one probe's observation r.
func (c *witnessCell) add(r *rec) {
	c.n++
	if r.node {
		c.nodes++
		switch r.state {
		case Failing:
			if c.nodesFailing == 0 || r.since > c.nodesFailSince {
				c.nodesFailSince = r.since
			}
			c.nodesFailing++
		case Healthy:
			if c.nodesHealthy == 0 || r.since < c.nodesHealthySince {
				c.nodesHealthySince = r.since
			}
			c.nodesHealthy++
		}
		return
	}
	switch r.state {
	case Failing:
		if c.failing == 0 || r.since < c.failSince {
			c.failSince = r.since
		}
		c.failing++
	case Healthy:
		if c.healthy == 0 || r.since > c.healthySince {
			c.healthySince = r.since
		}
		c.healthy++
	}
}

// nodeCell is the worst of the fresh observations of one named node.
type nodeCell struct {
	site    int
	name    string
	db      dbCell
	failing bool // a witness sees its probe failing
}

// siteCell is one observer site's verdict on one (group, site).
type siteCell struct {
	failing, healthy, unknown int32
	failSince, healthySince   int64 // latest of the witnesses'
}

func (c *siteCell) verdict() (State, int64) {
	n := c.failing + c.healthy + c.unknown
	switch {
	case n == 0:
		return Unknown, math.MinInt64
	case c.failing == n:
		return Failing, c.failSince
	case c.healthy == n:
		return Healthy, c.healthySince
	}
	return Unknown, math.MinInt64
}

// dbCell is the worst of the fresh database observations of one site.
type dbCell struct {
	n          int
	role       string
	primary    bool // role is rolePrimary
	lagBytes   int64
	lagSeconds float64
	// unknownBytes, unknownSeconds: a standby reported a negative lag.
	unknownBytes, unknownSeconds bool
	streaming                    bool
	// wal, replayed and tli are the furthest reported (0 unknown).
	wal, replayed uint64
	tli           uint32
}

// add folds in r, the database observation obs[r.obs].
func (c *dbCell) add(r *rec, obs []Observation) {
	if c.n == 0 || (c.primary && !r.primary) {
		c.role, c.primary = obs[r.obs].Role, r.primary
	}
	c.n++
	o := &obs[r.obs]
	c.wal, c.replayed, c.tli = max(c.wal, o.WAL), max(c.replayed, o.Replayed), max(c.tli, o.Timeline)
	if r.primary {
		return
	}
	if r.lagBytes < 0 {
		c.unknownBytes = true
	}
	if r.lagSeconds < 0 {
		c.unknownSeconds = true
	}
	c.lagBytes = max(c.lagBytes, r.lagBytes)
	c.lagSeconds = max(c.lagSeconds, r.lagSeconds)
	c.streaming = c.streaming || r.streaming
}

// groupView is one group's evaluated observations.
type groupView struct {
	spec   *witnessv1.GroupSpec
	status *witnessv1.GroupStatus
	sites  []SiteView
}

func (e *evaluator) group(g *witnessv1.Group, recs []rec) Decision {
	spec, st := g.GetSpec(), g.GetStatus()
	gv := e.view(spec, st, recs)
	active := siteIndex(spec, st.GetActiveSite())
	d := Decision{From: st.GetActiveSite(), Sites: gv.sites, State: DecisionInvalid}
	if active < 0 {
		d.Reason = fmt.Sprintf("active site %q is not a site of the group", st.GetActiveSite())
		return d
	}
	gv.sites[active].Active = true
	d.Primary = e.primaryAt(gv, active)
	gv.sites[active].PrimaryWAL = d.Primary.WAL
	d.Targets, d.NoTarget = e.targets(gv, active)
	if !st.GetArmed() {
		return e.disarmed(gv, st, active, d)
	}

	if p := st.GetPending(); p != nil {
		// The switchover's first phase may have stopped the active
		// site's database on purpose (its fence) while the target
		// catches up: a failover now would promote a target that lacks
		// what the old primary acknowledged. The switchover ends by
		// itself, moved or given up within switchover_timeout.
		d.State = DecisionSwitchoverPending
		d.Reason = fmt.Sprintf("switchover to %s pending: no automatic failover until it moves or is given up", p.GetToSite())
		return d
	}
	down, state, why := e.down(gv, active, spec.GetPolicy(), abortedAt(st))
	if !down {
		d.Reason, d.State = why, state
		return d
	}
	d.Due = fromNanos(e.due)
	target, toNode := -1, ""
	var refused []string
	d.State = DecisionNoTarget
	for t := range spec.GetSites() {
		if t == active {
			continue
		}
		if ok, why := e.eligible(gv, t, active, JudgeFailover); !ok {
			if e.healthy(gv, t).ok() {
				d.State = DecisionBlockedByDataLossGuard
			}
			refused = append(refused, why)
			continue
		}
		target, toNode = t, e.node
		break
	}
	if target < 0 {
		if len(refused) == 0 {
			refused = append(refused, "the group has no other site")
		}
		d.Reason = why + "; no eligible target: " + strings.Join(refused, "; ")
		return d
	}
	d.To, d.ToNode = spec.GetSites()[target].GetName(), toNode
	d.ExpectedToken = st.GetToken()
	switch mode(g) {
	case witnessv1.Mode_MODE_OBSERVE:
		d.Action, d.State = ActionWouldFailover, DecisionWouldFailover
		d.Reason = fmt.Sprintf("observe mode: would fail over %s→%s; %s", d.From, d.target(), why)
	case witnessv1.Mode_MODE_MANUAL:
		d.Action, d.State = ActionPending, DecisionAwaitingApproval
		d.Reason = fmt.Sprintf("manual mode: failover %s→%s awaits approval; %s", d.From, d.target(), why)
	default:
		d.Action, d.State = ActionFailover, DecisionFailingOver
		d.Reason = fmt.Sprintf("%s; fail over to %s", why, d.target())
	}
	return d
}

// abortedAt is when the group's current token was committed, in Unix
// nanos, if that token gave up a switchover; MinInt64 otherwise. The old
// primary was stopped or fenced on purpose during the switchover, and is
// being given back what the fence took: its failing before the abort says
// nothing of the site, and counting it would fail over at once to the
// target that did not catch up.
func abortedAt(st *witnessv1.GroupStatus) int64 {
	h := st.GetHistory()
	for i := len(h) - 1; i >= 0; i-- {
		if t := h[i]; t.GetToken() == st.GetToken() {
			if t.GetPhase() == fsm.PhaseAbort {
				return t.GetAtUnixNano()
			}
			break
		}
	}
	return math.MinInt64
}

// mode is the group's effective mode, as the FSM applies it.
func mode(g *witnessv1.Group) witnessv1.Mode {
	if m := g.GetStatus().GetMode(); m != witnessv1.Mode_MODE_UNSPECIFIED {
		return m
	}
	if m := g.GetSpec().GetPolicy().GetMode(); m != witnessv1.Mode_MODE_UNSPECIFIED {
		return m
	}
	return witnessv1.Mode_MODE_AUTO
}

func (e *evaluator) disarmed(gv groupView, st *witnessv1.GroupStatus, active int, d Decision) Decision {
	tok := st.GetDisarmedAtToken()
	d.State = DecisionDisarmed
	i := slices.IndexFunc(st.GetHistory(), func(t *witnessv1.Transition) bool { return t.GetToken() == tok })
	byFailover := i >= 0 && st.GetHistory()[i].GetKind() == witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER
	if !byFailover {
		d.Reason = fmt.Sprintf("disarmed at token %d", tok)
		if gv.spec.GetPolicy().GetRearm() == witnessv1.Rearm_REARM_AUTO {
			d.Reason += "; not re-armed automatically: not disarmed by a failover in the history"
		}
		return d
	}
	d.Reason = fmt.Sprintf("disarmed after failover at token %d", tok)
	if gv.spec.GetPolicy().GetRearm() != witnessv1.Rearm_REARM_AUTO {
		return d
	}
	holdDown := time.Duration(gv.spec.GetPolicy().GetHoldDownMs()) * time.Millisecond
	at := time.Unix(0, st.GetHistory()[i].GetAtUnixNano())
	if left := at.Add(holdDown).Sub(e.now); left > 0 {
		d.Reason += fmt.Sprintf("; re-arm in %s (hold_down %s)", fmtDuration(left), fmtDuration(holdDown))
		return d
	}
	site := d.From
	h := e.healthy(gv, active)
	if !h.ok() {
		d.Reason += fmt.Sprintf("; re-arm waits for %s: %s", site, h.describe(site, false))
		return d
	}
	d.Action, d.State = ActionRearm, DecisionRearm
	d.Reason += fmt.Sprintf("; hold_down %s passed and %s is healthy: re-arm", fmtDuration(holdDown), site)
	return d
}

// view folds a group's observations into per-site views and fills the
// scratch cells that down, healthy and eligible read. At the active site
// of a group with several nodes there, only the acting node's probe tells
// the site's health: a healthy standby beside a dead primary does not
// keep the site up.
func (e *evaluator) view(spec *witnessv1.GroupSpec, st *witnessv1.GroupStatus, recs []rec) groupView {
	k, nw, ns := len(spec.GetSites()), len(e.witnessSite), len(e.sites)
	e.nodes = e.nodes[:0]
	e.wc = resize(e.wc, k*nw)
	e.sc = resize(e.sc, k*ns)
	e.db = resize(e.db, k)
	active := siteIndex(spec, st.GetActiveSite())
	acting := actingNode(spec, st)
	for i := range recs {
		r := &recs[i]
		if !r.node || int(r.site) != active || acting == "" || e.obs[r.obs].Node == acting {
			e.wc[int(r.site)*nw+int(r.witness)].add(r)
		}
		if r.db {
			e.db[r.site].add(r, e.obs)
		}
		if r.node {
			n := e.nodeCell(int(r.site), e.obs[r.obs].Node)
			n.db.add(r, e.obs)
			n.failing = n.failing || r.state == Failing
		}
	}
	for t := range k {
		for w := range nw {
			c := &e.wc[t*nw+w]
			if c.n == 0 {
				continue
			}
			s := &e.sc[t*ns+e.witnessSite[w]]
			v, since := c.verdict()
			switch v {
			case Failing:
				if s.failing == 0 || since > s.failSince {
					s.failSince = since
				}
				s.failing++
			case Healthy:
				if s.healthy == 0 || since > s.healthySince {
					s.healthySince = since
				}
				s.healthy++
			default:
				s.unknown++
			}
		}
	}

	var views []SiteView
	var obsViews []ObserverView
	if e.brief {
		e.briefViews = resize(e.briefViews, k)
		e.briefObservers = resize(e.briefObservers, k*ns)
		views, obsViews = e.briefViews, e.briefObservers
	} else {
		views = e.views[:k:k]
		e.views = e.views[k:]
		obsViews = e.observerViews[: k*ns : k*ns]
		e.observerViews = e.observerViews[k*ns:]
	}
	for t, site := range spec.GetSites() {
		v := &views[t]
		v.Site = site.GetName()
		v.Observers = obsViews[t*ns : (t+1)*ns : (t+1)*ns]
		for l, name := range e.sites {
			c := &e.sc[t*ns+l]
			state, since := c.verdict()
			v.Observers[l] = ObserverView{
				Site:      name,
				State:     state,
				Since:     fromNanos(since),
				Witnesses: int(c.failing + c.healthy + c.unknown),
				Own:       name == v.Site,
			}
		}
		if db := &e.db[t]; db.n > 0 {
			v.Database, v.Role = true, db.role
			v.LagBytes, v.LagSeconds, v.Streaming = db.lagBytes, db.lagSeconds, db.streaming
			v.WAL, v.Replayed, v.Timeline = db.wal, db.replayed, db.tli
		}
		v.Nodes = nil
		for i := range e.nodes {
			if n := &e.nodes[i]; n.site == t {
				v.Nodes = append(v.Nodes, NodeView{Name: n.name, Role: n.db.role, Failing: n.failing, Streaming: n.db.streaming,
					WAL: n.db.wal, Replayed: n.db.replayed, Timeline: n.db.tli, LagBytes: n.db.lagBytes})
			}
		}
	}
	return groupView{spec: spec, status: st, sites: views}
}

// down reports whether the group's site a is down, and why (or why not).
// down judges whether the active site a is down: failing, as a majority of
// the other observer sites sees it, for failover_after. A site is not
// counted failing from before floor (Unix nanos, MinInt64 for none).
func (e *evaluator) down(gv groupView, a int, p *witnessv1.Policy, floor int64) (bool, DecisionState, string) {
	site := gv.sites[a].Site
	voters := 0
	e.fs = e.fs[:0]
	for _, ov := range gv.sites[a].Observers {
		if ov.Own {
			continue
		}
		voters++
		if ov.State == Failing {
			e.fs = append(e.fs, max(nanos(ov.Since), floor))
		}
	}
	if voters == 0 {
		return false, DecisionNoJudge, fmt.Sprintf("no observer site other than %s to judge it", site)
	}
	need := votesNeeded(voters)
	failing := len(e.fs)
	if !wins(failing, voters) {
		if healthy := countState(gv.sites[a].Observers, Healthy, true); failing == 0 && healthy > 0 {
			return false, DecisionHealthy, fmt.Sprintf("%s healthy, seen by %d of %d sites", site, healthy, voters)
		}
		return false, DecisionHealthy, fmt.Sprintf("%s seen failing by %d of %d sites (need %d)", site, failing, voters, need)
	}
	slices.Sort(e.fs)
	held := max(e.now.Sub(fromNanos(e.fs[need-1])), 0)
	after := time.Duration(p.GetFailoverAfterMs()) * time.Millisecond
	if held < after {
		if due := e.fs[need-1] + after.Nanoseconds(); e.wake == 0 || due < e.wake {
			e.wake = due
		}
		return false, DecisionWaiting, fmt.Sprintf("%s failing for %s of %s (seen by %d of %d sites)", site, fmtDuration(held), fmtDuration(after), failing, voters)
	}
	e.due = e.fs[need-1] + after.Nanoseconds()
	return true, DecisionFailingOver, fmt.Sprintf("%s down: seen failing by %d of %d sites for %s (failover_after %s)", site, failing, voters, fmtDuration(held), fmtDuration(after))
}

func countState(ovs []ObserverView, s State, skipOwn bool) int {
	n := 0
	for _, ov := range ovs {
		if ov.State == s && !(skipOwn && ov.Own) {
			n++
		}
	}
	return n
}

// health is how the observer sites see one site of a group.
type health struct {
	sites, healthy, failing int
}

// ok: a majority of the observer sites, t itself included, sees it
// healthy. A majority is two sites at the least, so one of them is not t.
func (h health) ok() bool { return wins(h.healthy, h.sites) }

func (h health) describe(site string, asTarget bool) string {
	switch {
	case h.sites == 0:
		return "no observer sites"
	case asTarget && h.failing > 0:
		return fmt.Sprintf("%s failing too", site)
	}
	return fmt.Sprintf("%s seen healthy by %d of %d sites (need %d)", site, h.healthy, h.sites, votesNeeded(h.sites))
}

// healthy counts, over every observer site including t itself, who sees
// site t healthy.
func (e *evaluator) healthy(gv groupView, t int) health {
	h := health{sites: len(e.sites)}
	for _, ov := range gv.sites[t].Observers {
		switch ov.State {
		case Healthy:
			h.healthy++
		case Failing:
			h.failing++
		}
	}
	return h
}

// Judge says what a target is judged for.
type Judge uint8

// The judgements.
const (
	// JudgeFailover: the policy's own failover, after the active site
	// was found down.
	JudgeFailover Judge = iota
	// JudgePlanned: a switchover, or whether the group has a target
	// before any outage. The target's database may still stream from the
	// active primary, as it does until the primary is fenced; a site
	// without probes has nothing to judge it by and passes.
	JudgePlanned
	// JudgeGuard: an operator's failover: the data-loss guard alone, as
	// for JudgePlanned; whether the site works is the operator's call.
	JudgeGuard
)

// eligible reports whether site t may take over from the active site a,
// or why not.
func (e *evaluator) eligible(gv groupView, t, a int, j Judge) (bool, string) {
	v := &gv.sites[t]
	p := gv.spec.GetPolicy()
	planned := j != JudgeFailover
	if planned && len(gv.spec.GetSites()[t].GetProbes()) == 0 {
		return true, ""
	}
	if h := e.healthy(gv, t); !h.ok() && j != JudgeGuard {
		return false, h.describe(v.Site, true)
	}
	e.node = ""
	db := &e.db[t]
	if db.n == 0 {
		if hasProbe(gv.spec.GetSites()[t], probePostgres) && (j != JudgeGuard || p.GetMaxLagBytes() > 0) {
			return false, fmt.Sprintf("%s has no fresh database observation", v.Site)
		}
		return true, ""
	}
	if e.hasNodes(t) {
		return e.eligibleNode(gv, t, a, j)
	}
	return e.eligibleDB(gv, db, v.Site, a, j)
}

// eligibleDB is the data-loss guard of eligible on one database: the
// site's only one, or one of its nodes (what names it).
func (e *evaluator) eligibleDB(gv groupView, db *dbCell, what string, a int, j Judge) (bool, string) {
	p := gv.spec.GetPolicy()
	planned := j != JudgeFailover
	if db.primary {
		// A primary that is not the active site is an old primary (fenced,
		// or never rebuilt): it stopped following when the group left it,
		// so moving back there would lose the writes made since.
		return false, fmt.Sprintf("%s is a primary, not a standby: rebuild it as a standby of the active site first", what)
	}
	if db.streaming && !planned {
		return false, fmt.Sprintf("%s still streams from its primary", what)
	}
	if maxB := p.GetMaxLagBytes(); maxB > 0 {
		if ok, why := e.positionGuard(gv, db, what, a, maxB); !ok {
			return false, why
		}
	}
	if maxMs := p.GetMaxLagMs(); maxMs > 0 {
		limit := time.Duration(maxMs) * time.Millisecond
		if db.unknownSeconds {
			return false, fmt.Sprintf("%s lag unknown (max_lag_time %s)", what, fmtDuration(limit))
		}
		if lag := time.Duration(db.lagSeconds * float64(time.Second)); lag > limit {
			return false, fmt.Sprintf("%s lags %s > max_lag_time %s", what, fmtDuration(lag), fmtDuration(limit))
		}
	}
	return true, ""
}

// positionGuard is the data-loss guard on WAL positions: what the standby db
// holds is within maxB of the furthest position the active site's primary
// was seen at. Either position unknown fails it: a stopped WAL receiver
// reports no lag however much it never received, so lag alone cannot
// pass it.
func (e *evaluator) positionGuard(gv groupView, db *dbCell, site string, a int, maxB int64) (bool, string) {
	active := gv.sites[a].Site
	held := db.wal
	if held == 0 {
		return false, fmt.Sprintf("%s WAL position unknown (max_lag %s)", site, fmtBytes(maxB))
	}
	pp := e.primaryAt(gv, a)
	if pp.WAL == 0 {
		return false, fmt.Sprintf("%s received %s, primary %s never seen at a known position (max_lag %s)", site, FormatLSN(held), active, fmtBytes(maxB))
	}
	if pp.WAL <= held {
		return true, ""
	}
	if behind := pp.WAL - held; behind > uint64(maxB) {
		return false, fmt.Sprintf("%s received %s, primary %s last seen at %s: %s behind, max_lag %s",
			site, FormatLSN(held), active, FormatLSN(pp.WAL), fmtBytes(int64(min(behind, math.MaxInt64))), fmtBytes(maxB))
	}
	return true, ""
}

// primaryAt is the furthest position the group's site a was seen at as a
// primary: the fresh observations of this evaluation, Input.Primaries
// (gossip) and the positions recorded in the group's status (Raft).
func (e *evaluator) primaryAt(gv groupView, a int) Position {
	pp := e.primaries[GroupSite{gv.spec.GetName(), gv.sites[a].Site}]
	for _, r := range gv.status.GetPrimaries() {
		if r.GetSite() != gv.sites[a].Site {
			continue
		}
		if rp := (Position{Timeline: r.GetTimeline(), WAL: r.GetWalLsn(), At: time.Unix(0, r.GetAtUnixNano())}); rp.Ahead(pp) {
			pp = rp
		}
	}
	if db := &e.db[a]; db.n > 0 && db.primary {
		if now := (Position{Timeline: db.tli, WAL: db.wal, At: e.now}); now.Ahead(pp) {
			pp = now
		}
	}
	for i := range e.nodes {
		if n := &e.nodes[i]; n.site == a && n.db.primary {
			if now := (Position{Timeline: n.db.tli, WAL: n.db.wal, At: e.now}); now.Ahead(pp) {
				pp = now
			}
		}
	}
	return pp
}

// targets counts the sites that could take over from the active site a
// in a planned switchover now, and says why none could.
func (e *evaluator) targets(gv groupView, a int) (int, string) {
	n := 0
	var why []string
	for t := range gv.sites {
		if t == a {
			continue
		}
		if ok, r := e.eligible(gv, t, a, JudgePlanned); ok {
			n++
		} else {
			why = append(why, r)
		}
	}
	if n > 0 {
		return n, ""
	}
	if len(why) == 0 {
		return 0, "the group has no other site"
	}
	return 0, strings.Join(why, "; ")
}

// FormatLSN writes a WAL position as PostgreSQL does (0/3A000000); 0 is
// "unknown".
func FormatLSN(lsn uint64) string {
	if lsn == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn))
}

func hasProbe(s *witnessv1.SiteSpec, kind string) bool {
	return slices.ContainsFunc(s.GetProbes(), func(p *witnessv1.ProbeSpec) bool { return p.GetKind() == kind })
}

func siteIndex(spec *witnessv1.GroupSpec, site string) int {
	for i, s := range spec.GetSites() {
		if s.GetName() == site {
			return i
		}
	}
	return -1
}

// resize returns s with length n, every element zero, reusing its array
// when it is large enough.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// fmtDuration rounds to a tenth of a second: "4.1s", "10s", "2m30s".
func fmtDuration(d time.Duration) string {
	if d > 0 && d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	s := d.Round(100 * time.Millisecond).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// fmtBytes prints a byte count in decimal units: "512 B", "48 MB", "1.5 GB".
func fmtBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%s %cB", trimFloat(v), "kMGTP"[i])
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.1f", v)
	return strings.TrimSuffix(s, ".0")
}

// Eligible reports whether site of group may take the group over now,
// judged for j on in as Evaluate would, or why not.
func Eligible(in Input, group, site string, j Judge) (bool, string) {
	_, ok, why := EligibleNode(in, group, site, j)
	return ok, why
}

// PrimaryAt is the furthest position the active site of group is known at
// in in (fresh observations, gossip and Raft), as the data-loss guard
// measures it; zero when unknown.
func PrimaryAt(in Input, group string) Position {
	e := newEvaluator(in)
	for gi, g := range in.Groups {
		if !e.indexed[gi] || g.GetSpec().GetName() != group {
			continue
		}
		gv := e.view(g.GetSpec(), g.GetStatus(), e.recs[e.start[gi]:e.start[gi+1]])
		if a := siteIndex(g.GetSpec(), g.GetStatus().GetActiveSite()); a >= 0 {
			return e.primaryAt(gv, a)
		}
	}
	return Position{}
}
