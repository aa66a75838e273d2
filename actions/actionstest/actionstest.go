// Package actionstest holds test doubles for the actions package: a
// Runner that records what it was asked to do, and a Leader backed by a
// real state machine.
package actionstest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Call is one step a Runner was asked to run.
type Call struct {
	Step  string
	Group string
	Token uint64
	Site  string // the site acted on
	// Mode is the stop mode of a demotion, empty for other steps.
	Mode postgres.StopMode
}

func (c Call) String() string {
	if c.Mode != "" {
		return fmt.Sprintf("%s %s@%d %s %s", c.Step, c.Group, c.Token, c.Site, c.Mode)
	}
	return fmt.Sprintf("%s %s@%d %s", c.Step, c.Group, c.Token, c.Site)
}

// StepDemote names the calls of Runner.Demote, in Calls, Fail and Tries.
const StepDemote = "demote"

// Runner records calls. Fail makes a step fail; Block makes it wait until
// its context ends or Release is called. Hook steps are named as in the
// plan (actions.HookStep). DNS drift checks are recorded apart, in Checks,
// and answer what SetDrift says.
type Runner struct {
	mu     sync.Mutex
	calls  []Call
	checks []Call
	tries  map[string]int
	drift  []actions.DNSDrift
	fail   map[string]error
	block  map[string]chan struct{}
	sites  map[string]uint64 // site -> the group token its witness holds
	pos    map[string]position
	// Entered receives a step's name when it starts, if set.
	Entered chan string
}

// NewRunner returns a recording Runner.
func NewRunner() *Runner {
	return &Runner{fail: map[string]error{}, block: map[string]chan struct{}{}, tries: map[string]int{}}
}

var _ actions.Runner = (*Runner)(nil)

// Fail makes step return err until Fail(step, nil).
func (r *Runner) Fail(step string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.fail, step)
		return
	}
	r.fail[step] = err
}

// Block makes step wait until Release(step) or its context ends.
func (r *Runner) Block(step string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.block[step] = make(chan struct{})
}

// Release lets a blocked step go on, and later ones run at once.
func (r *Runner) Release(step string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.block[step]; ok {
		close(ch)
		delete(r.block, step)
	}
}

// Tries returns how many times step was run, failed runs included.
func (r *Runner) Tries(step string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tries[step]
}

// Calls returns the successful calls so far.
func (r *Runner) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.calls...)
}

func (r *Runner) do(ctx context.Context, step string, g *witnessv1.Group, site string) error {
	return r.doMode(ctx, step, g, site, "")
}

func (r *Runner) doMode(ctx context.Context, step string, g *witnessv1.Group, site string, mode postgres.StopMode) error {
	if r.Entered != nil {
		select {
		case r.Entered <- step:
		default:
		}
	}
	r.mu.Lock()
	ch := r.block[step]
	r.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tries[step]++
	if err := r.fail[step]; err != nil {
		return err
	}
	r.calls = append(r.calls, Call{Step: step, Group: g.GetSpec().GetName(), Token: g.GetStatus().GetToken(), Site: site, Mode: mode})
	return nil
}

// ErrStaleDemote is what Demote returns when the witness at the site holds
// the group at a higher token than the request's (SetSiteToken).
var ErrStaleDemote = errors.New("stale token refused by the site's witness")

// SetSiteToken plays the replica of the witness at site: it holds every
// group at token, and refuses a demotion at a lower one.
func (r *Runner) SetSiteToken(site string, token uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sites == nil {
		r.sites = map[string]uint64{}
	}
	r.sites[site] = token
}

