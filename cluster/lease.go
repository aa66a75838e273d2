package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/config"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// leaseEvery is how often a witness renews and checks its own lease.
const leaseEvery = config.LeaseCheckEvery

// LocalDatabase opens the database of group g at this witness's site:
// the witness fences it when it loses its lease, lifts that fence, and
// demotes it when the leader asks. Nil in Options means PostgreSQL
// (actions.LocalPostgres).
type LocalDatabase func(g *witnessv1.Group, site string) actions.Database

// localDatabase is this site's database of g.
func (n *Node) localDatabase(g *witnessv1.Group) actions.Database {
	if n.opts.LocalDatabase != nil {
		return n.opts.LocalDatabase(g, n.cfg.Site)
	}
	db := actions.LocalPostgres(g, n.cfg.Site)
	db.FenceTimeout = config.FenceTimeout(g.GetSpec())
	return db
}

// leaseLoop is the self-fencing lease: a witness at a group's active site
// whose lease with the voters (see grant.go) is older than the group's
// fence_after fences that group at its site: the database and the
// group's local_fence hooks, so that by the time the leader may promote
// elsewhere without a confirmed fence (a quorum of voters sees the lease
// expired, after fence_after plus a margin) the old site no longer takes
// writes. A witness that starts is judged after its first renewal round:
// without a quorum's grant it fences at once.
//
// The replica may not say which groups are active here: after a restart
// it can be empty or behind, and a witness cut off may not have heard
// that its site became active. So on lease loss the witness also fences
// the database of every other group that names this site, from the
// replica and from the record it keeps in data_dir (localGroupsFile): a
// standby is only stamped with the token, a primary is fenced, and
// nothing is promoted.
//
// When the lease is renewed again, the fence is lifted only if a
// linearizable read (the leader's commit index, applied here) shows the
// group still active here at the token of the fence; a local replica alone
// may be behind a failover it has not heard of yet. A fence of a group
// that was not known active here is not lifted as such: once the lease is
// held, it is looked at again as a fence an earlier run left, and lifted
// by the same rule. What the hooks did is not undone.
func (n *Node) leaseLoop() {
	local, err := loadLocalGroups(n.cfg.DataDir, n.cfg.Site)
	if err != nil {
		n.log.Error("the record of this site's groups is unreadable; fencing from the replica alone until it is written again", keyErr, err)
	}
	var recordErr string // the last error writing the record, as logged
	select {
	case <-n.ctx.Done():
		return
	case <-n.lease.judged:
	}
	dog, dogTimeout := n.watchdog()
	if dog != nil {
		defer func() {
			if err := dog.Disarm(); err != nil {
				n.log.Error("watchdog not disarmed at stop: the host may reset", keyErr, err)
			}
		}()
	}
	fed := false                      // whether the last check fed the watchdog
	warned := map[string]bool{}       // groups warned about running without a watchdog
	fenced := map[string]*selfFence{} // group -> this episode of fencing
	kept := map[string]string{}       // group -> why its fence was last kept, as logged
	// A fence that an earlier run of this witness left at the current
	// token is this run's to lift, by the same rule: each group active
	// here is looked at once, when this run first sees it (the replica
	// may fill only after the start).
	looked := map[string]uint64{} // group -> token looked at
	t := n.clock.NewTicker(leaseEvery)
	defer t.Stop()
	for {
		since, held := n.lease.since(n.clock.Now())
		var protected []time.Duration // fence_after of each group fenced here
		replica := n.fsm.Groups()
		if err := local.update(replica, n.stateHolds(n.raft.LastIndex())); err != nil {
			if why := err.Error(); why != recordErr {
				recordErr = why
				n.log.Error("could not keep the record of this site's groups", keyErr, err)
			}
		} else {
			recordErr = ""
		}
		activeHere := map[string]bool{} // groups the loop below covers
		for _, g := range replica {
			name, st := g.GetSpec().GetName(), g.GetStatus()
			dsn, hooks := localDSN(g, n.cfg.Site), localFenceHooks(g)
			if n.cfg.Watchdog == nil && !warned[name] && dsn != "" && g.GetSpec().GetActions().GetPostgres().GetDataDir()[n.cfg.Site] != "" {
				warned[name] = true
				n.log.Warn("no watchdog configured: a witness frozen or wedged while this site is cut off cannot demote its database, "+
					"and the voters will count the site fenced all the same; set watchdog.device and watchdog.timeout, or watchdog.disabled: true",
					"group", name, "site", n.cfg.Site)
			}
			if (dsn == "" && len(hooks) == 0) || st.GetActiveSite() != n.cfg.Site {
				continue
			}
			if f := fenced[name]; f != nil && f.elsewhere {
				continue // fenced as not known active here; see below
			}
			activeHere[name] = true
			fenceAfter := time.Duration(g.GetSpec().GetPolicy().GetFenceAfterMs()) * time.Millisecond
			if fenceAfter > 0 {
				protected = append(protected, fenceAfter)
			}
			// While a switchover is pending, a fence at the current token
			// is the leader's (its first phase fences this site while the
			// group stays here), never one an earlier run left: lifting it
			// would let the old primary take writes the target must wait
			// for. The move or the abort that ends the phase has a new
			// token.
			if looked[name] != st.GetToken() && dsn != "" && st.GetPending() == nil {
				// Looked at again at the next check if this one failed.
				if on, err := n.leftFenced(g); err == nil {
					looked[name] = st.GetToken()
					if on && fenced[name] == nil {
						fenced[name] = &selfFence{token: st.GetToken(), database: true}
					}
				}
			}
			f := fenced[name]
			switch {
			case fenceAfter > 0 && (!held || since >= fenceAfter):
				if f == nil {
					lost := "never granted since start"
					if held {
						lost = since.Round(time.Millisecond).String()
					}
					n.log.Error("lease with the voters lost while active: fencing this site", "group", name, "token", st.GetToken(), "since_grant", lost)
					f = &selfFence{token: st.GetToken()}
					fenced[name] = f
					// Hooks run once per episode, beside the database
					// fence, which is retried until it holds.
					n.startLocalFenceHooks(g, hooks)
				}
				if dsn != "" && !f.database {
					f.tried = true
					if err := n.localFence(g, fenceAtLeast(st.GetToken())); err != nil {
						n.log.Error("self-fence failed; retrying", "group", name, keyErr, err)
						continue
					}
					f.database = true
				}
			case f != nil && held && since < fenceAfter/2:
				if f.database || f.tried {
					if err := n.liftSelfFence(name, f.token); err != nil {
						// Said once per reason, not at every check.
						if why := err.Error(); kept[name] != why {
							kept[name] = why
							n.log.Warn("self-fence kept", "group", name, "token", f.token, "why", err)
						}
						if !errors.Is(err, errMovedOn) {
							// An unfence whose answer was lost may have
							// lifted the fence all the same: if the
							// lease is lost again, fence again.
							if f.database {
								f.database, f.tried = false, true
							}
							continue
						}
						// Moved on (a new token here, such as a group
						// re-created): the database is looked at again
						// as a fence an earlier run left, at that token.
						// A standby that the fence stopped (a failover
						// away from here made this one) starts again.
						delete(looked, name)
						n.startStoppedStandby(name, dsn)
					}
				}
				delete(fenced, name)
				delete(kept, name)
			}
			if fenced[name] == nil && dsn != "" && held && (fenceAfter == 0 || since < fenceAfter/2) && startsHere(g, n.cfg.Site) != "" {
				n.maybeStartDemoted(name, st.GetToken())
			}
		}
		protected = append(protected, n.fenceElsewhere(local, replica, activeHere, fenced, looked, since, held)...)
		if dog != nil {
			feed := watchdogFeeds(held, since, dogTimeout, protected)
			if feed {
				if err := dog.Feed(); err != nil {
					n.log.Error("watchdog not fed", keyErr, err)
					feed = false
				}
			}
			if fed && !feed {
				n.log.Error("watchdog no longer fed: the lease has less than the watchdog timeout left; the host resets unless it is renewed",
					"since_grant", since.Round(time.Millisecond), "watchdog_timeout", dogTimeout)
			}
			fed = feed
		}
		// A group that moved away while fenced stays fenced: the new
		// active site's leader fences it too, at the new token.
		for name, f := range fenced {
			if f.elsewhere {
				continue
			}
			if g, ok := n.fsm.Group(name); !ok || g.GetStatus().GetToken() != f.token {
				delete(fenced, name)
				delete(kept, name)
			}
		}
		n.metrics.selfFenced(n.clock.Now(), fenced)
		select {
		case <-n.ctx.Done():
			return
		case <-t.C():
		}
	}
}

