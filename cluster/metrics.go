package cluster

import (
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/policy"
	"github.com/sitewitness/witness/probes"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Metrics come in two kinds. The replicated state (groups, tokens,
// transitions, step results) and this witness's own view (Raft, gossip,
// observations, the policy's decision, the self-fence) are read at scrape
// time, so they never lag, cost nothing between scrapes, and a count such
// as transitions is the same on every witness and survives a leader change
// or a restart. Durations of events (commits, steps, probes) are
// histograms this process observes; the leader-only ones say so.
//
// Labels are bounded: group, site, step and probe kind come from the
// group specs; no token, address or error text is a label. A group has
// few series by default, so that 10,000 groups stay cheap to scrape and
// store: its token, active site, decision, eligible targets, failing
// steps and DNS drift (what the alerts name a group by). The rest is
// counted over groups (groups by active site, mode and failing step,
// transitions by kind and sites, self-fenced groups) and exported per
// group only with metrics_group_detail; the per group, site and observer
// site verdicts only with metrics_group_observations.

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descLeader      = desc("witness_raft_leader", "1 while this witness is the Raft leader.")
	descState       = desc("witness_raft_state", "Raft state of this witness (0 follower, 1 candidate, 2 leader, 3 shutdown).")
	descIndex       = desc("witness_raft_applied_index", "Last Raft index applied to the state machine.")
	descCommitIndex = desc("witness_raft_commit_index", "Last Raft index known committed.")
	descTerm        = desc("witness_raft_term", "Current Raft term.")
	descLastContact = desc("witness_raft_last_contact_seconds", "Seconds since this witness last heard from the Raft leader; 0 on the leader itself.")
	descVoters      = desc("witness_raft_voters", "Voters in the Raft configuration.")
	descVotersAlive = desc("witness_raft_voters_alive", "Voters in the Raft configuration that gossip sees alive from this witness, this one included.")
	descAlive       = desc("witness_gossip_members_alive", "Witnesses that gossip sees alive, this one included.")
	descQueued      = desc("witness_gossip_broadcasts_queued", "Observation broadcasts waiting to be gossiped.")

	descToken       = desc("witness_group_token", "Current fencing token of a group.", "group")
	descActive      = desc("witness_group_active_site", "1 for the site that is active for a group; with metrics_group_detail also 0 for its other sites.", "group", "site")
	descArmed       = desc("witness_group_armed", "1 while the group may fail over automatically. Exported when metrics_group_detail is set.", "group")
	descMode        = desc("witness_group_mode", "Always 1; the mode label is the group's current mode (auto, manual, observe). Exported when metrics_group_detail is set.", "group", "mode")
	descPending     = desc("witness_group_switchover_pending", "1 while a two-phase switchover of the group waits for its old site's fence. Exported when metrics_group_detail is set.", "group")
	descTransitions = desc("witness_transitions_total", "Transitions of a group's active site since it was created, from the replicated state: kind is initial, failover, switchover or failback, with _prepare or _abort for the phases of a two-phase switchover. Exported when metrics_group_detail is set.", "group", "kind", "from_site", "to_site")
	descLastMove    = desc("witness_group_last_transition_timestamp_seconds", "When the group's latest transition was decided (Unix seconds). Exported when metrics_group_detail is set.", "group")
	descSteps       = desc("witness_group_step_results", "Step results recorded for the group's current token, by step and outcome. Exported when metrics_group_detail is set.", "group", "step", "result")
	descStepsFail   = desc("witness_group_steps_failing", "Steps of the group's current token whose latest attempt failed: they are retried (waiting) until they succeed.", "group")
	descStepFailFor = desc("witness_group_step_failing_seconds", "How long a step of the group's current token has been failing (since its first failed attempt after the last success); 0 once it succeeded. Exported when metrics_group_detail is set.", "group", "step")

	descActiveGroups   = desc("witness_active_site_groups", "Groups whose active site is site, from the replicated state.", "site")
	descModeGroups     = desc("witness_mode_groups", "Groups in each mode (auto, manual, observe), from the replicated state.", "mode")
	descSiteMoves      = desc("witness_site_transitions", "Transitions of the active site summed over the groups that exist, by kind and sites, from the replicated state (a failover between any two sites of a group starts at 0). A gauge: deleting a group takes its transitions out of the sum.", "kind", "from_site", "to_site")
	descStepFailGroups = desc("witness_step_failing_groups", "Groups whose step of the current token failed at its latest attempt, by step (0 for a step recorded for some group and failing in none).", "step")

	descDecision  = desc("witness_group_decision_state", "1 for the policy's current decision about a group as this witness evaluates it (the leader's is the one acted on): healthy, waiting, failing_over, disarmed, blocked_by_data_loss_guard, no_eligible_target, ...", "group", "state")
	descTargets   = desc("witness_group_eligible_targets", "Sites that could take a group over now, as this witness evaluates it: seen working and within the data-loss guard (as a planned switchover judges it). 0 means a loss of the active site would leave the group where it is.", "group")
	descDecisions = desc("witness_decision_groups", "Groups in each decision state, as this witness evaluates them.", "state")
	descObsState  = desc("witness_observation_state", "Verdict of an observer site on one site of a group, as this witness sees it: 1 healthy, 0 failing, -1 unknown (no fresh observation). Exported when metrics_group_observations is set.", "group", "site", "observer_site")
	descObsGroups = desc("witness_observation_groups", "Groups whose site an observer site sees in each state (healthy, failing, unknown), as this witness sees it.", "site", "observer_site", "state")
	descObsAge    = desc("witness_observation_age_seconds", "Age of the freshest observation this witness holds from an observer witness, by this witness's clock.", "observer", "observer_site")

	descSelfFenced      = desc("witness_self_fenced", "1 while this witness has fenced its own site for a group active here, having lost its lease with the voters. Exported when metrics_group_detail is set.", "group")
	descSelfFencedN     = desc("witness_self_fenced_groups", "Groups for which this witness has fenced its own site, having lost its lease with the voters.")
	descSelfFencedSince = desc("witness_self_fenced_since_timestamp_seconds", "When this witness fenced its own site for the group (Unix seconds); present only while fenced.", "group")

	descDNSDrift = desc("witness_dns_drift_total", "Managed DNS records the leader's periodic check found different from the group's current token (edited by hand), put back or not. Leader only: counted by the witness that leads.", "group")
)

var scrapeDescs = []*prometheus.Desc{descLeader, descState, descIndex, descCommitIndex, descTerm, descLastContact, descVoters, descVotersAlive,
	descAlive, descQueued, descToken, descActive, descArmed, descMode, descPending, descTransitions, descLastMove, descSteps, descStepsFail,
	descStepFailFor, descActiveGroups, descModeGroups, descSiteMoves, descStepFailGroups, descDecision, descTargets, descDecisions,
	descObsState, descObsGroups, descObsAge, descSelfFenced, descSelfFencedN, descSelfFencedSince, descDNSDrift}

// detailDescs are exported per group only with metrics_group_detail, and
// optionalDescs only with metrics_group_observations: alerts must not read
// them.
var (
	detailDescs   = []*prometheus.Desc{descArmed, descMode, descPending, descTransitions, descLastMove, descSteps, descStepFailFor, descSelfFenced}
	optionalDescs = append([]*prometheus.Desc{descObsState}, detailDescs...)
)

// durationBuckets cover a few milliseconds to a few minutes.
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// nodeMetrics are the counts and durations of events that the state does
// not keep.
type nodeMetrics struct {
	localFenceHookFailures *prometheus.CounterVec
	leaseRenewals          prometheus.Counter
	leaderChanges          prometheus.Counter
	gossipDropped          prometheus.Counter
	applyDuration          *prometheus.HistogramVec
	stepDuration           *prometheus.HistogramVec
	verdictToCommit        prometheus.Histogram
	commitToSettled        *prometheus.HistogramVec
	probeDuration          *prometheus.HistogramVec
	probeFailures          *prometheus.CounterVec
	grpc                   *grpcprom.ServerMetrics

	lastLeader atomic.Value // raft.ServerID of the last leader seen

	mu     sync.Mutex
	due    map[string]time.Time // group -> when its down verdict held failover_after, as the leader last decided
	fenced map[string]time.Time // group -> since when this witness fences its site
	// drift counts, per group, the DNS drift the leader's check found
	// here: a counter exported at scrape for every group with records,
	// not a counter vector's child each (about 900 bytes a group).
	drift map[string]uint64
}

// addDrift counts one DNS drift found for group.
func (m *nodeMetrics) addDrift(group string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drift[group]++
}

// driftOf is the DNS drift counted for group.
func (m *nodeMetrics) driftOf(group string) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.drift[group]
}