// Demote plays the witness at site: like actions.Targets it returns
// actions.ErrNoLocalDemotion when the spec has no data_dir for site; it
// refuses a token lower than SetSiteToken's, and otherwise records a
// "demote" call with the stop mode (Fail("demote", …) makes it fail).
// It returns as the final position what Position says of site.
func (r *Runner) Demote(ctx context.Context, g *witnessv1.Group, site string, mode postgres.StopMode) (uint64, error) {
	if g.GetSpec().GetActions().GetPostgres().GetDataDir()[site] == "" {
		return 0, fmt.Errorf("site %s: %w", site, actions.ErrNoLocalDemotion)
	}
	r.mu.Lock()
	held := r.sites[site]
	r.mu.Unlock()
	if tok := g.GetStatus().GetToken(); tok < held {
		r.mu.Lock()
		r.tries[StepDemote]++
		r.mu.Unlock()
		return 0, fmt.Errorf("token %d, the witness at %s holds %d: %w", tok, site, held, ErrStaleDemote)
	}
	if err := r.doMode(ctx, StepDemote, g, site, mode); err != nil {
		return 0, err
	}
	lsn, _, err := r.Position(ctx, g, site)
	return lsn, err
}

type position struct {
	lsn        uint64
	inRecovery bool
}

// SetPosition sets what Position answers for site: its WAL position and
// whether it is a standby. A site never set answers 1, a standby.
func (r *Runner) SetPosition(site string, lsn uint64, inRecovery bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pos == nil {
		r.pos = map[string]position{}
	}
	r.pos[site] = position{lsn, inRecovery}
}

// Position answers what SetPosition said of site.
func (r *Runner) Position(ctx context.Context, g *witnessv1.Group, site string) (uint64, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fail["position:"+site]; err != nil {
		return 0, false, err
	}
	p, ok := r.pos[site]
	if !ok {
		return 1, true, nil
	}
	return p.lsn, p.inRecovery, nil
}

// Fence records step fence for the old site of a move, and
// fence:SITE for a site fenced when the group was created.
func (r *Runner) Fence(ctx context.Context, g *witnessv1.Group, from string) error {
	step := actions.StepFence
	for _, h := range g.GetStatus().GetHistory() {
		if h.GetToken() == g.GetStatus().GetToken() && h.GetFromSite() == "" {
			step = actions.StepCreationFence + from
		}
	}
	return r.do(ctx, step, g, from)
}

// Promote records the active site; for a group with several nodes at a
// site, the node too ("west/west-a").
func (r *Runner) Promote(ctx context.Context, g *witnessv1.Group) error {
	site := g.GetStatus().GetActiveSite()
	if len(g.GetSpec().GetActions().GetPostgres().GetNodes()) > 0 {
		site += "/" + actions.SiteNode(g, site).GetName()
	}
	return r.do(ctx, actions.StepPromote, g, site)
}

var _ actions.Repointer = (*Runner)(nil)

// Repoint records the node re-pointed as its site and name
// ("west/west-b"); Fail("repoint/west-b", err) fails it for that node.
func (r *Runner) Repoint(ctx context.Context, g *witnessv1.Group, n *witnessv1.PostgresNode) error {
	r.mu.Lock()
	err := r.fail[actions.StepRepoint+"/"+n.GetName()]
	r.mu.Unlock()
	if err != nil {
		return err
	}
	return r.do(ctx, actions.StepRepoint, g, n.GetSite()+"/"+n.GetName())
}

func (r *Runner) SwitchDNS(ctx context.Context, g *witnessv1.Group) error {
	return r.do(ctx, actions.StepDNS, g, g.GetStatus().GetActiveSite())
}

// Hook records the hook's plan step, with its run_on as the site.
func (r *Runner) Hook(ctx context.Context, g *witnessv1.Group, h *witnessv1.HookAction) error {
	return r.do(ctx, actions.HookStep(h), g, h.GetRunOn())
}

func (r *Runner) Notify(ctx context.Context, g *witnessv1.Group, from string) error {
	return r.do(ctx, actions.StepNotify, g, g.GetStatus().GetActiveSite())
}

func (r *Runner) Settled(ctx context.Context, g *witnessv1.Group, switched time.Time) error {
	return r.do(ctx, actions.StepSettle, g, g.GetStatus().GetActiveSite())
}

