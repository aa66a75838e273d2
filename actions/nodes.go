package actions

import (
	"context"
	"errors"
	"fmt"
	"slices"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// SiteNode is the PostgreSQL node that acts for site in g now: at the
// active site, the node the current token promoted (GroupStatus.
// active_node); at a switchover's target, the node it will promote; at a
// site the group left, the node that was its primary;
// otherwise the site's principal node: the one with a data_dir, else its
// first listed (the one the per-site maps hold). A group with one node per site has
// that node, named after its site, from the per-site maps. Nil when the
// site has no database.
func SiteNode(g *witnessv1.Group, site string) *witnessv1.PostgresNode {
	pg := g.GetSpec().GetActions().GetPostgres()
	if len(pg.GetNodes()) == 0 {
		if pg.GetDsn()[site] == "" {
			return nil
		}
		return &witnessv1.PostgresNode{Name: site, Site: site, Dsn: pg.GetDsn()[site], DataDir: pg.GetDataDir()[site], ReplicationDsn: pg.GetReplicationDsn()[site]}
	}
	st := g.GetStatus()
	name := ""
	if p := st.GetPending(); site == st.GetActiveSite() {
		name = st.GetActiveNode()
	} else if p.GetToSite() == site && p.GetToNode() != "" {
		// A switchover's target catches up before it is promoted.
		name = p.GetToNode()
	} else {
		for _, h := range slices.Backward(st.GetHistory()) {
			if h.GetFromSite() == site && h.GetToSite() != site {
				name = h.GetFromNode()
				break
			}
		}
	}
	var first *witnessv1.PostgresNode
	for _, n := range pg.GetNodes() {
		if n.GetSite() != site {
			continue
		}
		if n.GetName() == name {
			return n
		}
		if first == nil || (first.GetDataDir() == "" && n.GetDataDir() != "") {
			first = n
		}
	}
	return first
}

// ReplicationDSN is how other nodes reach n to stream from it.
func ReplicationDSN(n *witnessv1.PostgresNode) string {
	if n.GetReplicationDsn() != "" {
		return n.GetReplicationDsn()
	}
	return n.GetDsn()
}

// otherStandbys are the nodes of a group with several at a site that
// follow the active site's node once it is promoted: every node but that
// one and the primary the current token moved away from, which is fenced
// (and reinstated on its own).
func otherStandbys(g *witnessv1.Group) []*witnessv1.PostgresNode {
	pg := g.GetSpec().GetActions().GetPostgres()
	active := SiteNode(g, g.GetStatus().GetActiveSite())
	var old *witnessv1.PostgresNode
	if from := previousSite(g); from != "" && from != g.GetStatus().GetActiveSite() {
		old = SiteNode(g, from)
	}
	var out []*witnessv1.PostgresNode
	for _, n := range pg.GetNodes() {
		if n.GetName() == active.GetName() || (old != nil && n.GetName() == old.GetName()) {
			continue
		}
		out = append(out, n)
	}
	return out
}

// Repointer is a Runner that can point a standby of a group at the node
// the current token promoted.
type Repointer interface {
	Repoint(ctx context.Context, g *witnessv1.Group, node *witnessv1.PostgresNode) error
}

// repoint points every other standby of g at the promoted node; a node
// that cannot be re-pointed now (down, or not a standby) is named in a
// failed step, which holds up no later one and is tried again.
func (r *Reconciler) repoint(ctx context.Context, g *witnessv1.Group) error {
	rp, ok := r.Runner.(Repointer)
	if !ok {
		return fmt.Errorf("repoint: this runner cannot: %w", ErrUnsupported)
	}
	var errs []error
	for _, n := range otherStandbys(g) {
		if err := rp.Repoint(ctx, g, n); err != nil {
			errs = append(errs, fmt.Errorf("node %s at %s: %w", n.GetName(), n.GetSite(), err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("repoint: %w", errors.Join(errs...))
	}
	return nil
}