func newNodeMetrics() *nodeMetrics {
	return &nodeMetrics{
		localFenceHookFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "witness_local_fence_hook_failures_total",
			Help: "local_fence hooks that failed on this witness when it fenced its own site after losing the Raft majority.",
		}, []string{"group", "hook"}),
		leaseRenewals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "witness_lease_renewals_total",
			Help: "Lease renewals of this witness that a quorum of voters granted.",
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "witness_raft_leader_changes_total",
			Help: "Times this witness saw the Raft leader change to another witness (or to itself).",
		}),
		gossipDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "witness_gossip_messages_dropped_total",
			Help: "Gossip messages with observations dropped because this witness's inbox was full (push/pull repairs them).",
		}),
		applyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "witness_raft_apply_duration_seconds",
			Help:    "From handing a command to Raft to its being committed and applied, by command. Leader only.",
			Buckets: durationBuckets,
		}, []string{"command"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "witness_step_duration_seconds",
			Help:    "Duration of the reconciler's step attempts (fence, promote, dns, hook:NAME, notify, settle) by result (ok, failed). Leader only: observed by the witness that ran the step.",
			Buckets: durationBuckets,
		}, []string{"step", "result"}),
		verdictToCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "witness_failover_commit_seconds",
			Help:    "From the moment a majority's verdict on the active site held failover_after to the failover's commit: what Witness adds to failover_after. Leader only.",
			Buckets: durationBuckets,
		}),
		commitToSettled: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "witness_transition_settle_seconds",
			Help:    "From a transition's decision to its DNS records settled (the settle step's success), by transition kind. Leader only.",
			Buckets: durationBuckets,
		}, []string{"kind"}),
		probeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "witness_probe_duration_seconds",
			Help:    "Duration of this witness's probe checks, by target site and probe kind.",
			Buckets: durationBuckets,
		}, []string{"site", "kind"}),
		probeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "witness_probe_failures_total",
			Help: "Probe checks of this witness that failed, by target site and probe kind.",
		}, []string{"site", "kind"}),
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets([]float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30}))),
		due:    map[string]time.Time{},
		fenced: map[string]time.Time{},
		drift:  map[string]uint64{},
	}
}

