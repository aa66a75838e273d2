package actions

import (
	"context"
	"fmt"
	"time"

	"github.com/sitewitness/witness/actions/postgres"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// DefaultSwitchoverTimeout bounds the catch-up wait of a switchover whose
// spec does not say (config fills it in).
const DefaultSwitchoverTimeout = 30 * time.Second

// prepareSteps is the first phase of a switchover: fence the old primary
// while the group stays at its site, then, when the target's database is
// known, wait until it has replayed the old primary's final position.
// Only then does the move commit: nothing the old primary acknowledged is
// left behind.
func prepareSteps(g *witnessv1.Group) []string {
	pg := g.GetSpec().GetActions().GetPostgres()
	to := g.GetStatus().GetPending().GetToSite()
	if pg.GetFence() == "none" || to == "" || pg.GetDsn()[to] == "" {
		return []string{StepFence}
	}
	return []string{StepFence, StepCatchUp}
}

// finalPosition reads the old primary's WAL position once its SQL fence
// holds (writes blocked, sessions ended): every commit it acknowledged is
// before it. 0 when it cannot be read.
func (r *Reconciler) finalPosition(ctx context.Context, g *witnessv1.Group, site string) uint64 {
	lsn, _, err := r.Runner.Position(ctx, g, site)
	if err != nil {
		r.Log.Warn("final WAL position of the fenced primary not read", "group", g.GetSpec().GetName(), "token", g.GetStatus().GetToken(), "site", site, keyErrLog, err)
		return 0
	}
	return lsn
}

// fenceResult is the fence step's success at the group's current token.
func fenceResult(g *witnessv1.Group) *witnessv1.StepResult {
	st := g.GetStatus()
	for _, s := range st.GetSteps() {
		if s.GetToken() == st.GetToken() && s.GetStep() == StepFence && s.GetOk() {
			return s
		}
	}
	return nil
}

// catchUp checks that the switchover's target has replayed the fenced
// primary's final position; it returns what the target has replayed, and
// ErrNotCaughtUp (with the numbers) while it has not.
func (r *Reconciler) catchUp(ctx context.Context, g *witnessv1.Group) (uint64, error) {
	from, to := g.GetStatus().GetActiveSite(), g.GetStatus().GetPending().GetToSite()
	final := fenceResult(g).GetWalLsn()
	if final == 0 {
		// The fence did not say (a demotion that had to kill): a primary
		// fenced over SQL still answers.
		final = r.finalPosition(ctx, g, from)
	}
	if final == 0 {
		return 0, fmt.Errorf("the final WAL position of %s is unknown, so %s cannot be shown to hold every commit: %w", from, to, ErrNotCaughtUp)
	}
	replayed, inRecovery, err := r.Runner.Position(ctx, g, to)
	if err != nil {
		return 0, fmt.Errorf("%s replayed unknown, %s's final position %s: %v: %w", to, from, postgres.FormatLSN(final), err, ErrNotCaughtUp)
	}
	if !inRecovery {
		return replayed, fmt.Errorf("%s is a primary, not a standby of %s", to, from)
	}
	if replayed < final {
		return replayed, fmt.Errorf("%s replayed %s of %s's final %s (%d bytes to go): %w", to, postgres.FormatLSN(replayed), from, postgres.FormatLSN(final), final-replayed, ErrNotCaughtUp)
	}
	return replayed, nil
}

// switchoverTimeout is the group's switchover_timeout.
func switchoverTimeout(g *witnessv1.Group) time.Duration {
	if ms := g.GetSpec().GetPolicy().GetSwitchoverTimeoutMs(); ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return DefaultSwitchoverTimeout
}

// catchUpExpired says why the switchover gives up when its target has not
// caught up within switchover_timeout of the fence, "" while it may wait.
func (r *Reconciler) catchUpExpired(g *witnessv1.Group) string {
	deadline, ok := catchUpDeadline(g)
	if !ok || !r.now().After(deadline) {
		return ""
	}
	limit := switchoverTimeout(g)
	why := "no progress read"
	r.mu.Lock()
	if p, ok := r.caughtUp[g.GetSpec().GetName()]; ok && p.token == g.GetStatus().GetToken() {
		why = p.why
	}
	r.mu.Unlock()
	return fmt.Sprintf("switchover to %s aborted: %s did not catch up within switchover_timeout %s of the fence of %s: %s; nothing was lost, the fence is lifted",
		g.GetStatus().GetPending().GetToSite(), g.GetStatus().GetPending().GetToSite(), limit, g.GetStatus().GetActiveSite(), why)
}

// catchUpDeadline is when the catch-up of a switchover's first phase
// gives up: switchover_timeout after the fence ended; false before the
// fence.
func catchUpDeadline(g *witnessv1.Group) (time.Time, bool) {
	f := fenceResult(g)
	if f == nil {
		return time.Time{}, false
	}
	fenced := time.Unix(0, f.GetStartedUnixNano()+f.GetDurationMs()*int64(time.Millisecond))
	return fenced.Add(switchoverTimeout(g)), true
}

// catchUpProgress is the last progress of a group's catch-up wait.
type catchUpProgress struct {
	token    uint64
	why      string
	recorded time.Time
}

// catchUpRecordEvery is how often the catch-up wait's progress is
// recorded in the group's steps (witnessctl group shows the latest).
const catchUpRecordEvery = 2 * time.Second

// noteCatchUp keeps the catch-up's progress for the abort's reason and
// records it as a waiting step result, at most every catchUpRecordEvery.
func (r *Reconciler) noteCatchUp(ctx context.Context, g *witnessv1.Group, replayed uint64, why error) {
	name, token := g.GetSpec().GetName(), g.GetStatus().GetToken()
	now := r.now()
	r.mu.Lock()
	if r.caughtUp == nil {
		r.caughtUp = map[string]catchUpProgress{}
	}
	p := r.caughtUp[name]
	record := p.token != token || now.Sub(p.recorded) >= catchUpRecordEvery
	p.token, p.why = token, why.Error()
	if record {
		p.recorded = now
	}
	r.caughtUp[name] = p
	r.mu.Unlock()
	if !record || !r.roomForFailure(name) {
		return
	}
	res := &witnessv1.StepResult{Token: token, Step: StepCatchUp, Error: why.Error(), StartedUnixNano: now.UnixNano(), Node: r.Node, WalLsn: replayed}
	if err := r.record(ctx, name, res); err != nil {
		r.Log.Warn("record the catch-up's progress", "group", name, keyErrLog, err)
	}
}
