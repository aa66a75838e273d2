package sim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/clock"
	"github.com/sitewitness/witness/cluster"
	"github.com/sitewitness/witness/config"
	"github.com/sitewitness/witness/probes"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// The deployment every schedule runs: one witness at each of three sites,
// one group with a database at east and west, the DNS server at
// tiebreak.
var (
	sites    = []string{"east", "west", "tiebreak"}
	dbSites  = []string{"east", "west"}
	dnsSite  = "tiebreak"
	theGroup = "app"
)

// Group timing of the schedules.
const (
	failoverAfter = 10 * time.Second
	fenceAfter    = 5 * time.Second
)

const groupsDoc = `
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "10.0.1.20:5432"}]}
      - {name: west, probes: [{kind: tcp, address: "10.0.2.20:5432"}]}
    policy: {mode: auto, failover_after: 10s, fence_after: 5s, rearm: manual}
    actions:
      dns:
        server: "10.0.3.53:53"
        zone: example.test.
        tsig: {name: witness, algorithm: hmac-sha256, secret_file: %s}
        records:
          - {name: app.example.test., type: A, ttl: 5, values: {east: 192.0.2.10, west: 198.51.100.10}}
      postgres:
        dsn: {east: "postgres://witness@10.0.1.30:5432/postgres", west: "postgres://witness@10.0.2.30:5432/postgres"}
        fence: sql
        roles: [app]%s
`

// dataDirs is the part of the group's postgres action that lets each
// site's witness demote its database locally, for the schedules that
// run with local demotion (see LocalDemotion).
const dataDirs = `
        data_dir: {east: /var/lib/postgresql/15/main, west: /var/lib/postgresql/15/main}`

// Config is what one run of the simulator does.
type Config struct {
	Seed uint64
	// Faults is how long, in virtual time, faults are injected after the
	// cluster settles; Quiet how long the healed cluster then has to
	// carry out what it committed.
	Faults, Quiet time.Duration
	// Raft is the witnesses' Raft timing (heartbeat and election timeout).
	Raft time.Duration
	// Dir holds the witnesses' data_dirs.
	Dir string
	// Log, if set, receives the witnesses' logs.
	Log io.Writer
	// Events, if set, is the schedule to run instead of the seed's (a
	// minimised one); the seed still draws every message's fate.
	Events []event
	// Drift bounds how far each witness's clock rate is from true time
	// (0.005: up to half a per cent fast or slow), and Offset how far its
	// reading is; the seed draws each witness's rate and offset within
	// them. Zero runs every witness on true time.
	Drift  float64
	Offset time.Duration
}

// Result is what a run found.
type Result struct {
	Schedule   string   // the fault schedule drawn from the seed
	Events     []string // the simulator's own steps, in order, with their virtual times
	Log        []string // those steps and what the cluster did, in order
	Violations []string
	Stats      string
}

// Sim is one run of the simulator: a cluster, its network, its targets.
type Sim struct {
	cfg    Config
	net    *network
	raft   *raftRegistry
	gossip *gossipHub
	admin  *adminHub
	world  *world
	nodes  []*simNode
	logger *slog.Logger
	t0     time.Time
	grid   time.Duration  // the grid time of the current step, from t0
	ops    sync.WaitGroup // operator requests under way
	// tsigFile holds the DNS key the group names; nothing reads it but
	// the check that it exists.
	tsigFile string

	mu         sync.Mutex
	events     []string // the simulator's own steps
	log        []string // its steps and what it saw, in order
	violations []string
	cuts       map[[2]string]int // refcounts of the partitions in force
	committed  map[string]map[uint64]string
	maxToken   map[string]uint64
	checked    map[string]bool // failovers already judged, group@token
	deleted    bool            // the group is deleted and not yet re-created
}

type simNode struct {
	name, site string
	cfg        config.Node
	// clock is the machine's clock, kept across restarts of its witness.
	clock    clock.Clock
	skew     skew
	store    *raft.InmemStore
	snaps    *raft.InmemSnapshotStore
	node     *cluster.Node // nil while down
	ctx      context.Context
	cancel   context.CancelFunc
	checkers map[string]*checker
}

