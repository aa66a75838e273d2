package actions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/clock"
	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Step names, in plan order. They are recorded in the replicated state.
// Each hook is a step of its own between them, named by HookStep.
const (
	StepFence   = "fence"
	StepPromote = "promote"
	StepDNS     = "dns"
	StepNotify  = "notify"
	StepSettle  = "settle"
	// StepCatchUp is the second step of a switchover's first phase: wait
	// until the target has replayed the fenced primary's final position.
	StepCatchUp = "catchup"
	// StepCreationFence, followed by a site's name, fences that site's
	// database when a group is created elsewhere.
	StepCreationFence = "fence:"
	// StepRepoint points the other standbys of a group with several
	// nodes at a site at the node promoted (postgres nodes, on a move).
	StepRepoint = "repoint"
)

// DefaultDNSCheckEvery is how often the records of a settled group are
// checked for drift when its spec does not say.
const DefaultDNSCheckEvery = 30 * time.Second

// hookMargin is added to a hook's own timeout to bound its step: time to
// reach a witness at another site and for that witness to catch up.
const hookMargin = 5 * time.Second

// Errors of the reconciler.
var (
	// ErrNotLeader: the node no longer leads; the plan stops and the next
	// leader resumes it.
	ErrNotLeader = errors.New("not the leader")
	// ErrNotSettled: DNS does not yet answer with the new value everywhere.
	ErrNotSettled = errors.New("not settled yet")
	// ErrUnsupported: an action this version cannot carry out.
	ErrUnsupported = errors.New("not supported yet")
	// ErrBestEffort: only best-effort parts of a step failed.
	ErrBestEffort = errors.New("best effort")
	// ErrFenceNotConfirmed: promotion waits, because the old site's
	// database is not confirmed fenced and, in a failover, its lease has
	// not provably expired.
	ErrFenceNotConfirmed = errors.New("old site not confirmed fenced")
	// ErrLeaseRunOut: too much time passed on the monotonic clock since
	// this node last verified its leadership; the step was not started.
	ErrLeaseRunOut = errors.New("leadership verified too long ago")
	// ErrNotCaughtUp: the switchover's target has not yet replayed the
	// fenced primary's final position.
	ErrNotCaughtUp = errors.New("target not caught up")
)

// Rules that allow a promotion, recorded in the promote step's result.
const (
	// RuleFenceConfirmed: the fence step succeeded at the current token.
	RuleFenceConfirmed = "fence_confirmed"
	// RuleLeaseExpired: a failover whose old site could not be fenced, but
	// a quorum of voters saw every witness there without a lease for
	// fence_after plus the margin, so the site has demoted its database
	// itself. Only for an old site whose database its witness demotes
	// locally (data_dir there), or that has none: an SQL self-fence can
	// be refused by the database, and the lease does not say it held.
	RuleLeaseExpired = "lease_expired"
	// RuleNoFence: the group's spec says fence: none.
	RuleNoFence = "fence_none"
	// RuleNoOldSite: the token did not move the group from another site.
	RuleNoOldSite = "no_old_site"
	// RuleOldSiteDown: an operator's failover whose caller attested that
	// the old site is down, and the old site could be neither fenced nor
	// shown to have fenced itself.
	RuleOldSiteDown = "old_site_down"
)

// Layers that confirm the fence of an old site, recorded in the fence
// step's result (StepResult.fenced_by).
const (
	// FencedByDemote: a witness at the old site stopped its database and
	// left it able to start only as a standby.
	FencedByDemote = "demote"
	// FencedBySQL: the leader's SQL fence of the old primary.
	FencedBySQL = "sql"
)

// ErrNoLocalDemotion: the old site's database cannot be demoted by a
// witness there (no data_dir for that site in the group's spec); the SQL
// fence is the only layer.
var ErrNoLocalDemotion = errors.New("no local demotion at the site")

// Leader is what the reconciler needs of the node it runs on.
type Leader interface {
	// Groups returns the replicated groups.
	Groups() []*witnessv1.Group
	// Apply commits a command through Raft.
	Apply(ctx context.Context, cmd proto.Message) (fsm.Result, error)
	// VerifyLeader confirms with a quorum that this node still leads.
	VerifyLeader() error
	// SiteLeaseExpired returns nil once a quorum of voters reports that
	// every witness of site has gone without a lease for fence_after plus
	// the margin (so the site has fenced itself), else why not.
	SiteLeaseExpired(ctx context.Context, site string, spec *witnessv1.GroupSpec) error
}

// GroupReader is what a Leader may also offer: one group by name, so that
// the work of one step does not grow with the number of groups.
type GroupReader interface {
	Group(name string) (*witnessv1.Group, bool)
}

// lookup is the group named name, through GroupReader when the Leader
// offers it, else among every group.
func (r *Reconciler) lookup(name string) []*witnessv1.Group {
	if gr, ok := r.Leader.(GroupReader); ok {
		if g, ok := gr.Group(name); ok {
			return []*witnessv1.Group{g}
		}
		return nil
	}
	return r.Leader.Groups()
}