// watchdog is the watchdog the lease loop feeds, and its timeout; nil
// when there is none.
func (n *Node) watchdog() (Watchdog, time.Duration) {
	w := n.cfg.Watchdog
	if !w.Enabled() {
		return nil, 0
	}
	if n.opts.Watchdog != nil {
		return n.opts.Watchdog, w.Timeout.D()
	}
	return &deviceWatchdog{path: w.Device}, w.Timeout.D()
}

// leftFenced reports whether the group's database here holds a fence at
// the current token that an earlier run of this witness left; an error
// means it could not tell, and the caller asks again later.
func (n *Node) leftFenced(g *witnessv1.Group) (bool, error) {
	var on bool
	err := n.localFence(g, func(ctx context.Context, db actions.Database) (err error) {
		if on, err = db.Fenced(ctx, g.GetStatus().GetToken()); on || err != nil {
			return err
		}
		// A database this witness demoted (stopped as a primary,
		// standby.signal written) before it was restarted: lifted by the
		// same rule, but only where the promote step of the current
		// token succeeded, so that it was this token's primary. A
		// database stopped before a promotion here is the plan's to
		// promote, not the lift's.
		if promotedAt(g) {
			on, err = db.StoppedPrimary(ctx)
		}
		return err
	})
	if err != nil {
		n.log.Warn("could not tell whether an earlier run left a self-fence; asking again", "group", g.GetSpec().GetName(), keyErr, err)
		return false, err
	}
	if on {
		n.log.Warn("found a self-fence left by an earlier run; lifting it by the same rule", "group", g.GetSpec().GetName(), "token", g.GetStatus().GetToken())
	}
	return on, nil
}

