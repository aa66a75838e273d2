package cluster

import (
	"context"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

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
// that group's database at its site, so that by the time the other sites
// may fail the group over (failover_after, which validation keeps above
// fence_after + margin) the old site no longer takes writes. When contact
// comes back and the group is still active here at the same token (no
// failover happened), it lifts the fence.
func (n *Node) leaseLoop() {
	defer n.wg.Done()
	fencer := n.opts.LocalFencer
	if fencer == nil {
		fencer = pgFencer{site: n.cfg.Site}
	}
	lastMajority := time.Now()
	fenced := map[string]uint64{} // group -> token it was fenced at
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
			dsn := localDSN(g, n.cfg.Site)
			if dsn == "" || st.GetActiveSite() != n.cfg.Site {
				continue
			}
			fenceAfter := time.Duration(g.GetSpec().GetPolicy().GetFenceAfterMs()) * time.Millisecond
			_, isFenced := fenced[name]
			switch {
			case !isFenced && fenceAfter > 0 && age >= fenceAfter:
				n.log.Error("lost the Raft majority while active: fencing this site's database", "group", name, "token", st.GetToken(), "without_majority", age.Round(time.Millisecond))
				if err := n.localFence(fencer.Fence, dsn, name, st.GetToken()); err != nil {
					n.log.Error("self-fence failed; retrying", "group", name, keyErr, err)
					continue
				}
				fenced[name] = st.GetToken()
			case isFenced && age < fenceAfter/2 && n.caughtUp():
				if tok := fenced[name]; tok == st.GetToken() {
					if err := n.localFence(fencer.Unfence, dsn, name, tok); err != nil {
						n.log.Error("lifting the self-fence failed; retrying", "group", name, keyErr, err)
						continue
					}
					n.log.Warn("majority reached again and no failover happened: lifted the self-fence", "group", name, "token", tok)
				}
				delete(fenced, name)
			}
		}
		// A group that moved away while fenced stays fenced: the new
		// active site's leader fences it too, at the new token.
		for name, tok := range fenced {
			if g, ok := n.fsm.Group(name); !ok || g.GetStatus().GetToken() != tok {
				delete(fenced, name)
			}
		}
	}
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
