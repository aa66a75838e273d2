package cluster

import (
	"net/url"
	"regexp"
	"strings"

	"google.golang.org/protobuf/proto"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// redacted stands in for a secret in every answer of the admin API.
const redacted = "REDACTED"

// redactGroups returns gs with every secret a spec may hold written
// over: the password of a DSN (URL or keyword form) and of a URL's user
// information, and URL query parameters whose names say secret. TSIG
// keys, webhook secrets and SMTP passwords are never in a spec: they are
// named by file. The replicated state keeps what was applied; only the
// answers are redacted. A group with nothing to write over is returned
// itself, not copied (10,000 groups are 30 MB a copy): read-only, like
// every group the FSM hands out.
func redactGroups(gs []*witnessv1.Group) []*witnessv1.Group {
	out := make([]*witnessv1.Group, len(gs))
	for i, g := range gs {
		out[i] = redactGroup(g)
	}
	return out
}

func redactGroup(g *witnessv1.Group) *witnessv1.Group {
	if g == nil || !holdsSecret(g.GetSpec()) {
		return g
	}
	g = proto.Clone(g).(*witnessv1.Group)
	spec := g.GetSpec()
	for _, s := range spec.GetSites() {
		for _, p := range s.GetProbes() {
			p.Dsn = redactDSN(p.GetDsn())
			p.Url = redactURL(p.GetUrl())
		}
	}
	if pg := spec.GetActions().GetPostgres(); pg != nil {
		for site, dsn := range pg.GetDsn() {
			pg.Dsn[site] = redactDSN(dsn)
		}
	}
	for _, nt := range spec.GetActions().GetNotify() {
		nt.Url = redactURL(nt.GetUrl())
	}
	return g
}

// holdsSecret reports whether redactGroup would write over anything in
// spec.
func holdsSecret(spec *witnessv1.GroupSpec) bool {
	for _, s := range spec.GetSites() {
		for _, p := range s.GetProbes() {
			if redactDSN(p.GetDsn()) != p.GetDsn() || redactURL(p.GetUrl()) != p.GetUrl() {
				return true
			}
		}
	}
	for _, dsn := range spec.GetActions().GetPostgres().GetDsn() {
		if redactDSN(dsn) != dsn {
			return true
		}
	}
	for _, nt := range spec.GetActions().GetNotify() {
		if redactURL(nt.GetUrl()) != nt.GetUrl() {
			return true
		}
	}
	return false
}

// secretKeyword is a password in a keyword/value connection string:
// password=secret or password='a secret'.
var secretKeyword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]+)`)

// redactDSN writes over the password of a PostgreSQL connection string.
func redactDSN(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return redactURL(dsn)
	}
	return secretKeyword.ReplaceAllString(dsn, "${1}"+redacted)
}

// redactURL writes over a URL's password and its secret query parameters.
func redactURL(s string) string {
	if s == "" {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		// Not a URL we can read: keep nothing after the scheme.
		if i := strings.Index(s, "://"); i >= 0 {
			return s[:i+3] + redacted
		}
		return redacted
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), redacted)
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if secretParam(k) {
				q.Set(k, redacted)
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func secretParam(name string) bool {
	name = strings.ToLower(name)
	for _, w := range []string{"password", "secret", "token", "key", "sig", "auth"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}