// registerMetrics registers the node's metrics with reg and counts leader
// changes from Raft's observations.
func (n *Node) registerMetrics(reg prometheus.Registerer) {
	m := n.metrics
	reg.MustRegister(m.collectors(n)...)
	if n.grpcSrv != nil {
		// Every method has its series from the start, at zero.
		m.grpc.InitializeMetrics(n.grpcSrv)
	}
	// The filter runs on Raft's goroutine and never blocks; with no
	// channel nothing is sent.
	n.raft.RegisterObserver(raft.NewObserver(nil, false, func(o *raft.Observation) bool {
		if lo, ok := o.Data.(raft.LeaderObservation); ok && lo.LeaderID != "" {
			if prev, _ := m.lastLeader.Swap(lo.LeaderID).(raft.ServerID); prev != lo.LeaderID {
				m.leaderChanges.Inc()
			}
		}
		return false
	}))
}

// collectors are every collector of a node's metrics.
func (m *nodeMetrics) collectors(n *Node) []prometheus.Collector {
	return []prometheus.Collector{&collector{n: n, detail: n.cfg.MetricsGroupDetail}, m.localFenceHookFailures, m.leaseRenewals, m.leaderChanges, m.gossipDropped,
		m.applyDuration, m.stepDuration, m.verdictToCommit, m.commitToSettled, m.probeDuration, m.probeFailures, m.grpc}
}