// New makes a simulator for cfg. Call it inside a synctest bubble.
func New(cfg Config) *Sim {
	nw := newNetwork(cfg.Seed)
	s := &Sim{cfg: cfg, net: nw, raft: &raftRegistry{by: map[raft.ServerAddress]*raftTransport{}}, gossip: &gossipHub{net: nw, by: map[string]*memGossip{}},
		admin: &adminHub{net: nw, by: map[string]adminEnd{}}, world: newWorld(nw), cuts: map[[2]string]int{},
		committed: map[string]map[uint64]string{}, maxToken: map[string]uint64{}, checked: map[string]bool{}}
	s.world.sim = s
	s.tsigFile = filepath.Join(cfg.Dir, "tsig.key")
	if err := os.WriteFile(s.tsigFile, []byte("c2ltdWxhdG9y\n"), 0o600); err != nil {
		panic(err)
	}
	s.logger = slog.New(slog.DiscardHandler)
	if cfg.Log != nil {
		s.logger = slog.New(slog.NewTextHandler(cfg.Log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	var voters []config.Voter
	clocks := Clocks(cfg.Seed, cfg.Drift, cfg.Offset)
	for i, site := range sites {
		c := config.Default()
		c.Name, c.Site = fmt.Sprintf("%s-1", site), site
		c.DataDir = filepath.Join(cfg.Dir, c.Name)
		ip := fmt.Sprintf("10.0.%d.1", i+1)
		c.RaftAddr, c.GossipAddr, c.AdminAddr, c.MetricsAddr = ip+":7000", ip+":7946", ip+":7001", ""
		c.Raft.HeartbeatTimeout = config.Duration(cfg.Raft)
		c.Raft.ElectionTimeout = config.Duration(cfg.Raft)
		c.Raft.LeaderLeaseTimeout = config.Duration(cfg.Raft / 2)
		sk := clocks[c.Name]
		s.nodes = append(s.nodes, &simNode{name: c.Name, site: site, cfg: c, store: raft.NewInmemStore(), snaps: raft.NewInmemSnapshotStore(),
			clock: clock.Skewed(clock.Real, sk.Rate, sk.Offset), skew: sk})
		voters = append(voters, config.Voter{Name: c.Name, RaftAddr: c.RaftAddr, GossipAddr: c.GossipAddr})
		nw.siteOf[c.Name] = site
	}
	for _, n := range s.nodes {
		n.cfg.InitialVoters = voters
	}
	s.world.dbs[theGroup] = map[string]*db{}
	for _, site := range dbSites {
		s.world.dbs[theGroup][site] = &db{site: site, inRecovery: site != "east"}
	}
	return s
}

// note adds one of the simulator's own steps to its event log: these
// depend on the seed alone.
func (s *Sim) note(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	line := fmt.Sprintf("%8s  %s", s.since(), fmt.Sprintf(format, args...))
	s.events = append(s.events, line)
	s.log = append(s.log, line)
}

// saw logs what the simulator saw the cluster do, which may differ
// between runs of a seed.
func (s *Sim) saw(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, fmt.Sprintf("%8s    · %s", s.since(), fmt.Sprintf(format, args...)))
}

// since is the grid time of the step under way; s.mu is held.
func (s *Sim) since() string {
	if s.t0.IsZero() {
		return "setup"
	}
	return fmt.Sprintf("%+.1fs", s.grid.Seconds())
}

// violate records a broken invariant.
func (s *Sim) violate(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := fmt.Sprintf("%s  %s", s.since(), fmt.Sprintf(format, args...))
	s.log = append(s.log, "  VIOLATION "+msg)
	if len(s.violations) < 20 {
		s.violations = append(s.violations, msg)
	}
}

func (s *Sim) start(n *simNode) error {
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.checkers = map[string]*checker{}
	tr := newRaftTransport(s.net, s.raft, n.name, raft.ServerAddress(n.cfg.RaftAddr))
	self := &nodeRef{}
	node, err := cluster.Start(context.Background(), cluster.Options{
		Config:        n.cfg,
		Clock:         n.clock,
		Logger:        s.logger,
		Runner:        runner{w: s.world, node: n.name, dns: dnsSite, self: self},
		LocalDatabase: localDatabase(s.world, n.name),
		Raft:          cluster.RaftParts{Transport: tr, Logs: n.store, Stable: n.store, Snapshots: n.snaps},
		Gossip:        s.gossip.start,
		Peers:         &peers{hub: s.admin, from: n.name},
		Probe: func(t probes.Target) probes.Checker {
			k := t.Group + "/" + t.Site + "/" + t.Name
			c, ok := n.checkers[k]
			if !ok {
				c = &checker{w: s.world, node: n.name, observer: n.site, group: t.Group, site: t.Site}
				n.checkers[k] = c
			}
			return c
		},
		NoAdminListener: true,
	})
	if err != nil {
		_ = tr.Close()
		return err
	}
	n.node = node
	self.set(node)
	s.admin.mu.Lock()
	s.admin.by[n.cfg.AdminAddr] = adminEnd{name: n.name, srv: node.AdminServer(), ctx: n.ctx}
	s.admin.mu.Unlock()
	return nil
}

// kill stops a witness as a crash would: it tells gossip nothing; its
// Raft stores and data_dir stay.
func (s *Sim) kill(n *simNode) {
	if n.node == nil {
		return
	}
	if g := s.gossip.get(n.cfg.GossipAddr); g != nil {
		g.crash()
	}
	n.cancel()
	s.admin.mu.Lock()
	delete(s.admin.by, n.cfg.AdminAddr)
	s.admin.mu.Unlock()
	_ = n.node.Close()
	n.node = nil
}

func (s *Sim) running() []*simNode {
	var out []*simNode
	for _, n := range s.nodes {
		if n.node != nil {
			out = append(out, n)
		}
	}
	return out
}

// leader is the running witness that leads, if one does.
func (s *Sim) leader() *simNode {
	for _, n := range s.running() {
		if n.node.IsLeader() {
			return n
		}
	}
	return nil
}

// operator calls the admin API of a running witness, chosen by the
// seed, as witnessctl would.
func (s *Sim) operator() *simNode {
	rs := s.running()
	if len(rs) == 0 {
		return nil
	}
	return rs[s.net.pick("operator", len(rs))]
}

func (s *Sim) applyGroups(ctx context.Context, n *cluster.Node, active string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dirs := ""
	if LocalDemotion(s.cfg.Seed) {
		dirs = dataDirs
	}
	_, err := n.AdminServer().ApplyGroups(ctx, &witnessv1.ApplyGroupsRequest{Document: fmt.Appendf(nil, groupsDoc, s.tsigFile, dirs), ActiveSites: map[string]string{theGroup: active}, By: "sim"})
	return err
}

// Up starts the witnesses, waits for a leader, applies the group with
// its primary at east and waits until its first plan is carried out. It
// reports false, with a violation recorded, when that takes over a
// minute.
func (s *Sim) Up(ctx context.Context) bool {
	for _, n := range s.nodes {
		if err := s.start(n); err != nil {
			s.violate("start %s: %v", n.name, err)
			return false
		}
	}
	setupBy := time.Now().Add(60 * time.Second)
	for {
		if time.Now().After(setupBy) {
			s.violate("setup: the group was not applied and carried out within 60s: %s; %s", s.carriedOut(), strings.Join(s.log, "; "))
			return false
		}
		time.Sleep(stepEvery)
		l := s.leader()
		if l == nil {
			continue
		}
		if _, ok := l.node.FSM().Group(theGroup); !ok {
			if err := s.applyGroups(ctx, l.node, "east"); err != nil {
				s.saw("apply groups: %v", err)
				continue
			}
		}
		if s.carriedOut() == "" {
			break
		}
	}
	s.mu.Lock()
	s.t0 = time.Now()
	s.mu.Unlock()
	s.note("cluster up, %s active at east", theGroup)
	return true
}

// Stop stops every witness.
func (s *Sim) Stop() {
	for _, n := range s.nodes {
		s.kill(n)
	}
}

// Run runs the schedule of the seed and returns what it found.
func (s *Sim) Run() Result {
	sched := Schedule(s.cfg.Seed, s.cfg.Faults)
	if s.cfg.Events != nil {
		sched.Events = s.cfg.Events
	}
	for _, n := range s.nodes {
		sched.Clocks = append(sched.Clocks, n.name+" "+n.skew.String())
	}
	res := Result{Schedule: sched.String()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer s.Stop()
	if !s.Up(ctx) {
		return s.finish(res)
	}
	pending := slices.Clone(sched.Events)
	var ends []ending
	for s.tick(); s.grid < s.cfg.Faults; s.tick() {
		for len(pending) > 0 && pending[0].At <= s.grid {
			e := pending[0]
			pending = pending[1:]
			if undo := s.apply(ctx, e); undo != nil {
				ends = append(ends, ending{at: e.At + e.Dur, undo: undo, what: e.String()})
			}
		}
		ends = s.runEnds(ends, s.grid)
		s.step()
	}
	for _, e := range ends {
		e.undo()
	}
	s.healAll()
	s.note("faults stop; all healed")
	for s.tick(); s.grid < s.cfg.Faults+s.cfg.Quiet; s.tick() {
		s.step()
	}
	s.ops.Wait()
	s.liveness()
	return s.finish(res)
}

// stepEvery is the period of the simulator's own steps.
const stepEvery = 100 * time.Millisecond

// tick waits for the simulator's next step, on a fixed grid of stepEvery
// from t0 whatever the steps before took, so that every step of a seed
// happens at the same grid time in every run.
func (s *Sim) tick() {
	s.mu.Lock()
	s.grid += stepEvery
	next := s.t0.Add(s.grid)
	s.mu.Unlock()
	if d := time.Until(next); d > 0 {
		time.Sleep(d)
	}
}

type ending struct {
	at   time.Duration
	undo func()
	what string
}

func (s *Sim) runEnds(ends []ending, now time.Duration) []ending {
	var keep []ending
	for _, e := range ends {
		if e.at <= now {
			e.undo()
			s.note("end of %s", e.what)
			continue
		}
		keep = append(keep, e)
	}
	return keep
}

func (s *Sim) finish(res Result) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	res.Events = slices.Clone(s.events)
	res.Log = slices.Clone(s.log)
	res.Violations = slices.Clone(s.violations)
	s.net.mu.Lock()
	var st []string
	for k, v := range s.net.stats {
		st = append(st, fmt.Sprintf("%s=%d", k, v))
	}
	s.net.mu.Unlock()
	slices.Sort(st)
	s.world.mu.Lock()
	st = append(st, fmt.Sprintf("stale_refused=%d", s.world.stale))
	for k, v := range s.world.writes {
		st = append(st, fmt.Sprintf("writes[%s]=%d", k, v))
	}
	s.world.mu.Unlock()
	res.Stats = strings.Join(st, " ")
	return res
}

func (s *Sim) healAll() {
	s.net.mu.Lock()
	clear(s.net.cut)
	clear(s.net.paused)
	clear(s.net.slow)
	clear(s.net.broken)
	clear(s.net.hold)
	s.net.faults = msgFaults{}
	s.net.mu.Unlock()
	s.mu.Lock()
	clear(s.cuts)
	s.mu.Unlock()
	s.world.mu.Lock()
	clear(s.world.service)
	clear(s.world.blind)
	clear(s.world.flap)
	s.world.mu.Unlock()
	for _, n := range s.nodes {
		if n.node == nil {
			if err := s.start(n); err != nil {
				s.violate("restart %s: %v", n.name, err)
			}
		}
	}
}

// step checks, after every step, what must hold of the replicated state,
// and lets the application write.
func (s *Sim) step() {
	s.world.write(theGroup)
	for _, n := range s.running() {
		for _, g := range n.node.FSM().Groups() {
			s.observe(n, g)
		}
	}
}

// observe checks one replica's view of a group: a token means the same
// site on every replica, ever; a failover needs a majority of the
// observer sites to have seen the old site fail.
func (s *Sim) observe(n *simNode, g *witnessv1.Group) {
	name, st := g.GetSpec().GetName(), g.GetStatus()
	s.mu.Lock()
	if s.committed[name] == nil {
		s.committed[name] = map[uint64]string{}
	}
	for _, h := range st.GetHistory() {
		if site, ok := s.committed[name][h.GetToken()]; ok && site != h.GetToSite() {
			s.mu.Unlock()
			s.violate("token %d of %s is %s on %s, but %s was committed", h.GetToken(), name, h.GetToSite(), n.name, site)
			s.mu.Lock()
		}
		s.committed[name][h.GetToken()] = h.GetToSite()
	}
	s.maxToken[name] = max(s.maxToken[name], st.GetToken())
	var judge []*witnessv1.Transition
	for _, h := range st.GetHistory() {
		k := fmt.Sprintf("%s@%d", name, h.GetToken())
		if h.GetKind() == witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER && !s.checked[k] {
			s.checked[k] = true
			judge = append(judge, h)
		}
	}
	s.mu.Unlock()
	for _, h := range judge {
		s.saw("failover of %s committed: %s -> %s at token %d by %s (%s)", name, h.GetFromSite(), h.GetToSite(), h.GetToken(), h.GetBy(), h.GetReason())
		at := time.Unix(0, h.GetAtUnixNano())
		from := h.GetFromSite()
		var saw []string
		observers := 0
		for _, o := range sites {
			if o == from {
				continue
			}
			observers++
			if s.world.failedBetween(o, name, from, at.Add(-failoverAfter-5*time.Second), at) {
				saw = append(saw, o)
			}
		}
		if need := observers/2 + 1; len(saw) < need {
			s.violate("failover of %s from %s at token %d although only %v of %d observer sites saw %s fail in the %s before it (need %d)",
				name, from, h.GetToken(), saw, observers, from, failoverAfter+5*time.Second, need)
		}
	}
}

// liveness checks, after the quiet period, that the healed cluster has a
// leader, that every replica holds every committed decision, and that the
// current token's plan is carried out on the targets.
func (s *Sim) liveness() {
	l := s.leader()
	if l == nil {
		s.violate("liveness: no leader after %s of quiet", s.cfg.Quiet)
		return
	}
	for _, n := range s.running() {
		for _, g := range l.node.FSM().Groups() {
			name := g.GetSpec().GetName()
			mine, ok := n.node.FSM().Group(name)
			switch {
			case !ok:
				s.violate("liveness: %s's replica lacks group %s", n.name, name)
			case mine.GetStatus().GetToken() != g.GetStatus().GetToken():
				s.violate("liveness: %s's replica holds %s at token %d, the leader at %d", n.name, name, mine.GetStatus().GetToken(), g.GetStatus().GetToken())
			}
		}
	}
	s.mu.Lock()
	deleted := s.deleted
	maxTok := s.maxToken[theGroup]
	s.mu.Unlock()
	g, ok := l.node.FSM().Group(theGroup)
	if !ok {
		if !deleted {
			s.violate("liveness: group %s is gone from the leader's replica", theGroup)
		}
		return
	}
	if t := g.GetStatus().GetToken(); t < maxTok {
		s.violate("committed decision lost: %s at token %d on the leader, token %d was committed", theGroup, t, maxTok)
	}
	if why := s.carriedOut(); why != "" {
		s.violate("liveness: after %s of quiet, %s", s.cfg.Quiet, why)
	}
	if why := s.seenEverywhere(l); why != "" {
		s.violate("liveness: after %s of quiet, %s", s.cfg.Quiet, why)
	}
}

// seenEverywhere says which site of the group the leader does not see
// healthy from every observer site, once everything is healed and every
// witness runs: the observations of a witness that restarted must reach
// the others again.
func (s *Sim) seenEverywhere(l *simNode) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := l.node.AdminServer().GetGroup(ctx, &witnessv1.GetGroupRequest{Name: theGroup})
	if err != nil {
		return fmt.Sprintf("the leader explains nothing: %v", err)
	}
	for _, sv := range resp.GetExplanation().GetSites() {
		seen := map[string]string{}
		for _, o := range sv.GetObservers() {
			seen[o.GetSite()] = o.GetState()
		}
		for _, o := range sites {
			if seen[o] != "healthy" {
				return fmt.Sprintf("the leader %s sees %s from %s as %q, want healthy (observers: %v)", l.name, sv.GetSite(), o, seen[o], seen)
			}
		}
	}
	return ""
}

// carriedOut says what of the leader's current plan is not carried out
// on the targets, or "" when all of it is.
func (s *Sim) carriedOut() string {
	l := s.leader()
	if l == nil {
		return "no leader"
	}
	g, ok := l.node.FSM().Group(theGroup)
	if !ok {
		return "no group"
	}
	st := g.GetStatus()
	plan := actions.Plan(g)
	done := map[string]bool{}
	for _, r := range st.GetSteps() {
		if r.GetToken() == st.GetToken() && r.GetOk() {
			done[r.GetStep()] = true
		}
	}
	for _, step := range plan {
		if !done[step] {
			return fmt.Sprintf("step %s of token %d not done", step, st.GetToken())
		}
	}
	s.world.mu.Lock()
	defer s.world.mu.Unlock()
	if slices.Contains(plan, actions.StepPromote) {
		d := s.world.dbs[theGroup][st.GetActiveSite()]
		if !d.writable() || d.token != st.GetToken() {
			return fmt.Sprintf("database at %s is %s, want primary at token %d", st.GetActiveSite(), d, st.GetToken())
		}
	}
	if r := s.world.dns[theGroup]; slices.Contains(plan, actions.StepDNS) && (r == nil || r.site != st.GetActiveSite() || r.token != st.GetToken()) {
		return fmt.Sprintf("dns answers %v, want %s at token %d", r, st.GetActiveSite(), st.GetToken())
	}
	return ""
}
