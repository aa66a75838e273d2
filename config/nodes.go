package config

import (
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5/pgconn"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// validateNodes checks postgres.nodes: names unique, sites of the group,
// connection strings that parse, at most one data_dir per site (the
// site's witness demotes one data directory), and none of the per-site
// maps beside them.
func (pg *Postgres) validateNodes(p *problems, f string, sites map[string]bool) {
	for _, m := range []struct {
		field string
		set   bool
	}{{"dsn", len(pg.DSN) > 0}, {"data_dir", len(pg.DataDir) > 0}, {"replication_dsn", len(pg.ReplicationDSN) > 0}} {
		if m.set {
			p.addf(f+"."+m.field, "", ErrConflict, "give nodes or the per-site %s, not both: with nodes, each node has its own", m.field)
		}
	}
	names := map[string]bool{}
	dataDirAt := map[string]string{} // site -> node with a data_dir
	for i, n := range pg.Nodes {
		nf := fmt.Sprintf("%s.nodes[%d]", f, i)
		switch {
		case n.Name == "":
			p.add(nf+".name", "", ErrRequired)
		case names[n.Name]:
			p.add(nf+".name", n.Name, ErrDuplicate)
		}
		names[n.Name] = true
		switch {
		case n.Site == "":
			p.add(nf+".site", "", ErrRequired)
		case !sites[n.Site]:
			p.addf(nf+".site", n.Site, ErrUnknown, "not a site of the group")
		}
		if n.DSN == "" {
			p.add(nf+".dsn", "", ErrRequired)
		} else if _, err := pgconn.ParseConfig(n.DSN); err != nil {
			p.addf(nf+".dsn", "", ErrSyntax, "not a PostgreSQL connection string (keywords or a postgres:// URL)")
		}
		if n.ReplicationDSN != "" {
			if _, err := pgconn.ParseConfig(n.ReplicationDSN); err != nil {
				p.addf(nf+".replication_dsn", "", ErrSyntax, "not a PostgreSQL connection string (keywords or a postgres:// URL)")
			}
		}
		if n.DataDir != "" {
			checkAbsPath(p, nf+".data_dir", n.DataDir)
			if other, ok := dataDirAt[n.Site]; ok {
				p.addf(nf+".data_dir", n.DataDir, ErrConflict, "node %s at %s has one already: the site's witness demotes one data directory", other, n.Site)
			} else {
				dataDirAt[n.Site] = n.Name
			}
		}
	}
}

// dataDirs are the sites whose database the site's witness demotes.
func (pg *Postgres) dataDirs() map[string]bool {
	out := map[string]bool{}
	for site, d := range pg.DataDir {
		out[site] = d != ""
	}
	for _, n := range pg.Nodes {
		if n.DataDir != "" {
			out[n.Site] = true
		}
	}
	return out
}

// node is the node named name, or nil.
func (pg *Postgres) node(name string) *PostgresNode {
	if pg == nil || name == "" {
		return nil
	}
	for i := range pg.Nodes {
		if pg.Nodes[i].Name == name {
			return &pg.Nodes[i]
		}
	}
	return nil
}

// nodesProto fills out's nodes, and its per-site maps with each site's
// principal node: the one with a data_dir, else the first listed.
func (pg *Postgres) nodesProto(out *witnessv1.PostgresAction) {
	if len(pg.Nodes) == 0 {
		return
	}
	out.Dsn, out.DataDir, out.ReplicationDsn = map[string]string{}, map[string]string{}, map[string]string{}
	principal := map[string]PostgresNode{}
	for _, n := range pg.Nodes {
		out.Nodes = append(out.Nodes, &witnessv1.PostgresNode{Name: n.Name, Site: n.Site, Dsn: n.DSN, DataDir: n.DataDir, ReplicationDsn: n.ReplicationDSN})
		if p, ok := principal[n.Site]; !ok || (p.DataDir == "" && n.DataDir != "") {
			principal[n.Site] = n
		}
	}
	for _, site := range slices.Sorted(maps.Keys(principal)) {
		n := principal[site]
		out.Dsn[site] = n.DSN
		if n.DataDir != "" {
			out.DataDir[site] = n.DataDir
		}
		if n.ReplicationDSN != "" {
			out.ReplicationDsn[site] = n.ReplicationDSN
		}
	}
}

// validateNodeProbes checks the postgres probes of a group with nodes:
// each names a node of its own site (a site with several must say
// which), and every node is probed, so that its role and position are
// known to the policy.
func (g *Group) validateNodeProbes(p *problems, f string) {
	pg := g.Actions.Postgres
	probed := map[string]bool{}
	for si, s := range g.Sites {
		atSite := 0
		for _, n := range pg.Nodes {
			if n.Site == s.Name {
				atSite++
			}
		}
		for pi, pr := range s.Probes {
			if pr.Kind != "postgres" {
				continue
			}
			pf := fmt.Sprintf("%s.sites[%d].probes[%d].node", f, si, pi)
			switch n := pg.node(pr.Node); {
			case pr.Node == "" && atSite > 1:
				p.addf(pf, "", ErrRequired, "site %s has %d nodes: name the one this probe checks", s.Name, atSite)
			case pr.Node == "":
			case len(pg.Nodes) == 0:
				p.addf(pf, pr.Node, ErrUnknown, "the group lists no postgres nodes")
			case n == nil:
				p.addf(pf, pr.Node, ErrUnknown, "not a node of actions.postgres.nodes")
			case n.Site != s.Name:
				p.addf(pf, pr.Node, ErrInvalid, "node %s is at %s, not %s", n.Name, n.Site, s.Name)
			default:
				probed[n.Name] = true
			}
		}
	}
	sites := g.siteNames()
	for i, n := range pg.Nodes {
		if !probed[n.Name] && n.Name != "" && sites[n.Site] {
			p.addf(fmt.Sprintf("%s.actions.postgres.nodes[%d]", f, i), n.Name, ErrRequired, "no postgres probe names node %s: its role and position would be unknown", n.Name)
		}
	}
}