// Runner runs the actions of one kind; tests swap in recorders.
type Runner interface {
	// Demote asks a witness at site to demote the group's database there
	// at the group's current token, stopping it with mode, and returns
	// once the database refuses connections. It returns
	// ErrNoLocalDemotion when the site's database cannot be demoted
	// locally, else an error when no witness there answered or it refused.
	// After a fast stop it returns the database's final WAL position (its
	// shutdown checkpoint), 0 when unknown.
	Demote(ctx context.Context, g *witnessv1.Group, site string, mode postgres.StopMode) (uint64, error)
	// Position reads the WAL position of the group's database at site:
	// on a primary pg_current_wal_lsn(), on a standby what it replayed.
	Position(ctx context.Context, g *witnessv1.Group, site string) (lsn uint64, inRecovery bool, err error)
	// Fence fences the old active site of a group over SQL.
	Fence(ctx context.Context, g *witnessv1.Group, from string) error
	// Promote promotes the group's database at the active site.
	Promote(ctx context.Context, g *witnessv1.Group) error
	// SwitchDNS points the group's records at the active site.
	SwitchDNS(ctx context.Context, g *witnessv1.Group) error
	// Hook runs one of the group's hooks (step fence, promote or
	// after_switch) where its run_on says, for the current token.
	Hook(ctx context.Context, g *witnessv1.Group, h *witnessv1.HookAction) error
	// Notify tells people about the transition and its steps so far.
	Notify(ctx context.Context, g *witnessv1.Group, from string) error
	// Settled reports nil once resolvers return the new answers and the
	// records' TTL has passed since switched.
	Settled(ctx context.Context, g *witnessv1.Group, switched time.Time) error
	// CheckDNS re-reads the records of a group whose plan has completed
	// and puts back, under the current token, what differs from it. It
	// returns the records found different; an error is a check that could
	// not be made.
	CheckDNS(ctx context.Context, g *witnessv1.Group) ([]DNSDrift, error)
}

// DNSDrift is a managed record found different from what the group's
// current token says: edited by hand, or its fence changed.
type DNSDrift struct {
	// Record is the name and type, "app.example.test. A".
	Record string
	// Found is what the server held; Want what the token says.
	Found, Want string
	// Err is nil when the record was put back, else why it was not (for
	// example a fence holding a higher token, which is never lowered).
	Err error
}

// Reconciler is the leader's level-triggered loop: for every group it
// compares the plan of the current token with the step results recorded in
// the replicated state, runs the next step that has not succeeded, and
// records its outcome through Raft, so a new leader resumes where the old
// one stopped. Every step carries the token and is idempotent.
type Reconciler struct {
	Leader Leader
	Runner Runner
	Node   string
	Log    *slog.Logger
	// Tick is how often groups are looked at; zero means 500ms.
	Tick time.Duration
	// StepTimeout bounds one step; zero means 15s.
	StepTimeout time.Duration
	// MinBackoff is the wait after a step's first failure, doubled after
	// each further one; zero means 250ms.
	MinBackoff time.Duration
	// MaxBackoff caps the wait between retries of a failed step; zero
	// means 30s.
	MaxBackoff time.Duration
	// OnDrift, if set, is told of every drifted DNS record the periodic
	// check finds (for a metric).
	OnDrift func(group string, d DNSDrift)
	// LeaderLease is the longest time, on the monotonic clock, between
	// the VerifyLeader that allows a step and the step's start; past it
	// the step is not started. Zero means 500ms.
	LeaderLease time.Duration
	// Clock is the time of every decision the reconciler makes: its tick,
	// backoff, step deadlines, the leader lease since VerifyLeader,
	// settling and the drift check's period. Nil means real time.
	Clock clock.Clock
	// Workers bounds the groups reconciled at once; zero means
	// DefaultWorkers. A site failover of thousands of groups then runs
	// as many plans at a time, not a goroutine (and a leadership check)
	// per group at once.
	Workers int

	mu      sync.Mutex
	wake    chan struct{} // Poke's doorbell, made on first use
	running map[string]bool
	again   map[string]bool // looked at while running: look again after
	// retry is the wait of each failing step, by group and step; the
	// ones that back off after a failure (not a settle's wait for the
	// TTL) are also in backingOff, which RetryNow walks: a leader with
	// 10,000 groups settling does not walk them all for every site seen
	// again, nor every group's retries for each group it looks at.
	retry      map[string]map[string]retryState
	backingOff map[stepKey]bool
	checked    map[string]dnsCheck // group -> last DNS drift check
	blocked    map[string]string   // group -> why its promotion waits, as last recorded
	// caughtUp is each group's last catch-up progress (catchup.go).
	caughtUp map[string]catchUpProgress
	// steps commits step results while Run runs (leadership.go).
	steps *stepLog
	// checks shares a leadership check among the steps that start
	// together (leadership.go).
	checks leaderCheck
}

type stepKey struct{ group, step string }

type retryState struct {
	token   uint64
	attempt int
	next    time.Time
	ttl     bool // next is when the TTL has passed: settle waits, nothing failed
}

type dnsCheck struct {
	token uint64
	at    time.Time
}