// grpcServerOptions instrument the admin API: requests, codes and latency
// by method (go-grpc-middleware's Prometheus provider).
func (m *nodeMetrics) grpcServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.grpc.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(m.grpc.StreamServerInterceptor()),
	}
}

// NewBuildInfoCollector exports witness_build_info with the version given
// (set at build time) and the Go version.
func NewBuildInfoCollector(version string) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "witness_build_info",
		Help:        "Always 1; the labels say which witnessd build runs.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	}, func() float64 { return 1 })
}

// probeObserver counts each probe check, then hands it on.
func (m *nodeMetrics) probeObserver(next func(probes.Observation)) func(probes.Observation) {
	return func(o probes.Observation) {
		if !o.CheckedAt.IsZero() {
			m.probeDuration.WithLabelValues(o.Site, string(o.Kind)).Observe(o.Latency.Seconds())
			if !o.OK {
				m.probeFailures.WithLabelValues(o.Site, string(o.Kind)).Inc()
			}
		}
		next(o)
	}
}

// decided keeps, from the leader's evaluation, when each down group's
// verdict held failover_after.
func (m *nodeMetrics) decided(out policy.Output) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// A new map, not the old one cleared: after a site failover had
	// every group due, a cleared map would keep room for all of them.
	m.due = map[string]time.Time{}
	for g, d := range out.Decisions {
		if !d.Due.IsZero() {
			m.due[g] = d.Due
		}
	}
}

// selfFenced keeps which groups this witness fences its site for, and
// since when.
func (m *nodeMetrics) selfFenced(now time.Time, groups map[string]*selfFence) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for g := range m.fenced {
		if groups[g] == nil {
			delete(m.fenced, g)
		}
	}
	for g := range groups {
		if _, ok := m.fenced[g]; !ok {
			m.fenced[g] = now
		}
	}
}

