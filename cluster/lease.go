package cluster

import (
	"context"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/postgres"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// leaseEvery is how often a witness checks its own lease.
const leaseEvery = 250 * time.Millisecond

// LocalFencer fences and unfences the database of a group at this
// witness's site; nil in Options means the real one (actions/postgres).
type LocalFencer interface {
	// Fence makes the site's database refuse writes.
	Fence(ctx context.Context, dsn, group string, token uint64) error
	// Unfence lets the site's database take writes again under the same
	// token, when no failover happened meanwhile.
	Unfence(ctx context.Context, dsn, group string, token uint64) error
}

type pgFencer struct{ site string }

func (f pgFencer) Fence(ctx context.Context, dsn, group string, token uint64) error {
	return (&postgres.Client{Site: f.site}).Fence(ctx, dsn, group, token)
}

// Unfence promotes at the same token: on a primary that only lifts the
// fence Witness put there.
func (f pgFencer) Unfence(ctx context.Context, dsn, group string, token uint64) error {
	return (&postgres.Client{Site: f.site}).Promote(ctx, dsn, group, token)
}

// majorityAt advances *last to the latest moment this witness is known to
// have been with the Raft majority: now while it leads (a leader steps down
// within leader_lease_timeout of losing its quorum), or the last time it
// heard from a leader.
func (n *Node) majorityAt(last *time.Time, now time.Time) {
	if n.raft.State() == raft.Leader {
		*last = now
		return
	}
	if c := n.raft.LastContact(); c.After(*last) {
		*last = c
	}
}

// caughtUp reports whether this witness has applied everything the leader
// told it was committed, so its replica can be trusted about tokens.
func (n *Node) caughtUp() bool {
	commit, err := strconv.ParseUint(n.raft.Stats()["commit_index"], 10, 64)
	return err == nil && commit > 0 && n.raft.AppliedIndex() >= commit
}

// leaseLoop is the self-fencing lease: a witness at a group's active site
// that cannot reach the Raft majority for the group's fence_after fences
// that group at its site: the database (read-only, token recorded) and the
// group's local_fence hooks, so that by the time the other sites may fail
// the group over (failover_after, which validation keeps above fence_after
// + margin) the old site no longer takes writes. When contact comes back
// and the group is still active here at the same token (no failover
// happened), it lifts the database fence; what the hooks did is not undone.
func (n *Node) leaseLoop() {
	defer n.wg.Done()
	fencer := n.opts.LocalFencer
	if fencer == nil {
		fencer = pgFencer{site: n.cfg.Site}
	}
	lastMajority := time.Now()
	fenced := map[string]*selfFence{} // group -> this episode of fencing
	t := time.NewTicker(leaseEvery)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		n.majorityAt(&lastMajority, now)
		age := now.Sub(lastMajority)
		for _, g := range n.fsm.Groups() {
			name, st := g.GetSpec().GetName(), g.GetStatus()
			dsn, hooks := localDSN(g, n.cfg.Site), localFenceHooks(g)
			if (dsn == "" && len(hooks) == 0) || st.GetActiveSite() != n.cfg.Site {
				continue
			}
			fenceAfter := time.Duration(g.GetSpec().GetPolicy().GetFenceAfterMs()) * time.Millisecond
			f := fenced[name]
			switch {
			case fenceAfter > 0 && age >= fenceAfter:
				if f == nil {
					n.log.Error("lost the Raft majority while active: fencing this site", "group", name, "token", st.GetToken(), "without_majority", age.Round(time.Millisecond))
					f = &selfFence{token: st.GetToken()}
					fenced[name] = f
					// Hooks run once per episode, beside the database
					// fence, which is retried until it holds.
					n.startLocalFenceHooks(g, hooks)
				}
				if dsn != "" && !f.database {
					if err := n.localFence(fencer.Fence, dsn, name, st.GetToken()); err != nil {
						n.log.Error("self-fence failed; retrying", "group", name, keyErr, err)
						continue
					}
					f.database = true
				}
			case f != nil && age < fenceAfter/2 && n.caughtUp():
				if f.database && f.token == st.GetToken() {
					if err := n.localFence(fencer.Unfence, dsn, name, f.token); err != nil {
						n.log.Error("lifting the self-fence failed; retrying", "group", name, keyErr, err)
						continue
					}
					n.log.Warn("majority reached again and no failover happened: lifted the self-fence", "group", name, "token", f.token)
				}
				delete(fenced, name)
			}
		}
		// A group that moved away while fenced stays fenced: the new
		// active site's leader fences it too, at the new token.
		for name, f := range fenced {
			if g, ok := n.fsm.Group(name); !ok || g.GetStatus().GetToken() != f.token {
				delete(fenced, name)
			}
		}
	}
}

// selfFence is one episode of a witness fencing its own site for a group.
type selfFence struct {
	token    uint64
	database bool // the database fence holds
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

func (n *Node) localFence(f func(context.Context, string, string, uint64) error, dsn, group string, token uint64) error {
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	return f(ctx, dsn, group, token)
}

// localDSN is the group's database at this site, if it has one.
func localDSN(g *witnessv1.Group, site string) string {
	pg := g.GetSpec().GetActions().GetPostgres()
	if pg.GetFence() == "none" {
		return ""
	}
	return pg.GetDsn()[site]
}