// Run reconciles until ctx ends, then waits for the steps in flight.
func (r *Reconciler) Run(ctx context.Context) {
	tick := r.Tick
	if tick == 0 {
		tick = 500 * time.Millisecond
	}
	steps := newStepLog(r.Leader)
	r.mu.Lock() // RetryNow may be called before Run starts
	r.running, r.again, r.retry, r.checked, r.blocked = map[string]bool{}, map[string]bool{}, map[string]map[string]retryState{}, map[string]dnsCheck{}, map[string]string{}
	r.backingOff = map[stepKey]bool{}
	r.steps = steps
	r.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); steps.run(ctx) }()
	t := r.clock().NewTicker(tick)
	defer t.Stop()
	workers := r.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	slots := make(chan struct{}, workers)
	for {
		for _, g := range r.Leader.Groups() {
			if !r.mayNeedWork(g) {
				continue
			}
			name := g.GetSpec().GetName()
			r.mu.Lock()
			busy := r.running[name]
			if busy {
				// Looked at while its plan runs on an older state: look
				// again as soon as that run ends, not at the next tick.
				r.again[name] = true
			} else {
				r.running[name] = true
			}
			r.mu.Unlock()
			if busy {
				continue
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				r.mu.Lock()
				delete(r.running, name)
				r.mu.Unlock()
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				r.reconcile(ctx, g)
				r.mu.Lock()
				delete(r.running, name)
				again := r.again[name]
				delete(r.again, name)
				r.mu.Unlock()
				if again {
					r.Poke()
				}
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		case <-r.doorbell():
		}
	}
}

// Poke makes Run look at the groups now rather than at its next tick:
// the leader rings it when it commits, so a plan starts as soon as its
// transition is committed. It never blocks.
func (r *Reconciler) Poke() {
	select {
	case r.doorbell() <- struct{}{}:
	default:
	}
}

// RetryNow drops the wait before every failing step's next attempt and
// pokes the reconciler. The leader calls it when a site that was failing
// is seen again: the step that fences an old primary has been backing off
// while that site was gone (up to MaxBackoff), and a database that comes
// back writable must be fenced now, not at the next retry.
// It returns how many steps were waiting.
func (r *Reconciler) RetryNow() int {
	r.mu.Lock()
	waiting := 0
	now := r.now()
	for k := range r.backingOff {
		if rs, ok := r.retry[k.group][k.step]; ok && rs.next.After(now) && !rs.ttl {
			waiting++
			rs.next = time.Time{}
			r.retry[k.group][k.step] = rs
		}
		delete(r.backingOff, k) // no longer waiting, until it fails again
	}
	r.mu.Unlock()
	r.Poke()
	return waiting
}

func (r *Reconciler) doorbell() chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wake == nil {
		r.wake = make(chan struct{}, 1)
	}
	return r.wake
}

// Plan lists the steps for a group at its current token, in order:
//
//	fence                   database of the old site (postgres, on a move)
//	hook:fence:NAME         fence hooks (on a move), in spec order
//	promote                 database of the new site (postgres)
//	hook:promote:NAME       promote hooks
//	dns                     records and fence (dns)
//	hook:after_switch:NAME  after_switch hooks
//	repoint                 the other standbys follow the new primary (postgres nodes, on a move)
//	notify                  people (notify, on a move)
//	settle                  DNS answers the new value, TTL passed (dns)
//
// Fencing comes first so the old site stops writing before the new one
// starts; hooks follow the action of their phase. local_fence hooks are not
// in the plan: the self-fencing lease runs them.
func Plan(g *witnessv1.Group) []string {
	a := g.GetSpec().GetActions()
	cur := currentTransition(g)
	from := cur.GetFromSite()
	moved := from != "" && from != g.GetStatus().GetActiveSite()
	if cur.GetPhase() == fsm.PhaseUnresolved {
		// Created with no known primary: nothing is promoted or
		// switched until an operator says where the group is.
		return nil
	}
	if cur.GetPhase() == fsm.PhasePrepare {
		// The first phase of a switchover only fences the site the group
		// stays at; the move commits once that holds.
		if a.GetPostgres() != nil {
			return prepareSteps(g)
		}
		return nil
	}
	var steps []string
	hooks := func(step string) {
		for _, h := range a.GetHooks() {
			if h.GetStep() == step {
				steps = append(steps, HookStep(h))
			}
		}
	}
	if moved {
		if a.GetPostgres() != nil && !prepareFenced(g) {
			steps = append(steps, StepFence)
		}
		hooks(HookFence)
	}
	if from == "" && a.GetPostgres() != nil {
		// A new group fences the database of every other site at its
		// first token before it promotes: a node fenced under a group of
		// the same name deleted before keeps a token no lower.
		for _, site := range g.GetSpec().GetSites() {
			if n := site.GetName(); n != g.GetStatus().GetActiveSite() && a.GetPostgres().GetDsn()[n] != "" {
				steps = append(steps, StepCreationFence+n)
			}
		}
	}
	if a.GetPostgres() != nil {
		steps = append(steps, StepPromote)
	}
	hooks(HookPromote)
	if a.GetDns() != nil {
		steps = append(steps, StepDNS)
	}
	hooks(HookAfterSwitch)
	if moved && len(a.GetPostgres().GetNodes()) > 0 {
		steps = append(steps, StepRepoint)
	}
	// People hear of transitions and aborted switchovers, not of a
	// group's creation.
	if len(a.GetNotify()) > 0 && from != "" {
		steps = append(steps, StepNotify)
	}
	if a.GetDns() != nil {
		steps = append(steps, StepSettle)
	}
	return steps
}

// currentTransition is the history entry of the current token.
func currentTransition(g *witnessv1.Group) *witnessv1.Transition {
	st := g.GetStatus()
	for _, h := range slices.Backward(st.GetHistory()) {
		if h.GetToken() == st.GetToken() {
			return h
		}
	}
	return nil
}