// applied observes a command this leader committed and applied.
func (n *Node) applied(cmd proto.Message, took time.Duration) {
	m, now := n.metrics, time.Now()
	m.applyDuration.WithLabelValues(commandName(cmd)).Observe(took.Seconds())
	switch c := cmd.(type) {
	case *witnessv1.TransitionCommand:
		if c.GetKind() != witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER {
			return
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, mv := range c.GetMoves() {
			if due, ok := m.due[mv.GetGroup()]; ok {
				m.verdictToCommit.Observe(max(now.Sub(due), 0).Seconds())
			}
		}
	case *witnessv1.RecordStepCommand:
		n.stepRecorded(c, now)
	case *witnessv1.RecordStepsCommand:
		for _, rec := range c.GetRecords() {
			n.stepRecorded(rec, now)
		}
	}
}

// stepRecorded observes one step result this leader committed.
func (n *Node) stepRecorded(c *witnessv1.RecordStepCommand, now time.Time) {
	m, r := n.metrics, c.GetResult()
	m.stepDuration.WithLabelValues(r.GetStep(), result(r.GetOk())).Observe(float64(r.GetDurationMs()) / 1000)
	if r.GetStep() != actions.StepSettle || !r.GetOk() {
		return
	}
	g, ok := n.fsm.Group(c.GetGroup())
	if !ok {
		return
	}
	for _, t := range g.GetStatus().GetHistory() {
		if t.GetToken() == r.GetToken() {
			m.commitToSettled.WithLabelValues(kindName(t)).Observe(max(now.Sub(time.Unix(0, t.GetAtUnixNano())), 0).Seconds())
		}
	}
}

// commandName is a command's type in snake case: put_groups, transition,
// record_step.
func commandName(cmd proto.Message) string {
	return snake(strings.TrimSuffix(string(cmd.ProtoReflect().Descriptor().Name()), "Command"))
}

// snake turns CamelCase into snake_case.
func snake(name string) string {
	var b strings.Builder
	for i, r := range name {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// kindName is a transition's kind label: failover, switchover_prepare.
func kindName(t *witnessv1.Transition) string {
	return kindLabel(t.GetKind(), t.GetPhase())
}

func kindLabel(k witnessv1.TransitionKind, phase string) string {
	s := strings.ToLower(strings.TrimPrefix(k.String(), "TRANSITION_KIND_"))
	if phase != "" {
		s += "_" + phase
	}
	return s
}

func result(ok bool) string {
	if ok {
		return "ok"
	}
	return "failed"
}

// collector reads the node's state at scrape time; detail adds the per
// group series of metrics_group_detail.
type collector struct {
	n      *Node
	detail bool
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range scrapeDescs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n, now := c.n, time.Now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	groups := n.fsm.Groups()
	c.collectRaft(gauge)
	t := newGroupTotals()
	for _, g := range groups {
		c.collectGroup(ch, gauge, g, now, t)
	}
	t.collect(gauge)
	c.collectDrift(ch, groups)
	c.collectPolicy(gauge, groups, now)
	c.collectSelfFence(gauge, groups)
}

// collectDrift exports the DNS drift counted for every group with DNS
// records, 0 until some is found, so an alert on it has a series to read.
// Counts of groups deleted or without records any more are let go.
func (c *collector) collectDrift(ch chan<- prometheus.Metric, groups []*witnessv1.Group) {
	m := c.n.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	kept := 0
	for _, g := range groups {
		if g.GetSpec().GetActions().GetDns() == nil {
			continue
		}
		name := g.GetSpec().GetName()
		v, ok := m.drift[name]
		if ok {
			kept++
		}
		ch <- prometheus.MustNewConstMetric(descDNSDrift, prometheus.CounterValue, float64(v), name)
	}
	if kept == len(m.drift) {
		return
	}
	exported := make(map[string]bool, len(groups))
	for _, g := range groups {
		if g.GetSpec().GetActions().GetDns() != nil {
			exported[g.GetSpec().GetName()] = true
		}
	}
	for name := range m.drift {
		if !exported[name] {
			delete(m.drift, name)
		}
	}
}

func (c *collector) collectRaft(gauge func(*prometheus.Desc, float64, ...string)) {
	n := c.n
	st := n.raft.State()
	gauge(descLeader, b2f(st == raft.Leader))
	gauge(descState, float64(st))
	gauge(descIndex, float64(n.raft.AppliedIndex()))
	gauge(descCommitIndex, float64(n.raft.CommitIndex()))
	gauge(descTerm, float64(n.raft.CurrentTerm()))
	var contact float64
	if st != raft.Leader {
		if lc := n.raft.LastContact(); !lc.IsZero() {
			contact = time.Since(lc).Seconds()
		}
	}
	gauge(descLastContact, contact)
	alive := map[string]bool{n.cfg.Name: true}
	if n.gossip != nil {
		members := n.gossip.alive()
		gauge(descAlive, float64(len(members)))
		for name := range members {
			alive[name] = true
		}
	}
	if n.obs != nil && n.obs.queue != nil {
		gauge(descQueued, float64(n.obs.queue.NumQueued()))
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		voters, up := 0, 0
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				voters++
				if alive[string(s.ID)] {
					up++
				}
			}
		}
		gauge(descVoters, float64(voters))
		gauge(descVotersAlive, float64(up))
	}
}

// moveKey is a transition's kind and sites.
type moveKey struct{ kind, from, to string }

// groupTotals are the replicated state's series counted over groups.
type groupTotals struct {
	active      map[string]int // site -> groups active there
	modes       map[string]int
	moves       map[moveKey]uint64
	stepFailing map[string]int // step -> groups whose latest attempt failed
}

var modeWords = []string{"auto", "manual", "observe"}

func newGroupTotals() *groupTotals {
	t := &groupTotals{active: map[string]int{}, modes: map[string]int{}, moves: map[moveKey]uint64{}, stepFailing: map[string]int{}}
	for _, m := range modeWords {
		t.modes[m] = 0
	}
	return t
}

func (t *groupTotals) collect(gauge func(*prometheus.Desc, float64, ...string)) {
	for site, v := range t.active {
		gauge(descActiveGroups, float64(v), site)
	}
	for m, v := range t.modes {
		gauge(descModeGroups, float64(v), m)
	}
	for k, v := range t.moves {
		gauge(descSiteMoves, float64(v), k.kind, k.from, k.to)
	}
	for step, v := range t.stepFailing {
		gauge(descStepFailGroups, float64(v), step)
	}
}

func (c *collector) collectGroup(ch chan<- prometheus.Metric, gauge func(*prometheus.Desc, float64, ...string), g *witnessv1.Group, now time.Time, t *groupTotals) {
	name, s := g.GetSpec().GetName(), g.GetStatus()
	gauge(descToken, float64(s.GetToken()), name)
	mode := s.GetMode()
	if mode == witnessv1.Mode_MODE_UNSPECIFIED {
		mode = witnessv1.Mode_MODE_AUTO
	}
	modeWord := strings.ToLower(strings.TrimPrefix(mode.String(), "MODE_"))
	t.modes[modeWord]++
	for _, site := range g.GetSpec().GetSites() {
		active := site.GetName() == s.GetActiveSite()
		t.active[site.GetName()] += int(b2f(active))
		if active || c.detail {
			gauge(descActive, b2f(active), name, site.GetName())
		}
	}
	// A failover between every two sites is counted from zero, so that an
	// alert on its increase sees the first one.
	moves := map[moveKey]uint64{}
	for _, a := range g.GetSpec().GetSites() {
		for _, b := range g.GetSpec().GetSites() {
			if a != b {
				moves[moveKey{"failover", a.GetName(), b.GetName()}] = 0
			}
		}
	}
	for _, tc := range s.GetTransitionCounts() {
		moves[moveKey{kindLabel(tc.GetKind(), tc.GetPhase()), tc.GetFromSite(), tc.GetToSite()}] += tc.GetCount()
	}
	for k, v := range moves {
		t.moves[k] += v
	}

	// Step results of the current token, oldest first: counts by outcome,
	// and for each step whether its latest attempt failed and since when.
	type stepKey struct{ step, result string }
	counts := map[stepKey]int{}
	failingSince := map[string]int64{} // step -> first failure after the last success; 0 if ok
	var order []string
	for _, r := range s.GetSteps() {
		if r.GetToken() != s.GetToken() {
			continue
		}
		counts[stepKey{r.GetStep(), result(r.GetOk())}]++
		since, seen := failingSince[r.GetStep()]
		if !seen {
			order = append(order, r.GetStep())
		}
		switch {
		case r.GetOk():
			failingSince[r.GetStep()] = 0
		case !seen || since == 0:
			failingSince[r.GetStep()] = r.GetStartedUnixNano()
		}
	}
	failing := 0
	for _, step := range order {
		since := failingSince[step]
		if since != 0 {
			failing++
		}
		t.stepFailing[step] += int(b2f(since != 0))
		if c.detail {
			var d float64
			if since != 0 {
				d = max(now.Sub(time.Unix(0, since)), 0).Seconds()
			}
			gauge(descStepFailFor, d, name, step)
		}
	}
	gauge(descStepsFail, float64(failing), name)
	if !c.detail {
		return
	}
	gauge(descArmed, b2f(s.GetArmed()), name)
	gauge(descPending, b2f(s.GetPending() != nil), name)
	gauge(descMode, 1, name, modeWord)
	for k, v := range moves {
		ch <- prometheus.MustNewConstMetric(descTransitions, prometheus.CounterValue, float64(v), name, k.kind, k.from, k.to)
	}
	if h := s.GetHistory(); len(h) > 0 {
		gauge(descLastMove, float64(h[len(h)-1].GetAtUnixNano())/1e9, name)
	}
	for k, v := range counts {
		gauge(descSteps, float64(v), name, k.step, k.result)
	}
}

// obsValue encodes a verdict for witness_observation_state.
func obsValue(s policy.State) float64 {
	switch s {
	case policy.Healthy:
		return 1
	case policy.Failing:
		return 0
	}
	return -1
}

func obsWord(s policy.State) string {
	switch s {
	case policy.Healthy:
		return "healthy"
	case policy.Failing:
		return "failing"
	}
	return "unknown"
}

// collectPolicy evaluates the policy as this witness sees things now: the
// decision per group, who sees which site how, and how fresh each
// observer's observations are.
func (c *collector) collectPolicy(gauge func(*prometheus.Desc, float64, ...string), groups []*witnessv1.Group, now time.Time) {
	n := c.n
	if n.obs == nil {
		return
	}
	// As the leader evaluates: the observations read where they are
	// held, not copied (13 MB at 10,000 groups, at every scrape).
	var out policy.Output
	freshest := map[string]policy.Observation{}
	n.withInput(now, func(in policy.Input) {
		out = policy.Evaluate(in)
		for _, o := range in.Observations {
			if f, ok := freshest[o.Observer]; !ok || o.CheckedAt.After(f.CheckedAt) {
				freshest[o.Observer] = o
			}
		}
	})
	byState := make(map[policy.DecisionState]int, len(policy.DecisionStates))
	type obsKey struct{ site, observer, state string }
	seen := map[obsKey]int{}
	perGroup := n.cfg.MetricsGroupObservations
	for _, g := range groups {
		name := g.GetSpec().GetName()
		d, ok := out.Decisions[name]
		if !ok {
			continue
		}
		byState[d.State]++
		gauge(descDecision, 1, name, string(d.State))
		gauge(descTargets, float64(d.Targets), name)
		for _, sv := range d.Sites {
			for _, ov := range sv.Observers {
				seen[obsKey{sv.Site, ov.Site, obsWord(ov.State)}]++
				if perGroup {
					gauge(descObsState, obsValue(ov.State), name, sv.Site, ov.Site)
				}
			}
		}
	}
	for _, s := range policy.DecisionStates {
		gauge(descDecisions, float64(byState[s]), string(s))
	}
	pairs := map[[2]string]bool{}
	for k := range seen {
		pairs[[2]string{k.site, k.observer}] = true
	}
	for p := range pairs {
		for _, st := range []policy.State{policy.Healthy, policy.Failing, policy.Unknown} {
			w := obsWord(st)
			gauge(descObsGroups, float64(seen[obsKey{p[0], p[1], w}]), p[0], p[1], w)
		}
	}
	for observer, o := range freshest {
		if o.CheckedAt.IsZero() {
			continue
		}
		gauge(descObsAge, max(now.Sub(o.CheckedAt), 0).Seconds(), observer, o.ObserverSite)
	}
}

// collectSelfFence reports how many groups this witness fences its site
// for, since when each, and with detail, for every group active at this
// witness's site, whether it fences it.
func (c *collector) collectSelfFence(gauge func(*prometheus.Desc, float64, ...string), groups []*witnessv1.Group) {
	m := c.n.metrics
	m.mu.Lock()
	fenced := make(map[string]time.Time, len(m.fenced))
	for g, t := range m.fenced {
		fenced[g] = t
	}
	m.mu.Unlock()
	n := 0
	for _, g := range groups {
		name := g.GetSpec().GetName()
		since, on := fenced[name]
		if on {
			n++
			gauge(descSelfFencedSince, float64(since.UnixNano())/1e9, name)
		}
		if c.detail && (on || g.GetStatus().GetActiveSite() == c.n.cfg.Site) {
			gauge(descSelfFenced, b2f(on), name)
		}
	}
	gauge(descSelfFencedN, float64(n))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
