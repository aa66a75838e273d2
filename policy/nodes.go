package policy

import (
	"fmt"
	"strings"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// NodeView is one of several PostgreSQL nodes at a site of a group, as
// its fresh observations show it: the worst of them, the furthest
// positions.
type NodeView struct {
	Name      string
	Role      string
	Failing   bool // a witness sees its probe failing
	Streaming bool
	// WAL is the furthest it holds (received or replayed), Replayed what
	// it replayed, Timeline its timeline; 0 unknown.
	WAL, Replayed uint64
	Timeline      uint32
	LagBytes      int64
}

// nodeCell returns the cell of the named node at site t, adding it.
func (e *evaluator) nodeCell(t int, name string) *nodeCell {
	for i := range e.nodes {
		if n := &e.nodes[i]; n.site == t && n.name == name {
			return n
		}
	}
	e.nodes = append(e.nodes, nodeCell{site: t, name: name})
	return &e.nodes[len(e.nodes)-1]
}

// hasNodes reports whether site t has fresh observations of named nodes.
func (e *evaluator) hasNodes(t int) bool {
	for i := range e.nodes {
		if e.nodes[i].site == t {
			return true
		}
	}
	return false
}

// eligibleNode judges each named node of site t as eligible judges a
// site's only database, and chooses the most advanced eligible one (the
// furthest WAL held; by name when equal) in e.node. When none is, it says
// why not for each.
func (e *evaluator) eligibleNode(gv groupView, t, a int, j Judge) (bool, string) {
	site := gv.sites[t].Site
	var best *nodeCell
	var why []string
	for i := range e.nodes {
		n := &e.nodes[i]
		if n.site != t {
			continue
		}
		what := site + "/" + n.name
		if n.failing {
			why = append(why, what+" failing")
			continue
		}
		if ok, w := e.eligibleDB(gv, &n.db, what, a, j); !ok {
			why = append(why, w)
			continue
		}
		if best == nil || n.db.wal > best.db.wal || (n.db.wal == best.db.wal && n.name < best.name) {
			best = n
		}
	}
	if best == nil {
		return false, strings.Join(why, "; ")
	}
	e.node = best.name
	return true, ""
}

// EligibleNode is Eligible that also names the node of site it would
// promote: the most advanced eligible one, "" for a site's only node.
func EligibleNode(in Input, group, site string, j Judge) (node string, ok bool, why string) {
	e := newEvaluator(in)
	for gi, g := range in.Groups {
		if !e.indexed[gi] || g.GetSpec().GetName() != group {
			continue
		}
		spec := g.GetSpec()
		gv := e.view(spec, g.GetStatus(), e.recs[e.start[gi]:e.start[gi+1]])
		a, t := siteIndex(spec, g.GetStatus().GetActiveSite()), siteIndex(spec, site)
		switch {
		case t < 0:
			return "", false, fmt.Sprintf("%q is not a site of group %q", site, group)
		case a < 0:
			return "", false, fmt.Sprintf("active site %q is not a site of the group", g.GetStatus().GetActiveSite())
		case a == t:
			return "", false, fmt.Sprintf("%s is the active site", site)
		}
		ok, why := e.eligible(gv, t, a, j)
		return e.node, ok, why
	}
	return "", false, fmt.Sprintf("group %q not found", group)
}

// target names the site a decision moves to, and its node when it names
// one: "west", "west/west-a".
func (d Decision) target() string {
	if d.ToNode == "" {
		return d.To
	}
	return d.To + "/" + d.ToNode
}

// actingNode names the node that acts for the active site of a group with
// several nodes: the one the last move promoted, or before any move the
// site's principal, whose DSN the spec's per-site map holds.
func actingNode(spec *witnessv1.GroupSpec, st *witnessv1.GroupStatus) string {
	if n := st.GetActiveNode(); n != "" {
		return n
	}
	pg := spec.GetActions().GetPostgres()
	site := st.GetActiveSite()
	for _, n := range pg.GetNodes() {
		if n.GetSite() == site && n.GetDsn() == pg.GetDsn()[site] {
			return n.GetName()
		}
	}
	return ""
}
