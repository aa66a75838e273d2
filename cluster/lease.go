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

// LocalFencer fences and unfences the database of a group at this
// witness's site; nil in Options means the real one (actions/postgres).
type LocalFencer interface {
	// Fence makes the site's database (dsn) of group g refuse writes, at
	// g's current token or at the higher one the database holds (a
	// decision this witness has not heard of yet). A database in recovery
	// is only stamped with the token; Fence never promotes.
	Fence(ctx context.Context, g *witnessv1.Group, dsn string) error
	// Unfence lets the site's database take writes again at g's current
	// token, once a linearizable read showed that no failover happened.
	Unfence(ctx context.Context, g *witnessv1.Group, dsn string) error
	// Fenced reports whether the site's database holds a fence of g at
	// g's current token that an earlier run of this witness may have left
	// (a restart in the middle of an episode).
	Fenced(ctx context.Context, g *witnessv1.Group, dsn string) (bool, error)
	// Demote stops the site's database (dsn) of group g with mode and
	// leaves it able to start only as a standby, for the leader's fence of
	// an old site; it needs the group's data_dir for this site.
	Demote(ctx context.Context, g *witnessv1.Group, dsn string, mode postgres.StopMode) error
}

// pgFencer is the real LocalFencer. With a data_dir for its site, it
// demotes the database: standby.signal, then an immediate shutdown (the
// postmaster killed at the fence's time limit), so that it takes no write
// from any client and can start again only as a standby; unfencing starts
// it as a primary again. Without one, it fences over SQL: the application
// roles' logins blocked and every session ended, given back by Unfence on
// a node that is a primary (never one in recovery).
type pgFencer struct{ site string }

func (f pgFencer) demoter(g *witnessv1.Group) *postgres.Demoter {
	pg := g.GetSpec().GetActions().GetPostgres()
	dir := actions.SiteNode(g, f.site).GetDataDir()
	if dir == "" {
		return nil
	}
	return &postgres.Demoter{DataDir: dir, PgCtl: pg.GetPgCtl(), Command: pg.GetDemoteCommand()}
}

func (f pgFencer) client(g *witnessv1.Group) *postgres.Client {
	return &postgres.Client{Site: f.site, Roles: g.GetSpec().GetActions().GetPostgres().GetRoles()}
}

func (f pgFencer) Demote(ctx context.Context, g *witnessv1.Group, dsn string, mode postgres.StopMode) error {
	d := f.demoter(g)
	if d == nil {
		return fmt.Errorf("group %s at site %s: %w", g.GetSpec().GetName(), f.site, actions.ErrNoLocalDemotion)
	}
	d.Timeout = demoteTimeout(g, mode)
	// A standby that stays one takes no write: stopping it would fence
	// nothing, and would stop an old primary that came back as a standby
	// through prepare-start after the leader's fence of the site was
	// first tried. Reinstate rewinds such a node (its history left the
	// new primary's), running or not.
	if f.standbyStamped(ctx, g, d, dsn) {
		return nil
	}
	return d.Demote(ctx, dsn, mode)
}

// standbyStamped reports whether the database is a standby that stays one
// (in recovery, standby.signal in place) and now holds g's token: it takes
// no write, so a fence or demotion leaves it running.
func (f pgFencer) standbyStamped(ctx context.Context, g *witnessv1.Group, d *postgres.Demoter, dsn string) bool {
	sctx, cancel := context.WithTimeout(ctx, actions.FailoverFenceConnectTimeout)
	ok, err := d.StandbyRunning(sctx, dsn)
	cancel()
	return err == nil && ok && f.sqlFence(ctx, g, dsn) == nil
}

// FinalPosition reads the stopped database's last checkpoint location.
func (f pgFencer) FinalPosition(ctx context.Context, g *witnessv1.Group) (uint64, error) {
	d := f.demoter(g)
	if d == nil {
		return 0, fmt.Errorf("group %s at site %s: %w", g.GetSpec().GetName(), f.site, actions.ErrNoLocalDemotion)
	}
	return d.FinalPosition(ctx)
}