// prepareFenced reports whether the current token completes a switchover
// whose first phase, at the token before, confirmed the old site's fence
// for good: by a demotion, or by the SQL fence where the old site cannot
// demote. An SQL fence of a site that can demote is followed by its
// demotion at the move's token, before the target is promoted: the
// target has all the WAL by then, and the old primary stops taking
// writes from anyone, superusers too.
func prepareFenced(g *witnessv1.Group) bool {
	h := g.GetStatus().GetHistory()
	if len(h) < 2 {
		return false
	}
	cur, prev := h[len(h)-1], h[len(h)-2]
	if cur.GetToken() != g.GetStatus().GetToken() || prev.GetPhase() != fsm.PhasePrepare || prev.GetToSite() != cur.GetFromSite() {
		return false
	}
	for _, s := range g.GetStatus().GetSteps() {
		if s.GetToken() == prev.GetToken() && s.GetStep() == StepFence && s.GetOk() {
			return s.GetFencedBy() != FencedBySQL || !demotesAtOldSite(g, cur.GetFromSite())
		}
	}
	return false
}

// previousSite is the site the current token took the group from.
func previousSite(g *witnessv1.Group) string {
	st := g.GetStatus()
	for _, h := range slices.Backward(st.GetHistory()) {
		if h.GetToken() == st.GetToken() {
			return h.GetFromSite()
		}
	}
	return ""
}

func succeeded(g *witnessv1.Group, step string) (bool, time.Time) {
	st := g.GetStatus()
	for _, s := range st.GetSteps() {
		if s.GetToken() == st.GetToken() && s.GetStep() == step && s.GetOk() {
			return true, time.Unix(0, s.GetStartedUnixNano()+s.GetDurationMs()*int64(time.Millisecond))
		}
	}
	return false, time.Time{}
}

// bestEffort steps do not hold up later ones when they fail. The fence
// step holds them up except in a failover, where the promote step's gate
// decides: an unreachable old site may be promoted away from once its
// lease has provably run out. A hook is best effort when its spec says so
// (by default the fence hooks).
func bestEffort(g *witnessv1.Group, step string) bool {
	if _, name, ok := ParseHookStep(step); ok {
		h, found := FindHook(g, name)
		return found && h.GetBestEffort()
	}
	switch step {
	case StepFence:
		return transitionKind(g) == witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER
	case StepNotify, StepRepoint:
		return true
	}
	return false
}

// promoteRule says which rule allows the group's database at the active
// site to be promoted now, or returns ErrFenceNotConfirmed saying why it
// must wait. A switchover or failback needs the old site's fence
// confirmed; a failover takes a confirmed fence, or the old site's
// expired lease where the witness there demotes its database locally, or
// the operator's word that the old site is down.
func (r *Reconciler) promoteRule(ctx context.Context, g *witnessv1.Group, fenced map[string]bool) (string, error) {
	from := previousSite(g)
	pg := g.GetSpec().GetActions().GetPostgres()
	switch {
	case pg.GetFence() == "none":
		return RuleNoFence, nil
	case from == "":
		// A new group: every creation fence must hold first.
		for _, step := range Plan(g) {
			if site, ok := strings.CutPrefix(step, StepCreationFence); ok {
				if done, _ := succeeded(g, step); !done && !fenced[step] {
					return "", fmt.Errorf("group %s created at %s: the fence of %s must succeed first: %w", g.GetSpec().GetName(), g.GetStatus().GetActiveSite(), site, ErrFenceNotConfirmed)
				}
			}
		}
		return RuleFenceConfirmed, nil
	case from == g.GetStatus().GetActiveSite():
		return RuleNoOldSite, nil
	}
	if ok, _ := succeeded(g, StepFence); ok || fenced[StepFence] || prepareFenced(g) {
		return RuleFenceConfirmed, nil
	}
	kind := transitionKind(g)
	if kind != witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER {
		return "", fmt.Errorf("%s of %s: the fence of %s must succeed first: %w", kindName(kind), g.GetSpec().GetName(), from, ErrFenceNotConfirmed)
	}
	var err error
	if demotesLocally(g, from) {
		if err = r.Leader.SiteLeaseExpired(ctx, from, g.GetSpec()); err == nil {
			return RuleLeaseExpired, nil
		}
	} else {
		// The lease proves the old site's witness was silent, not that
		// its fence held: without a data_dir there, that fence is an SQL
		// fence, which the database can refuse (too many connections, a
		// broken target).
		err = fmt.Errorf("the site's lease proves nothing: %s has no data_dir at %s, so its witness fences over SQL, "+
			"which the database can refuse; confirm the fence, or fail over with --old-site-down once the site is known down", g.GetSpec().GetName(), from)
	}
	if cur := currentTransition(g); cur.GetOldSiteDown() {
		// The fence step ran first and failed (this rule is only asked
		// once it did), and the site's lease proves nothing: the
		// operator's word is what allows it.
		r.Log.Warn("promoting on an operator's word that the old site is down", "group", g.GetSpec().GetName(),
			"token", g.GetStatus().GetToken(), "old_site", from, "attested_by", cur.GetBy(), "reason", cur.GetReason(), "lease", err)
		return RuleOldSiteDown, nil
	}
	return "", fmt.Errorf("fence of %s not confirmed, and %w: %w", from, err, ErrFenceNotConfirmed)
}