// promotedAt reports whether the promote step of g's current token
// succeeded.
func promotedAt(g *witnessv1.Group) bool {
	st := g.GetStatus()
	for _, r := range st.GetSteps() {
		if r.GetToken() == st.GetToken() && r.GetStep() == actions.StepPromote && r.GetOk() {
			return true
		}
	}
	return false
}

// errMovedOn: the group is no longer active here at the fence's token.
var errMovedOn = errors.New("the group moved on since the fence")

// liftSelfFence lifts a self-fence of group at token once a linearizable
// read shows the group still active at this site at that token.
func (n *Node) liftSelfFence(group string, token uint64) error {
	// The leader directly, or through another voter; then the replica
	// catches up to what it said.
	ctx, cancel := context.WithTimeout(n.ctx, 3*leaseRenewTimeout)
	err := n.readIndex(ctx)
	cancel()
	if err != nil {
		return fmt.Errorf("no linearizable read of the group yet: %w", err)
	}
	g, ok := n.fsm.Group(group)
	if !ok || g.GetStatus().GetToken() != token || g.GetStatus().GetActiveSite() != n.cfg.Site {
		return fmt.Errorf("group %q at token %d, active at %q: %w", group, g.GetStatus().GetToken(), g.GetStatus().GetActiveSite(), errMovedOn)
	}
	if g.GetStatus().GetPending() != nil {
		// A switchover away from here fences this site at this token:
		// that fence is the leader's, lifted by its own abort.
		return fmt.Errorf("group %q at token %d has a switchover pending: the fence is the leader's to lift", group, token)
	}
	if err := n.localFence(g, unfenceAt(token)); err != nil {
		return fmt.Errorf("lift the self-fence: %w", err)
	}
	n.log.Warn("lease renewed and no failover happened (linearizable read): lifted the self-fence", "group", group, "token", token)
	return nil
}

// liftPromoted lifts this witness's fence of a group that became active
// here while the fence held: after the linearizable read that liftSelfFence
// made, only if the group is active here, no switchover is pending, and
// the promote step at its current token succeeded (the reconciler's rule
// held, and the database here is meant to take writes at that token). A
// demoted database is started again; one in recovery is left alone.
// Otherwise it does nothing: the leader fences or promotes as its plan
// says.
func (n *Node) liftPromoted(group string) error {
	g, ok := n.fsm.Group(group)
	if !ok {
		return nil
	}
	st := g.GetStatus()
	if st.GetActiveSite() != n.cfg.Site || st.GetPending() != nil {
		return nil
	}
	if !promotedAt(g) {
		return nil
	}
	if err := n.localFence(g, unfenceAt(st.GetToken())); err != nil {
		return fmt.Errorf("lift the self-fence: %w", err)
	}
	n.log.Warn("lease renewed and the group was promoted here while this site was fenced (linearizable read): lifted the self-fence",
		"group", group, "token", st.GetToken())
	return nil
}

