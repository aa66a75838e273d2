package actions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sitewitness/witness/actions/dns"
	"github.com/sitewitness/witness/actions/exec"
	"github.com/sitewitness/witness/actions/notify"
	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Step names, in plan order. They are recorded in the replicated state.
const (
	StepFence   = "fence"
	StepPromote = "promote"
	StepDNS     = "dns"
	StepHooks   = "hooks"
	StepNotify  = "notify"
	StepSettle  = "settle"
)

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
)

// Leader is what the reconciler needs of the node it runs on.
type Leader interface {
	// Groups returns the replicated groups.
	Groups() []*witnessv1.Group
	// Apply commits a command through Raft.
	Apply(ctx context.Context, cmd proto.Message) (fsm.Result, error)
	// VerifyLeader confirms with a quorum that this node still leads.
	VerifyLeader() error
}

// Runner runs the actions of one kind; tests swap in recorders.
type Runner interface {
	// Fence fences the old active site of a group.
	Fence(ctx context.Context, g *witnessv1.Group, from string) error
	// Promote promotes the group's database at the active site.
	Promote(ctx context.Context, g *witnessv1.Group) error
	// SwitchDNS points the group's records at the active site.
	SwitchDNS(ctx context.Context, g *witnessv1.Group) error
	// Hooks runs the group's after_switch hooks.
	Hooks(ctx context.Context, g *witnessv1.Group, from string) error
	// Notify tells people about the transition and its steps so far.
	Notify(ctx context.Context, g *witnessv1.Group, from string) error
	// Settled reports nil once resolvers return the new answers and the
	// records' TTL has passed since switched.
	Settled(ctx context.Context, g *witnessv1.Group, switched time.Time) error
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
	// MaxBackoff caps the wait between retries of a failed step; zero
	// means 30s.
	MaxBackoff time.Duration

	mu      sync.Mutex
	running map[string]bool
	retry   map[string]retryState // group -> backoff of its failing step
}

type retryState struct {
	token   uint64
	step    string
	attempt int
	next    time.Time
}