// CheckDNS records the check and returns what SetDrift set.
func (r *Runner) CheckDNS(_ context.Context, g *witnessv1.Group) ([]actions.DNSDrift, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, Call{Step: "check-dns", Group: g.GetSpec().GetName(), Token: g.GetStatus().GetToken(), Site: g.GetStatus().GetActiveSite()})
	return append([]actions.DNSDrift(nil), r.drift...), nil
}

// SetDrift makes every later CheckDNS report d.
func (r *Runner) SetDrift(d ...actions.DNSDrift) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drift = d
}

// Checks returns the DNS drift checks so far.
func (r *Runner) Checks() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.checks...)
}

// Leader is an actions.Leader over a real fsm.FSM, without Raft. Leading
// can be switched off to play a deposed leader.
type Leader struct {
	FSM *fsm.FSM
	// AfterVerify, if set, runs after every successful VerifyLeader: a
	// test plays a pause between verifying and acting with it.
	AfterVerify func()
	// ApplyDelay, if set, is how long each Apply takes, as a commit
	// through Raft does (a fsync, a round trip to the followers).
	ApplyDelay time.Duration
	// VerifyDelay, if set, is how long each VerifyLeader takes, as a
	// round of heartbeats to the followers does.
	VerifyDelay time.Duration
	mu          sync.Mutex
	off         bool
	expired     map[string]bool
	leaseAsks   int
	verifies    int
	entries     map[fsm.Type]int
}

var _ actions.Leader = (*Leader)(nil)

// ErrLeaseHeld is what SiteLeaseExpired returns for a site not set
// expired.
var ErrLeaseHeld = errors.New("lease held")

// SetLeaseExpired sets whether SiteLeaseExpired reports site's lease
// expired; by default no site's is.
func (l *Leader) SetLeaseExpired(site string, expired bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.expired == nil {
		l.expired = map[string]bool{}
	}
	l.expired[site] = expired
}

// LeaseAsks is how many times SiteLeaseExpired was called.
func (l *Leader) LeaseAsks() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leaseAsks
}

func (l *Leader) SiteLeaseExpired(_ context.Context, site string, _ *witnessv1.GroupSpec) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leaseAsks++
	if l.expired[site] {
		return nil
	}
	return fmt.Errorf("site %s: %w", site, ErrLeaseHeld)
}

// ErrDeposed is what VerifyLeader returns once SetLeading(false).
var ErrDeposed = errors.New("deposed")

// SetLeading sets whether VerifyLeader succeeds.
func (l *Leader) SetLeading(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.off = !on
}

func (l *Leader) Groups() []*witnessv1.Group { return l.FSM.Groups() }

// Group is one group of the FSM (actions.GroupReader).
func (l *Leader) Group(name string) (*witnessv1.Group, bool) { return l.FSM.Group(name) }

// Verifies is how many times VerifyLeader was called.
func (l *Leader) Verifies() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.verifies
}

// Entries is how many entries of type t were applied.
func (l *Leader) Entries(t fsm.Type) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.entries[t]
}

func (l *Leader) VerifyLeader() error {
	l.mu.Lock()
	l.verifies++
	off := l.off
	after := l.AfterVerify
	l.mu.Unlock()
	if l.VerifyDelay > 0 {
		time.Sleep(l.VerifyDelay)
	}
	if off {
		return ErrDeposed
	}
	if after != nil {
		after()
	}
	return nil
}

func (l *Leader) Apply(_ context.Context, cmd proto.Message) (fsm.Result, error) {
	l.mu.Lock()
	off := l.off
	l.mu.Unlock()
	if off {
		return fsm.Result{}, ErrDeposed
	}
	b, err := fsm.Encode(cmd)
	if err != nil {
		return fsm.Result{}, err
	}
	if l.ApplyDelay > 0 {
		time.Sleep(l.ApplyDelay)
	}
	l.mu.Lock()
	if l.entries == nil {
		l.entries = map[fsm.Type]int{}
	}
	l.entries[fsm.Type(b[0])]++
	l.mu.Unlock()
	return l.FSM.Apply(b), nil
}
