package config

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Fence kinds of a PostgreSQL action.
const (
	// FenceSQL blocks the logins of the group's application roles, ends
	// every client session and records the token, over SQL from the
	// leader; the old site's own witness also demotes its database
	// locally.
	FenceSQL = "sql"
	// FenceNone leaves the old site's database alone.
	FenceNone = "none"
	// FenceReadOnly is the old name of FenceSQL, still accepted. The
	// read-only setting it stood for is not a fence: any session can turn
	// it off for itself.
	FenceReadOnly = "read_only"
)

// Reinstate settings of a PostgreSQL action.
const (
	ReinstateManual = "manual"
	ReinstateAuto   = "auto"
)

func (pg *Postgres) setDefaults() {
	if pg.Fence == "" || pg.Fence == FenceReadOnly {
		pg.Fence = FenceSQL
	}
	if pg.Reinstate == "" {
		pg.Reinstate = ReinstateManual
	}
}

// roleRE is an SQL identifier as PostgreSQL reads it unquoted (letters,
// digits, '_' and '$', not starting with a digit or '$'), at most 63
// bytes; upper case is kept, since Witness quotes role names.
var roleRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]{0,62}$`)

// postgresDSNs returns, by field path, every DSN of the group: the
// PostgreSQL action's and its postgres probes'.
func (g *Group) postgresDSNs() map[string]string {
	out := map[string]string{}
	if pg := g.Actions.Postgres; pg != nil {
		for site, dsn := range pg.DSN {
			out["dsn."+site] = dsn
		}
		for i, n := range pg.Nodes {
			out[fmt.Sprintf("nodes[%d].dsn", i)] = n.DSN
		}
	}
	for si, s := range g.Sites {
		for pi, pr := range s.Probes {
			if pr.Kind == "postgres" && pr.DSN != "" {
				out[fmt.Sprintf("sites[%d].probes[%d].dsn", si, pi)] = pr.DSN
			}
		}
	}
	return out
}

// validate checks the action. dsns are every DSN of the group by field
// path (see postgresDSNs): Witness logs in as their users, so the fence
// may not block them.
func (pg *Postgres) validate(p *problems, f string, sites map[string]bool, dsns map[string]string) {
	if len(pg.Nodes) > 0 {
		pg.validateNodes(p, f, sites)
	} else if len(pg.DSN) == 0 {
		p.addf(f+".dsn", "", ErrRequired, "give a dsn per site, or nodes")
	}
	for _, site := range slices.Sorted(maps.Keys(pg.DSN)) {
		dsn := pg.DSN[site]
		if !sites[site] {
			p.addf(f+".dsn."+site, site, ErrUnknown, "not a site of the group")
		}
		if dsn == "" {
			p.add(f+".dsn."+site, "", ErrRequired)
		} else if _, err := pgconn.ParseConfig(dsn); err != nil {
			// The value and the parser's message are left out: a DSN
			// may hold a password.
			p.addf(f+".dsn."+site, "", ErrSyntax, "not a PostgreSQL connection string (keywords or a postgres:// URL)")
		}
	}
	switch pg.Fence {
	case FenceSQL:
		if len(pg.Roles) == 0 {
			p.addf(f+".roles", "", ErrRequired, "fence %s blocks the logins of the application roles: name them", FenceSQL)
		}
	case FenceNone:
	default:
		p.addf(f+".fence", pg.Fence, ErrInvalid, "one of %s, %s", FenceSQL, FenceNone)
	}
	witnessUsers := map[string]string{} // user -> field path of a DSN that logs in as it
	for _, path := range slices.Sorted(maps.Keys(dsns)) {
		cfg, err := pgconn.ParseConfig(dsns[path])
		if err != nil || cfg.User == "" {
			continue
		}
		if _, ok := witnessUsers[cfg.User]; !ok {
			witnessUsers[cfg.User] = path
		}
	}
	seen := map[string]bool{}
	for i, r := range pg.Roles {
		rf := fmt.Sprintf("%s.roles[%d]", f, i)
		switch {
		case r == "":
			p.add(rf, "", ErrRequired)
		case !roleRE.MatchString(r):
			p.addf(rf, r, ErrInvalid, "want a role name of letters, digits, '_' and '$', at most 63")
		case strings.HasPrefix(strings.ToLower(r), "pg_") || strings.EqualFold(r, "public"):
			p.addf(rf, r, ErrInvalid, "a reserved role name, not an application role")
		case witnessUsers[r] != "":
			p.addf(rf, r, ErrConflict, "Witness logs in as this role (%s): fencing it would lock Witness out", witnessUsers[r])
		}
		if seen[r] && r != "" {
			p.add(rf, r, ErrDuplicate)
		}
		seen[r] = true
	}
	for _, site := range slices.Sorted(maps.Keys(pg.DataDir)) {
		df := f + ".data_dir." + site
		if !sites[site] {
			p.addf(df, site, ErrUnknown, "not a site of the group")
		}
		checkAbsPath(p, df, pg.DataDir[site])
	}
	switch pg.Reinstate {
	case ReinstateManual:
	case ReinstateAuto:
		if len(pg.dataDirs()) < 2 {
			p.addf(f+".reinstate", pg.Reinstate, ErrRequired, "reinstate auto runs on the old site's own host: give data_dir for every site")
		}
	default:
		p.addf(f+".reinstate", pg.Reinstate, ErrInvalid, "one of %s, %s", ReinstateManual, ReinstateAuto)
	}
	for _, site := range slices.Sorted(maps.Keys(pg.SaveDir)) {
		sf := f + ".save_dir." + site
		if !sites[site] {
			p.addf(sf, site, ErrUnknown, "not a site of the group")
		}
		checkAbsPath(p, sf, pg.SaveDir[site])
	}
	for _, site := range slices.Sorted(maps.Keys(pg.ReplicationDSN)) {
		rf := f + ".replication_dsn." + site
		if !sites[site] {
			p.addf(rf, site, ErrUnknown, "not a site of the group")
		}
		if _, err := pgconn.ParseConfig(pg.ReplicationDSN[site]); err != nil || pg.ReplicationDSN[site] == "" {
			p.addf(rf, "", ErrSyntax, "not a PostgreSQL connection string (keywords or a postgres:// URL)")
		}
	}
	if pg.PGCtl != "" {
		checkAbsPath(p, f+".pg_ctl", pg.PGCtl)
	}
	if pg.DemoteCommand != nil {
		if len(pg.DemoteCommand) == 0 {
			p.addf(f+".demote_command", "", ErrRequired, "name the command, or leave demote_command out")
		} else {
			checkAbsPath(p, f+".demote_command[0]", pg.DemoteCommand[0])
		}
	}
}

// checkAbsPath checks a path that a witness runs or opens on its own host:
// it must be absolute, so that it does not depend on the witness's working
// directory or PATH.
func checkAbsPath(p *problems, field, v string) {
	switch {
	case v == "":
		p.add(field, "", ErrRequired)
	case !filepath.IsAbs(v):
		p.addf(field, v, ErrInvalid, "want an absolute path")
	}
}