// Fence demotes a database that runs as a primary, or that does not
// answer, where the group has a data_dir here; a standby that stays one
// is only stamped with the token over SQL (standbyStamped).
func (f pgFencer) Fence(ctx context.Context, g *witnessv1.Group, dsn string) error {
	if d := f.demoter(g); d != nil {
		if f.standbyStamped(ctx, g, d, dsn) {
			return nil
		}
		return d.Demote(ctx, dsn, postgres.StopImmediate)
	}
	return f.sqlFence(ctx, g, dsn)
}

// sqlFence fences over SQL at g's token, or at the higher one the node
// holds: a decision this witness has not heard of, which a self-fence
// must not yield to (the site may have become active without it).
func (f pgFencer) sqlFence(ctx context.Context, g *witnessv1.Group, dsn string) error {
	name, token := g.GetSpec().GetName(), g.GetStatus().GetToken()
	err := f.client(g).Fence(ctx, dsn, name, token)
	if higher, ok := errors.AsType[*postgres.HigherTokenError](err); ok {
		return f.client(g).Fence(ctx, dsn, name, higher.Held)
	}
	return err
}

// Fenced reports an SQL fence of g at its current token. A demoted
// database is not looked at here (see leftFenced and StoppedPrimary).
func (f pgFencer) Fenced(ctx context.Context, g *witnessv1.Group, dsn string) (bool, error) {
	if f.demoter(g) != nil {
		return false, nil
	}
	st, err := f.client(g).Status(ctx, dsn)
	if err != nil {
		return false, err
	}
	r, ok := st.Groups[g.GetSpec().GetName()]
	return ok && r.Role == postgres.RoleFenced && r.Token == g.GetStatus().GetToken() && !st.InRecovery, nil
}