// demotesLocally reports whether the database of group g at site, if it
// has one, is demoted by the witness there when its lease runs out: the
// spec names a data_dir for that site, so the witness stops the
// postmaster (killing it at the time limit), which the database cannot
// refuse. A group with no database at site has nothing there to fence.
func demotesLocally(g *witnessv1.Group, site string) bool {
	n := SiteNode(g, site)
	return n.GetDsn() == "" || n.GetDataDir() != ""
}

func kindName(k witnessv1.TransitionKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "TRANSITION_KIND_"))
}

func (r *Reconciler) reconcile(ctx context.Context, g *witnessv1.Group) {
	name, token := g.GetSpec().GetName(), g.GetStatus().GetToken()
	r.forgetOtherTokens(name, token)
	var switched time.Time
	fencedNow := map[string]bool{} // fence steps done in this pass
	for _, step := range Plan(g) {
		ok, at := succeeded(g, step)
		if step == StepDNS {
			switched = at
		}
		if ok {
			continue
		}
		key := stepKey{name, step}
		r.mu.Lock()
		rs := r.retry[name][step]
		r.mu.Unlock()
		if rs.token != token {
			rs = retryState{token: token}
		}
		if r.now().Before(rs.next) {
			if bestEffort(g, step) {
				continue
			}
			return
		}
		if step == StepCatchUp {
			if fencedNow[StepFence] {
				// The fence's final position is recorded, not yet in g:
				// wait for it in the next pass, at once.
				r.Poke()
				return
			}
			if why := r.catchUpExpired(g); why != "" {
				r.endSwitchover(ctx, g, why)
				return
			}
		}
		var rule string
		if step == StepPromote {
			var err error
			if rule, err = r.promoteRule(ctx, g, fencedNow); err != nil {
				// Not a failure of the step: look again next tick, and
				// say why once, where witnessctl group shows it.
				r.noteBlocked(ctx, g, err)
				return
			}
		}
		err := r.run(ctx, g, step, switched, rs.attempt+1, rule)
		if errors.Is(err, ErrNotLeader) || ctx.Err() != nil {
			return
		}
		if step == StepDNS && err == nil {
			// Settle counts the TTL from here, also in this same pass.
			switched = r.now()
		}
		if isFence(step) && err == nil {
			fencedNow[step] = true // g was read before this pass recorded it
		}
		r.mu.Lock()
		if err != nil {
			next, ttl := r.now().Add(r.backoff(rs.attempt+1)), false
			if step == StepSettle && errors.Is(err, ErrNotSettled) {
				// Waiting for DNS is not a failure and does not back off:
				// look again once the TTL has passed since the switch, then
				// at every tick.
				next, ttl = ttlPassed(g, switched), true
			}
			if step == StepCatchUp && errors.Is(err, ErrNotCaughtUp) {
				// Waiting for the target is not a failure either: look
				// again at the next tick, not after a growing backoff.
				next = r.now()
			}
			if deadline, ok := catchUpDeadline(g); ok && step == StepCatchUp && next.After(deadline) {
				// A failing catch-up backs off, but not past the
				// switchover's deadline: the old primary is fenced
				// meanwhile, and the abort that gives it back is due
				// then.
				next = deadline.Add(time.Millisecond)
			}
			r.setRetry(key, retryState{token: token, attempt: rs.attempt + 1, next: next, ttl: ttl})
		} else {
			r.clearRetry(key)
		}
		r.mu.Unlock()
		if err != nil && step == StepFence && preparing(g) && rs.attempt+1 >= SwitchoverFenceAttempts {
			r.endSwitchover(ctx, g, fmt.Sprintf("switchover to %s aborted: the fence of %s failed %d times: %v",
				g.GetStatus().GetPending().GetToSite(), g.GetStatus().GetActiveSite(), SwitchoverFenceAttempts, err))
			return
		}
		if err != nil && !bestEffort(g, step) {
			return
		}
	}
	if preparing(g) {
		// Every step of the first phase holds: the old site is fenced
		// and the target has what it wrote.
		r.endSwitchover(ctx, g, "")
		return
	}
	if ok, _ := succeeded(g, StepSettle); ok && g.GetSpec().GetActions().GetDns() != nil {
		r.checkDNS(ctx, g)
	}
}

func isFence(step string) bool {
	return step == StepFence || strings.HasPrefix(step, StepCreationFence)
}

// siteOf is the site of a creation fence step, "" for any other step.
func siteOf(step string) string {
	site, _ := strings.CutPrefix(step, StepCreationFence)
	if site == step {
		return ""
	}
	return site
}

// SwitchoverFenceAttempts is how many times the first phase of a
// switchover tries to fence the old site before it gives the switchover
// up.
const SwitchoverFenceAttempts = 3

// preparing reports whether the group is in the first phase of a
// switchover.
func preparing(g *witnessv1.Group) bool {
	return g.GetStatus().GetPending() != nil && currentTransition(g).GetPhase() == fsm.PhasePrepare
}