// startStoppedStandby ends a self-fence whose group moved on (after the
// linearizable read of liftSelfFence): a database that the fence stopped
// while it was in recovery (a standby, or one still starting up as a
// standby, that under load it could not tell from a primary in time) is
// started again as the standby it was. It takes no write either way, and
// stopped it would stay stopped: no plan starts a database at a site the
// group is not active at, and a promote over SQL cannot start one at a
// site it moved to.
// The start runs in the background, beside the lease loop, which must not
// wait for it; it is tried a few times.
func (n *Node) startStoppedStandby(group, dsn string) {
	if dsn == "" {
		return
	}
	// Not beside a reinstate of the group here, which stops, rewinds and
	// starts the same database: they share its key.
	key := "reinstate/" + group
	if !n.hookRuns.start(key) {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.hookRuns.done(key)
		for attempt := 1; attempt <= 3; attempt++ {
			g, found := n.fsm.Group(group)
			if !found {
				return
			}
			n.localDB.Lock()
			ctx, cancel := context.WithTimeout(n.ctx, abortStartTimeout)
			started, err := n.localDatabase(g).StartStoppedStandby(ctx)
			cancel()
			n.localDB.Unlock()
			if err == nil {
				if started {
					n.log.Warn("self-fence ended: started this site's standby again, which the fence had stopped", "group", group,
						"token", g.GetStatus().GetToken(), "active_site", g.GetStatus().GetActiveSite())
				}
				return
			}
			n.log.Warn("self-fence ended, but this site's stopped standby did not start again", "group", group, "attempt", attempt, keyErr, err)
			select {
			case <-n.ctx.Done():
				return
			case <-n.clock.After(2 * time.Second):
			}
		}
	}()
}

// selfFence is one episode of a witness fencing its own site for a group.
type selfFence struct {
	token    uint64
	database bool // the database fence holds
	// tried: a fence of the database was attempted; one whose answer was
	// lost may hold all the same, so it is lifted by the same rule.
	tried bool
	// elsewhere: the group was not known active here when fenced (the
	// replica said another site, or lacked it); the fence is not lifted
	// as such.
	elsewhere bool
}

// fenceElsewhere fences, while the lease is lost, the database of every
// group that names this site and that the lease loop did not cover as
// active here: from the replica and from the record in data_dir, at the
// higher token of the two. The site may have become active without this
// witness hearing of it, or its replica may be behind after a restart.
// A standby is only stamped with the token, a primary is fenced; the
// fence never promotes. Hooks run for a group last known active here.
// Once the lease is held again such a fence is lifted by the
// linearizable-read rule if the group is then active here at the token
// it was made at; otherwise it is forgotten here and looked at again as
// one an earlier run left (looked), lifted by the same rule at the token
// the database holds, for a group then active here. It returns
// the fence_after of the groups last known active here, for the watchdog.
func (n *Node) fenceElsewhere(local *localGroups, replica []*witnessv1.Group, activeHere map[string]bool,
	fenced map[string]*selfFence, looked map[string]uint64, since time.Duration, held bool) []time.Duration {
	best := map[string]*witnessv1.Group{}
	for _, g := range local.groups() {
		best[g.GetSpec().GetName()] = g
	}
	for _, g := range replica {
		name := g.GetSpec().GetName()
		if old, ok := best[name]; (!ok && namesSite(g, n.cfg.Site)) || (ok && g.GetStatus().GetToken() >= old.GetStatus().GetToken()) {
			best[name] = g
		}
	}
	var protected []time.Duration
	for _, name := range slices.Sorted(maps.Keys(best)) {
		g := best[name]
		if activeHere[name] || !namesSite(g, n.cfg.Site) {
			continue
		}
		dsn, hooks := localDSN(g, n.cfg.Site), localFenceHooks(g)
		here := g.GetStatus().GetActiveSite() == n.cfg.Site
		fenceAfter := time.Duration(g.GetSpec().GetPolicy().GetFenceAfterMs()) * time.Millisecond
		if here && fenceAfter > 0 {
			protected = append(protected, fenceAfter)
		}
		f := fenced[name]
		switch {
		case fenceAfter > 0 && (!held || since >= fenceAfter):
			if f == nil {
				n.log.Error("lease with the voters lost: fencing this site's database of a group not known active here (the replica may be behind)",
					"group", name, "token", g.GetStatus().GetToken(), "last_known_active", g.GetStatus().GetActiveSite())
				f = &selfFence{token: g.GetStatus().GetToken(), elsewhere: true}
				fenced[name] = f
				if here {
					n.startLocalFenceHooks(g, hooks)
				}
			}
			// Fenced again at every check while the lease is lost: a
			// standby here is only stamped, and a leader this witness
			// cannot hear may still promote it.
			if dsn != "" {
				f.tried = true
				if err := n.localFence(g, fenceAtLeast(g.GetStatus().GetToken())); err != nil {
					n.log.Error("self-fence failed; retrying", "group", name, keyErr, err)
					continue
				}
				f.database = true
			}
		case f != nil && held && since < fenceAfter/2:
			if f.database || f.tried {
				// Lifted by the linearizable-read rule if the group is
				// active here at the token the fence was made at (a
				// demoted database is started again); if it moved on,
				// the database is looked at again as a fence an earlier
				// run left, at the token it holds now.
				err := n.liftSelfFence(name, f.token)
				if err != nil && !errors.Is(err, errMovedOn) {
					continue // no linearizable read yet: at the next check
				}
				if err != nil && n.liftPromoted(name) != nil {
					continue
				}
				if err != nil {
					n.startStoppedStandby(name, dsn)
				}
			}
			delete(fenced, name)
			delete(looked, name)
		}
	}
	return protected
}