// Unfence lifts the fence of a node that runs as a primary, or that this
// witness demoted (stopped, standby.signal written); a node that runs in
// recovery is left alone: promoting it is the reconciler's, under its
// promotion rule, never a lifted fence's.
func (f pgFencer) Unfence(ctx context.Context, g *witnessv1.Group, dsn string) error {
	if d := f.demoter(g); d != nil {
		err := d.StartAsPrimary(ctx, dsn)
		if errors.Is(err, postgres.ErrNotPrimary) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	// The application roles' logins that an SQL fence blocked come back;
	// on a node just started it records the token it already holds.
	return f.client(g).Unfence(ctx, dsn, g.GetSpec().GetName(), g.GetStatus().GetToken())
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
	fencer := n.localFencer()
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
				if on, err := n.leftFenced(fencer, g, dsn); err == nil {
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
					if err := n.localFence(fencer.Fence, g, dsn); err != nil {
						n.log.Error("self-fence failed; retrying", "group", name, keyErr, err)
						continue
					}
					f.database = true
				}
			case f != nil && held && since < fenceAfter/2:
				if f.database || f.tried {
					if err := n.liftSelfFence(fencer, name, dsn, f.token); err != nil {
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
						n.startStoppedStandby(fencer, name, dsn)
					}
				}
				delete(fenced, name)
				delete(kept, name)
			}
			if fenced[name] == nil && dsn != "" && held && (fenceAfter == 0 || since < fenceAfter/2) && startsHere(g, n.cfg.Site) != "" {
				n.maybeStartDemoted(fencer, name, dsn, st.GetToken())
			}
		}
		protected = append(protected, n.fenceElsewhere(fencer, local, replica, activeHere, fenced, looked, since, held)...)
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
func (n *Node) leftFenced(fencer LocalFencer, g *witnessv1.Group, dsn string) (bool, error) {
	var on bool
	err := n.localFence(func(ctx context.Context, g *witnessv1.Group, dsn string) (err error) {
		if on, err = fencer.Fenced(ctx, g, dsn); on || err != nil {
			return err
		}
		// A database this witness demoted (stopped as a primary,
		// standby.signal written) before it was restarted: lifted by the
		// same rule, but only where the promote step of the current
		// token succeeded, so that it was this token's primary. A
		// database stopped before a promotion here is the plan's to
		// promote, not the lift's.
		if sp, ok := fencer.(StoppedPrimaryReader); ok && promotedAt(g) {
			on, err = sp.StoppedPrimary(ctx, g)
		}
		return err
	}, g, dsn)
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
func (n *Node) liftSelfFence(fencer LocalFencer, group, dsn string, token uint64) error {
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
	if err := n.localFence(fencer.Unfence, g, dsn); err != nil {
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
func (n *Node) liftPromoted(fencer LocalFencer, group, dsn string) error {
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
	if err := n.localFence(fencer.Unfence, g, dsn); err != nil {
		return fmt.Errorf("lift the self-fence: %w", err)
	}
	n.log.Warn("lease renewed and the group was promoted here while this site was fenced (linearizable read): lifted the self-fence",
		"group", group, "token", st.GetToken())
	return nil
}

// StandbyStarter is a LocalFencer that can start again a standby that a
// self-fence stopped.
type StandbyStarter interface {
	// StartStoppedStandby starts the group's database here as the standby
	// it was, if it is one that stopped in recovery with standby.signal in
	// place; it reports whether it started one.
	StartStoppedStandby(ctx context.Context, g *witnessv1.Group, dsn string) (bool, error)
}

// StartStoppedStandby starts a standby that stopped in recovery (a self-fence
// that could not tell it from a primary stops it) as a standby again.
func (f pgFencer) StartStoppedStandby(ctx context.Context, g *witnessv1.Group, dsn string) (bool, error) {
	d := f.demoter(g)
	if d == nil {
		return false, nil
	}
	stopped, err := d.StoppedStandby(ctx)
	if err != nil || !stopped {
		return false, err
	}
	return true, d.StartAsStandby(ctx, dsn)
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
func (n *Node) startStoppedStandby(fencer LocalFencer, group, dsn string) {
	ss, ok := fencer.(StandbyStarter)
	if !ok || dsn == "" {
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
			started, err := ss.StartStoppedStandby(ctx, g, dsn)
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
// fencer never promotes. Hooks run for a group last known active here.
// Once the lease is held again such a fence is lifted by the
// linearizable-read rule if the group is then active here at the token
// it was made at; otherwise it is forgotten here and looked at again as
// one an earlier run left (looked), lifted by the same rule at the token
// the database holds, for a group then active here. It returns
// the fence_after of the groups last known active here, for the watchdog.
func (n *Node) fenceElsewhere(fencer LocalFencer, local *localGroups, replica []*witnessv1.Group, activeHere map[string]bool,
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
				if err := n.localFence(fencer.Fence, g, dsn); err != nil {
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
				err := n.liftSelfFence(fencer, name, dsn, f.token)
				if err != nil && !errors.Is(err, errMovedOn) {
					continue // no linearizable read yet: at the next check
				}
				if err != nil && n.liftPromoted(fencer, name, dsn) != nil {
					continue
				}
				if err != nil {
					n.startStoppedStandby(fencer, name, dsn)
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
func (n *Node) localFence(f func(context.Context, *witnessv1.Group, string) error, g *witnessv1.Group, dsn string) error {
	ctx, cancel := context.WithTimeout(n.ctx, config.FenceTimeout(g.GetSpec()))
	defer cancel()
	return f(ctx, g, dsn)
}

// localDSN is the group's database at this site, if it has one.
func localDSN(g *witnessv1.Group, site string) string {
	pg := g.GetSpec().GetActions().GetPostgres()
	if pg.GetFence() == "none" {
		return ""
	}
	return actions.SiteNode(g, site).GetDsn()
}