// endSwitchover commits the second phase of a pending switchover: the move
// when abort is empty (the old site is fenced, the target caught up), else
// an abort back to the site the group stayed at, at a new token whose plan
// lifts the fence, with abort as its reason.
func (r *Reconciler) endSwitchover(ctx context.Context, g *witnessv1.Group, abort string) {
	st := g.GetStatus()
	name, p := g.GetSpec().GetName(), st.GetPending()
	cmd := &witnessv1.TransitionCommand{Kind: currentTransition(g).GetKind(), AtUnixNano: r.now().UnixNano(), By: r.Node,
		Moves: []*witnessv1.Move{{Group: name, ExpectedToken: st.GetToken(), ToSite: p.GetToSite()}}, Reason: p.GetReason()}
	what := "switchover moved"
	if abort != "" {
		cmd.Abort = true
		cmd.Moves[0].ToSite = st.GetActiveSite()
		cmd.Reason = abort
		what = "switchover aborted"
	}
	res, err := r.Leader.Apply(ctx, cmd)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		r.Log.Warn(what+": not committed", "group", name, "token", st.GetToken(), keyErrLog, err)
		return
	}
	r.Log.Warn(what, "group", name, "from", st.GetActiveSite(), "to", cmd.GetMoves()[0].GetToSite(), "token", res.Tokens[name], "reason", cmd.GetReason())
	r.Poke()
}

// forgetOtherTokens drops the retry state of a group's earlier tokens.
func (r *Reconciler) forgetOtherTokens(group string, token uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for step, rs := range r.retry[group] {
		if rs.token != token {
			delete(r.retry[group], step)
			delete(r.backingOff, stepKey{group, step})
		}
	}
	if len(r.retry[group]) == 0 {
		delete(r.retry, group)
	}
}

// clearRetry forgets the wait of a step that succeeded, and the group's
// waits once none is left: a leader of 10,000 settled groups keeps no
// empty map for each (3.5 MB). Callers hold r.mu.
func (r *Reconciler) clearRetry(k stepKey) {
	delete(r.backingOff, k)
	m, ok := r.retry[k.group]
	if !ok {
		return
	}
	delete(m, k.step)
	if len(m) == 0 {
		delete(r.retry, k.group)
	}
}

// setRetry records the wait of a failing step; callers hold r.mu.
func (r *Reconciler) setRetry(k stepKey, rs retryState) {
	m := r.retry[k.group]
	if m == nil {
		m = map[string]retryState{}
		r.retry[k.group] = m
	}
	m[k.step] = rs
	if rs.ttl {
		delete(r.backingOff, k)
	} else {
		r.backingOff[k] = true
	}
}

// checkDNS is the periodic drift check of a group whose plan has
// completed: every check_every, it re-reads the records and puts back what
// was changed by hand, under the current token (never a lower one: the DNS
// client refuses to lower a fence). A new leader checks at once.
func (r *Reconciler) checkDNS(ctx context.Context, g *witnessv1.Group) {
	name, token := g.GetSpec().GetName(), g.GetStatus().GetToken()
	every := time.Duration(g.GetSpec().GetActions().GetDns().GetCheckEveryMs()) * time.Millisecond
	if every <= 0 {
		every = DefaultDNSCheckEvery
	}
	r.mu.Lock()
	last := r.checked[name]
	r.mu.Unlock()
	if last.token == token && r.now().Sub(last.at) < every {
		return
	}
	if _, err := r.verifyLeader(); err != nil {
		return
	}
	sctx, cancel := clock.WithTimeout(ctx, r.clock(), r.stepTimeout())
	drifts, err := r.Runner.CheckDNS(sctx, g)
	cancel()
	if ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	r.checked[name] = dnsCheck{token: token, at: r.now()}
	r.mu.Unlock()
	for _, d := range drifts {
		if d.Err == nil {
			r.Log.Warn("dns record differed from the current token: put back", "group", name, "token", token, "record", d.Record, "found", d.Found, "want", d.Want)
		} else {
			r.Log.Error("dns record differs from the current token and was not put back", "group", name, "token", token, "record", d.Record, "found", d.Found, "want", d.Want, "error", d.Err)
		}
		if r.OnDrift != nil {
			r.OnDrift(name, d)
		}
	}
	if err != nil {
		r.Log.Warn("dns drift check failed", "group", name, "token", token, "error", err)
	}
}

func (r *Reconciler) backoff(attempt int) time.Duration {
	max := r.MaxBackoff
	if max == 0 {
		max = 30 * time.Second
	}
	base := r.MinBackoff
	if base == 0 {
		base = 250 * time.Millisecond
	}
	d := base << min(attempt-1, 10)
	if d <= 0 { // overflowed
		return max
	}
	return min(d, max)
}

func (r *Reconciler) stepTimeout() time.Duration {
	if r.StepTimeout == 0 {
		return 15 * time.Second
	}
	return r.StepTimeout
}

// noteBlocked records, once per reason, why a group's promotion waits, as
// a failed promote result that witnessctl group shows; the reason is also
// logged.
func (r *Reconciler) noteBlocked(ctx context.Context, g *witnessv1.Group, why error) {
	name, token := g.GetSpec().GetName(), g.GetStatus().GetToken()
	key := fmt.Sprintf("%d/%s", token, blockedKind(why))
	r.mu.Lock()
	same := r.blocked[name] == key
	r.blocked[name] = key
	r.mu.Unlock()
	if same {
		return
	}
	r.Log.Warn("promotion waits", "group", name, "token", token, "why", why)
	if _, err := r.verifyLeader(); err != nil || !r.roomForFailure(name) {
		return
	}
	res := &witnessv1.StepResult{Token: token, Step: StepPromote, Error: why.Error(), StartedUnixNano: r.now().UnixNano(), Node: r.Node}
	if err := r.record(ctx, name, res); err != nil {
		r.Log.Warn("record why promotion waits", "group", name, keyErrLog, err)
	}
}