// localFenceHooks are the group's hooks of step local_fence.
func localFenceHooks(g *witnessv1.Group) []*witnessv1.HookAction {
	var out []*witnessv1.HookAction
	for _, h := range g.GetSpec().GetActions().GetHooks() {
		if h.GetStep() == actions.HookLocalFence {
			out = append(out, h)
		}
	}
	return out
}

// startLocalFenceHooks runs a group's local_fence hooks in spec order, in
// the background so that a slow hook never holds up the lease of other
// groups. A failure is logged and counted; it does not stop the hooks
// after it, and it is not retried: the site is cut off, and the hook's own
// timeout bounds it. A group whose hooks still run from an earlier episode
// is not started again.
func (n *Node) startLocalFenceHooks(g *witnessv1.Group, hooks []*witnessv1.HookAction) {
	if len(hooks) == 0 {
		return
	}
	name := g.GetSpec().GetName()
	key := "local_fence/" + name
	if !n.hookRuns.start(key) {
		n.log.Warn("local_fence hooks of the last episode still run; not starting them again", "group", name)
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.hookRuns.done(key)
		for _, h := range hooks {
			log := n.log.With("group", name, "hook", h.GetName(), "step", h.GetStep(), "token", g.GetStatus().GetToken())
			res, err := actions.RunHook(n.ctx, g, h, actions.Witness{Node: n.cfg.Name, Site: n.cfg.Site})
			if err != nil {
				n.metrics.localFenceHookFailures.WithLabelValues(name, h.GetName()).Inc()
				log.Error("local_fence hook failed", keyErr, err, "output", res.Output)
				continue
			}
			log.Warn("local_fence hook done", "took", res.Duration, "output", res.Output)
		}
	}()
}

// localFence runs a fence or an unfence of the group's database at this
// site, bounded by the group's fence time limit.
func (n *Node) localFence(g *witnessv1.Group, f func(context.Context, actions.Database) error) error {
	ctx, cancel := context.WithTimeout(n.ctx, config.FenceTimeout(g.GetSpec()))
	defer cancel()
	return f(ctx, n.localDatabase(g))
}

// fenceAtLeast fences a database at token, or at the higher token it
// holds: a decision this witness has not heard of, which a self-fence
// must not yield to (the site may have become active without it). With a
// data_dir the database is demoted (actions.Database.Fence).
func fenceAtLeast(token uint64) func(context.Context, actions.Database) error {
	return func(ctx context.Context, db actions.Database) error {
		err := db.Fence(ctx, token)
		if higher, ok := errors.AsType[*postgres.HigherTokenError](err); ok {
			return db.Fence(ctx, higher.Held)
		}
		return err
	}
}

// unfenceAt lifts the fence of a database at token.
func unfenceAt(token uint64) func(context.Context, actions.Database) error {
	return func(ctx context.Context, db actions.Database) error { return db.Unfence(ctx, token) }
}

// localDSN is the group's database at this site, if it has one.
func localDSN(g *witnessv1.Group, site string) string {
	pg := g.GetSpec().GetActions().GetPostgres()
	if pg.GetFence() == "none" {
		return ""
	}
	return actions.SiteNode(g, site).GetDsn()
}