// Run reconciles until ctx ends, then waits for the steps in flight.
func (r *Reconciler) Run(ctx context.Context) {
	tick := r.Tick
	if tick == 0 {
		tick = 500 * time.Millisecond
	}
	r.running, r.retry = map[string]bool{}, map[string]retryState{}
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		for _, g := range r.Leader.Groups() {
			name := g.GetSpec().GetName()
			r.mu.Lock()
			busy := r.running[name]
			if !busy {
				r.running[name] = true
			}
			r.mu.Unlock()
			if busy {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.reconcile(ctx, g)
				r.mu.Lock()
				delete(r.running, name)
				r.mu.Unlock()
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Plan lists the steps for a group at its current token, in order.
func Plan(g *witnessv1.Group) []string {
	a := g.GetSpec().GetActions()
	var steps []string
	if a.GetPostgres() != nil {
		if from := previousSite(g); from != "" {
			steps = append(steps, StepFence)
		}
		steps = append(steps, StepPromote)
	}
	if a.GetDns() != nil {
		steps = append(steps, StepDNS)
	}
	if slices.ContainsFunc(a.GetHooks(), func(h *witnessv1.HookAction) bool { return h.GetStep() == "after_switch" }) {
		steps = append(steps, StepHooks)
	}
	// People hear of transitions, not of a group's creation.
	if len(a.GetNotify()) > 0 && previousSite(g) != "" {
		steps = append(steps, StepNotify)
	}
	if a.GetDns() != nil {
		steps = append(steps, StepSettle)
	}
	return steps
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

// bestEffort steps do not hold up later ones when they fail: fencing an
// unreachable old site is covered by the site's own lease.
func bestEffort(step string) bool { return step == StepFence || step == StepNotify }

func (r *Reconciler) reconcile(ctx context.Context, g *witnessv1.Group) {
	name, token := g.GetSpec().GetName(), g.GetStatus().GetToken()
	var switched time.Time
	for _, step := range Plan(g) {
		ok, at := succeeded(g, step)
		if step == StepDNS {
			switched = at
		}
		if ok {
			continue
		}
		r.mu.Lock()
		rs := r.retry[name]
		r.mu.Unlock()
		if rs.token == token && rs.step == step && time.Now().Before(rs.next) {
			if bestEffort(step) {
				continue
			}
			return
		}
		err := r.run(ctx, g, step, switched, rs.attempt+1)
		if errors.Is(err, ErrNotLeader) || ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		if err != nil {
			attempt := 1
			if rs.token == token && rs.step == step {
				attempt = rs.attempt + 1
			}
			r.retry[name] = retryState{token: token, step: step, attempt: attempt, next: time.Now().Add(r.backoff(attempt))}
		} else {
			delete(r.retry, name)
		}
		r.mu.Unlock()
		if err != nil && !bestEffort(step) {
			return
		}
	}
}

func (r *Reconciler) backoff(attempt int) time.Duration {
	max := r.MaxBackoff
	if max == 0 {
		max = 30 * time.Second
	}
	d := 250 * time.Millisecond << min(attempt-1, 10)
	return min(d, max)
}

// run carries out one step and records its outcome. A step is only run by
// a node that has just verified its leadership.
func (r *Reconciler) run(ctx context.Context, g *witnessv1.Group, step string, switched time.Time, attempt int) error {
	if err := r.Leader.VerifyLeader(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	timeout := r.StepTimeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var err error
	switch step {
	case StepFence:
		err = r.Runner.Fence(sctx, g, previousSite(g))
	case StepPromote:
		err = r.Runner.Promote(sctx, g)
	case StepDNS:
		err = r.Runner.SwitchDNS(sctx, g)
	case StepHooks:
		err = r.Runner.Hooks(sctx, g, previousSite(g))
	case StepNotify:
		err = r.Runner.Notify(sctx, g, previousSite(g))
	case StepSettle:
		err = r.Runner.Settled(sctx, g, switched)
		if errors.Is(err, ErrNotSettled) {
			return err // not a failure: look again next tick
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	res := &witnessv1.StepResult{Token: g.GetStatus().GetToken(), Step: step, Ok: err == nil, StartedUnixNano: start.UnixNano(),
		DurationMs: time.Since(start).Milliseconds(), Attempt: int32(attempt), Node: r.Node}
	if errors.Is(err, ErrBestEffort) {
		// Done, with what did not work written down.
		res.Ok, res.Error, err = true, err.Error(), nil
	}
	if err != nil {
		res.Error = err.Error()
		r.Log.Warn("step failed", "group", g.GetSpec().GetName(), "token", res.Token, "step", step, "attempt", attempt, "error", err)
	} else {
		r.Log.Info("step done", "group", g.GetSpec().GetName(), "token", res.Token, "step", step, "took", time.Since(start))
	}
	out, aerr := r.Leader.Apply(ctx, &witnessv1.RecordStepCommand{Group: g.GetSpec().GetName(), Result: res})
	if aerr == nil {
		aerr = out.Err
	}
	if aerr != nil {
		return fmt.Errorf("record step %s: %w", step, aerr)
	}
	return err
}

// Targets is the Runner that acts on the real systems: PostgreSQL through
// actions/postgres and DNS through actions/dns.
type Targets struct{}

func dnsClient(a *witnessv1.DNSAction) (*dns.Client, error) {
	secret, err := os.ReadFile(a.GetTsigSecretFile())
	if err != nil {
		return nil, fmt.Errorf("read TSIG secret: %w", err)
	}
	return &dns.Client{Server: a.GetServer(), Zone: a.GetZone(),
		Key: &dns.Key{Name: a.GetTsigKeyName(), Algorithm: a.GetTsigAlgorithm(), Secret: strings.TrimSpace(string(secret))}}, nil
}

func record(r *witnessv1.DNSRecord) dns.Record {
	return dns.Record{Name: r.GetName(), Type: r.GetType(), TTL: r.GetTtl(), Values: r.GetValues()}
}

// Fence makes the old site's database read-only, if it can be reached.
func (Targets) Fence(ctx context.Context, g *witnessv1.Group, from string) error {
	pg := g.GetSpec().GetActions().GetPostgres()
	dsn := pg.GetDsn()[from]
	if dsn == "" || pg.GetFence() == "none" {
		return nil
	}
	c := &postgres.Client{Site: from}
	return c.Fence(ctx, dsn, g.GetSpec().GetName(), g.GetStatus().GetToken())
}

// Promote promotes the active site's database.
func (Targets) Promote(ctx context.Context, g *witnessv1.Group) error {
	site := g.GetStatus().GetActiveSite()
	dsn := g.GetSpec().GetActions().GetPostgres().GetDsn()[site]
	if dsn == "" {
		return nil
	}
	c := &postgres.Client{Site: site}
	return c.Promote(ctx, dsn, g.GetSpec().GetName(), g.GetStatus().GetToken())
}

// SwitchDNS points every record at the active site, under the token's
// compare-and-swap.
func (Targets) SwitchDNS(ctx context.Context, g *witnessv1.Group) error {
	a := g.GetSpec().GetActions().GetDns()
	c, err := dnsClient(a)
	if err != nil {
		return err
	}
	for _, rec := range a.GetRecords() {
		if _, err := c.Switch(ctx, record(rec), g.GetStatus().GetActiveSite(), g.GetStatus().GetToken()); err != nil {
			return fmt.Errorf("switch %s: %w", rec.GetName(), err)
		}
	}
	return nil
}

// Hooks runs the group's after_switch hooks that run on the leader, in
// order; the first failure stops the step (a best-effort hook's failure is
// logged in the step error but does not).
func (Targets) Hooks(ctx context.Context, g *witnessv1.Group, from string) error {
	st := g.GetStatus()
	var soft []string
	for _, h := range g.GetSpec().GetActions().GetHooks() {
		if h.GetStep() != "after_switch" {
			continue
		}
		if h.GetRunOn() != "" && h.GetRunOn() != "leader" {
			return fmt.Errorf("hook %s: run_on %q: %w", h.GetName(), h.GetRunOn(), ErrUnsupported)
		}
		_, err := exec.Run(ctx, exec.Hook{Name: h.GetName(), Command: h.GetCommand(), Args: h.GetArgs(), Timeout: time.Duration(h.GetTimeoutMs()) * time.Millisecond},
			exec.Event{Group: g.GetSpec().GetName(), Token: st.GetToken(), From: from, To: st.GetActiveSite(), Step: StepHooks})
		if err != nil && !h.GetBestEffort() {
			return err
		}
		if err != nil {
			soft = append(soft, err.Error())
		}
	}
	if len(soft) > 0 {
		return fmt.Errorf("best-effort hooks failed: %s: %w", strings.Join(soft, "; "), ErrBestEffort)
	}
	return nil
}

// Notify sends every notification of the group; secrets are read from
// their files now.
func (Targets) Notify(ctx context.Context, g *witnessv1.Group, from string) error {
	st := g.GetStatus()
	m := notify.Message{Group: g.GetSpec().GetName(), From: from, To: st.GetActiveSite(), Token: st.GetToken()}
	for _, h := range slices.Backward(st.GetHistory()) {
		if h.GetToken() == st.GetToken() {
			m.Kind, m.Reason, m.At = strings.ToLower(strings.TrimPrefix(h.GetKind().String(), "TRANSITION_KIND_")), h.GetReason(), time.Unix(0, h.GetAtUnixNano())
			break
		}
	}
	for _, s := range st.GetSteps() {
		if s.GetToken() == st.GetToken() {
			m.Steps = append(m.Steps, notify.Step{Name: s.GetStep(), OK: s.GetOk(), Error: s.GetError(), Duration: time.Duration(s.GetDurationMs()) * time.Millisecond})
		}
	}
	var errs []error
	for _, n := range g.GetSpec().GetActions().GetNotify() {
		var err error
		switch n.GetKind() {
		case "webhook":
			w := &notify.Webhook{URL: n.GetUrl()}
			if n.GetSecretFile() != "" {
				var secret []byte
				if secret, err = os.ReadFile(n.GetSecretFile()); err == nil {
					w.Secret = []byte(strings.TrimSpace(string(secret)))
				}
			}
			if err == nil {
				err = w.Send(ctx, m)
			}
		case "email":
			e := &notify.Email{Server: n.GetSmtpServer(), From: n.GetFrom(), To: n.GetTo(), Username: n.GetUsername()}
			if n.GetPasswordFile() != "" {
				var pw []byte
				if pw, err = os.ReadFile(n.GetPasswordFile()); err == nil {
					e.Password = strings.TrimSpace(string(pw))
				}
			}
			if err == nil {
				err = e.Send(ctx, m)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("notify %s: %w", n.GetKind(), err))
		}
	}
	return errors.Join(errs...)
}

// Settled checks that the DNS server answers every record with the active
// site's value and that the longest TTL has passed since the switch.
func (Targets) Settled(ctx context.Context, g *witnessv1.Group, switched time.Time) error {
	a := g.GetSpec().GetActions().GetDns()
	var maxTTL uint32
	for _, rec := range a.GetRecords() {
		maxTTL = max(maxTTL, rec.GetTtl())
		want, err := record(rec).Rdata(g.GetStatus().GetActiveSite())
		if err != nil {
			return err
		}
		got, _, err := dns.Resolve(ctx, a.GetServer(), rec.GetName(), rec.GetType())
		if err != nil {
			return fmt.Errorf("resolve %s: %w", rec.GetName(), err)
		}
		if !slices.Contains(got, want) || len(got) != 1 {
			return fmt.Errorf("%s answers %v, want %s: %w", rec.GetName(), got, want, ErrNotSettled)
		}
	}
	if wait := time.Until(switched.Add(time.Duration(maxTTL) * time.Second)); wait > 0 {
		return fmt.Errorf("TTL %ds not yet passed (%s left): %w", maxTTL, wait.Round(time.Second), ErrNotSettled)
	}
	return nil
}