// keyErrLog is the log key of an error.
const keyErrLog = "error"

// blockedKind is a short, stable form of why a promotion waits, so that a
// reason is recorded once rather than at every look.
func blockedKind(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "["); i >= 0 {
		msg = msg[:i] // the voters' views change with every look
	}
	return msg
}

func (r *Reconciler) clock() clock.Clock { return clock.Or(r.Clock) }

func (r *Reconciler) now() time.Time { return r.clock().Now() }

func (r *Reconciler) leaderLease() time.Duration {
	if r.LeaderLease > 0 {
		return r.LeaderLease
	}
	return 500 * time.Millisecond
}

// run carries out one step and records its outcome. A step is only run by
// a node that has just verified its leadership: it is not started when
// more than the leader lease has passed since (a pause, a slow machine).
// A request already sent cannot be recalled; the token that every target
// checks is the guard for that.
func (r *Reconciler) run(ctx context.Context, g *witnessv1.Group, step string, switched time.Time, attempt int, rule string) error {
	// Leadership holds as of the moment verification began, not ended;
	// steps that start together share one check (leadership.go).
	verified, err := r.verifyLeader()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	timeout := r.stepTimeout()
	var hook *witnessv1.HookAction
	if _, name, ok := ParseHookStep(step); ok {
		hook, _ = FindHook(g, name)
		// A hook's step lasts as long as the hook may run, and a little.
		timeout = max(timeout, hookTimeout(hook)+hookMargin)
	}
	sctx, cancel := clock.WithTimeout(ctx, r.clock(), timeout)
	defer cancel()
	start := r.now()
	if since := r.now().Sub(verified); since > r.leaderLease() {
		r.Log.Warn("step not started: leadership was verified too long ago", "group", g.GetSpec().GetName(),
			"token", g.GetStatus().GetToken(), "step", step, "since_verified", since, "leader_lease", r.leaderLease())
		return fmt.Errorf("%w: %s since, lease %s: %w", ErrNotLeader, since, r.leaderLease(), ErrLeaseRunOut)
	}
	var fencedBy string
	var lsn uint64
	switch step {
	case StepFence:
		fencedBy, lsn, err = r.fenceOldSite(sctx, g, previousSite(g))
	case StepCatchUp:
		lsn, err = r.catchUp(sctx, g)
		if errors.Is(err, ErrNotCaughtUp) {
			r.noteCatchUp(ctx, g, lsn, err)
			return err // not a failure: look again next tick
		}
	case StepCreationFence + siteOf(step):
		fencedBy, _, err = r.fenceOldSite(sctx, g, siteOf(step))
	case StepPromote:
		err = r.Runner.Promote(sctx, g)
	case StepDNS:
		err = r.Runner.SwitchDNS(sctx, g)
	case StepNotify:
		err = r.Runner.Notify(sctx, g, previousSite(g))
	case StepRepoint:
		err = r.repoint(sctx, g)
	case StepSettle:
		err = r.Runner.Settled(sctx, g, switched)
		if errors.Is(err, ErrNotSettled) {
			return err // not a failure: look again next tick
		}
	default:
		if hook == nil {
			err = fmt.Errorf("step %s: no such hook in the spec: %w", step, ErrUnsupported)
			break
		}
		err = r.Runner.Hook(sctx, g, hook)
	}
	if ctx.Err() != nil {
		// Leadership ended while the step ran (or the witness is
		// stopping): its outcome cannot be recorded, but what the target
		// answered a deposed leader is worth a line.
		outcome := "ok"
		if err != nil {
			outcome = err.Error()
		}
		r.Log.Warn("step ended after this witness stopped leading; not recorded", "group", g.GetSpec().GetName(),
			"token", g.GetStatus().GetToken(), "step", step, "attempt", attempt, "outcome", outcome)
		return ctx.Err()
	}
	res := &witnessv1.StepResult{Token: g.GetStatus().GetToken(), Step: step, Ok: err == nil, StartedUnixNano: start.UnixNano(),
		DurationMs: r.now().Sub(start).Milliseconds(), Attempt: int32(attempt), Node: r.Node, Rule: rule}
	if err == nil {
		res.FencedBy, res.WalLsn = fencedBy, lsn
	}
	if errors.Is(err, ErrBestEffort) {
		// Done, with what did not work written down.
		res.Ok, res.Error, err = true, err.Error(), nil
	}
	if err != nil {
		res.Error = err.Error()
		r.Log.Warn("step failed", "group", g.GetSpec().GetName(), "token", res.Token, "step", step, "attempt", attempt, "error", err)
		if !r.roomForFailure(g.GetSpec().GetName()) {
			// The replicated state keeps a bounded number of step results;
			// recording every retry of a step that keeps failing would push
			// out the successes the plan relies on, and they would run again.
			r.Log.Warn("failure not recorded: the group's step record is kept for the steps still to succeed", "group", g.GetSpec().GetName(), "step", step, "attempt", attempt)
			return err
		}
	} else {
		r.Log.Info("step done", "group", g.GetSpec().GetName(), "token", res.Token, "step", step, "took", r.now().Sub(start))
	}
	if aerr := r.record(ctx, g.GetSpec().GetName(), res); aerr != nil {
		return fmt.Errorf("record step %s: %w", step, aerr)
	}
	return err
}

// fenceOldSite fences the group's old site (or, for a creation, each
// other site of the group): first by asking a witness
// there to demote the database (fast stop in a switchover, which ships
// the final WAL to the standby; immediate in a failover), then, if that is
// not possible or fails, with the leader's SQL fence. Either confirms the
// fence; it returns the layer that did.
//
// The first phase of a switchover turns the order round when the old site
// can demote: the SQL fence first, which ends every session and blocks
// the application's logins but leaves the old primary running, so that
// WAL still held back on its way to the target (a slow link between the
// sites) reaches it; a stopped primary ships nothing more, and the
// switchover could then only be given up. The demotion follows at the
// move's token (see Plan), before the target is promoted. Demotion is
// the fallback when the SQL fence fails (a role that cannot be fenced).
func (r *Reconciler) fenceOldSite(ctx context.Context, g *witnessv1.Group, from string) (string, uint64, error) {
	var sqlErr error
	if preparing(g) && demotesAtOldSite(g, from) {
		if sqlErr = r.Runner.Fence(ctx, g, from); sqlErr == nil {
			return FencedBySQL, r.finalPosition(ctx, g, from), nil
		}
		if ctx.Err() != nil {
			return "", 0, sqlErr
		}
		r.Log.Warn("SQL fence of the old primary failed in the switchover's first phase; demoting it", "group", g.GetSpec().GetName(),
			"token", g.GetStatus().GetToken(), "site", from, keyErrLog, sqlErr)
	}
	mode := postgres.StopFast
	dctx, cancel := ctx, context.CancelFunc(func() {})
	switch transitionKind(g) {
	case witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER:
		// The old site is likely gone: an unanswered ask must leave the
		// SQL fence its time within the step.
		mode = postgres.StopImmediate
		dctx, cancel = context.WithTimeout(ctx, FailoverFenceConnectTimeout+demoteLimit(g))
	case witnessv1.TransitionKind_TRANSITION_KIND_INITIAL:
		// A creation fences every other site, some of which may be
		// down: likewise bounded, and so an immediate stop, which the
		// bound leaves time for. Most of them are standbys, which are
		// only stamped.
		mode = postgres.StopImmediate
		dctx, cancel = context.WithTimeout(ctx, FailoverFenceConnectTimeout+demoteLimit(g))
	}
	final, derr := r.Runner.Demote(dctx, g, from, mode)
	cancel()
	if derr == nil {
		return FencedByDemote, final, nil
	}
	if ctx.Err() != nil {
		return "", 0, derr
	}
	if sqlErr != nil {
		return "", 0, fmt.Errorf("%w; and %w", sqlErr, derr)
	}
	if !errors.Is(derr, ErrNoLocalDemotion) {
		r.Log.Warn("local demotion of the old site failed; fencing over SQL", "group", g.GetSpec().GetName(),
			"token", g.GetStatus().GetToken(), "site", from, keyErrLog, derr)
	}
	if err := r.Runner.Fence(ctx, g, from); err != nil {
		if errors.Is(derr, ErrNoLocalDemotion) {
			return "", 0, err
		}
		return "", 0, fmt.Errorf("%w; and %w", err, derr)
	}
	return FencedBySQL, r.finalPosition(ctx, g, from), nil
}

// demotesAtOldSite reports whether the old site's database of g is one
// its witness can demote: a data_dir there, and a fence other than none.
func demotesAtOldSite(g *witnessv1.Group, site string) bool {
	n := SiteNode(g, site)
	return n.GetDsn() != "" && n.GetDataDir() != "" && g.GetSpec().GetActions().GetPostgres().GetFence() != "none"
}

// demoteLimit is how long the old site's witness may take to demote its
// database: the group's fence_timeout (validation fills it in), else a
// second.
func demoteLimit(g *witnessv1.Group) time.Duration {
	if ms := g.GetSpec().GetPolicy().GetFenceTimeoutMs(); ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return time.Second
}

// roomForFailure reports whether one more failed result of group can be
// recorded at its current token and still leave room, within
// fsm.StepLimit, for every results of this token already recorded and one
// success of each plan step still to succeed.
func (r *Reconciler) roomForFailure(group string) bool {
	for _, g := range r.lookup(group) {
		if g.GetSpec().GetName() != group {
			continue
		}
		st := g.GetStatus()
		recorded := 0
		for _, s := range st.GetSteps() {
			if s.GetToken() == st.GetToken() {
				recorded++
			}
		}
		pending := 0
		for _, step := range Plan(g) {
			if ok, _ := succeeded(g, step); !ok {
				pending++
			}
		}
		return recorded+1+pending <= fsm.StepLimit
	}
	return false
}

// transitionKind is the kind of the transition that made the current
// token.
func transitionKind(g *witnessv1.Group) witnessv1.TransitionKind {
	st := g.GetStatus()
	for _, h := range slices.Backward(st.GetHistory()) {
		if h.GetToken() == st.GetToken() {
			return h.GetKind()
		}
	}
	return witnessv1.TransitionKind_TRANSITION_KIND_UNSPECIFIED
}

// ttlPassed is when the longest TTL of the group's records has passed
// since switched.
func ttlPassed(g *witnessv1.Group, switched time.Time) time.Time {
	var maxTTL uint32
	for _, rec := range g.GetSpec().GetActions().GetDns().GetRecords() {
		maxTTL = max(maxTTL, rec.GetTtl())
	}
	return switched.Add(time.Duration(maxTTL) * time.Second)
}
