package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sitewitness/witness/actions/postgres"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// errInvalidRequest: a request that names what does not exist; the API
// answers InvalidArgument.
var errInvalidRequest = errors.New("invalid request")

// discoverTimeout bounds the look at a new group's databases.
const discoverTimeout = 3 * time.Second

// groupStarts decides where each group that specs create starts. A site
// the operator states (stated, by group) wins; a group with a fenced
// PostgreSQL action otherwise starts at the one site whose database is an
// unfenced primary, and when there are none or several, or a database
// cannot be read, it starts unresolved (observe mode, nothing acted on),
// with the reason. Other groups start at their first site, as listed.
func (n *Node) groupStarts(ctx context.Context, specs []*witnessv1.GroupSpec, stated map[string]string) (map[string]*witnessv1.GroupStart, error) {
	starts := map[string]*witnessv1.GroupStart{}
	created := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, spec := range specs {
		name := spec.GetName()
		if _, exists := n.fsm.Group(name); exists {
			continue
		}
		created[name] = true
		if site, ok := stated[name]; ok {
			if !slices.ContainsFunc(spec.GetSites(), func(s *witnessv1.SiteSpec) bool { return s.GetName() == site }) {
				return nil, fmt.Errorf("active site %q of group %q is not one of its sites: %w", site, name, errInvalidRequest)
			}
			starts[name] = &witnessv1.GroupStart{Site: site, Reason: "active site stated by the operator"}
			continue
		}
		pg := spec.GetActions().GetPostgres()
		if pg == nil || pg.GetFence() == "none" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := discoverStart(ctx, spec)
			mu.Lock()
			starts[name] = st
			mu.Unlock()
		}()
	}
	wg.Wait()
	for name := range stated {
		if !created[name] {
			return nil, fmt.Errorf("active site given for group %q, which the document does not create: %w", name, errInvalidRequest)
		}
	}
	return starts, nil
}

// discoverStart reads the role of every site's database of a new group.
func discoverStart(ctx context.Context, spec *witnessv1.GroupSpec) *witnessv1.GroupStart {
	ctx, cancel := context.WithTimeout(ctx, discoverTimeout)
	defer cancel()
	type seen struct{ site, what string }
	var primaries []string
	var views []seen
	for _, s := range spec.GetSites() {
		dsn := spec.GetActions().GetPostgres().GetDsn()[s.GetName()]
		if dsn == "" {
			continue
		}
		c := &postgres.Client{MaxConnectTimeout: discoverTimeout}
		st, err := c.Status(ctx, dsn)
		switch {
		case err != nil:
			views = append(views, seen{s.GetName(), "unreadable (" + err.Error() + ")"})
		case st.InRecovery:
			views = append(views, seen{s.GetName(), "standby"})
		case st.Groups[spec.GetName()].Role == postgres.RoleFenced:
			views = append(views, seen{s.GetName(), fmt.Sprintf("fenced primary (token %d)", st.Groups[spec.GetName()].Token)})
		default:
			views = append(views, seen{s.GetName(), "primary"})
			primaries = append(primaries, s.GetName())
		}
	}
	parts := make([]string, len(views))
	unreadable := false
	for i, v := range views {
		parts[i] = v.site + " " + v.what
		unreadable = unreadable || strings.HasPrefix(v.what, "unreadable")
	}
	found := strings.Join(parts, ", ")
	if len(primaries) == 1 && !unreadable {
		return &witnessv1.GroupStart{Site: primaries[0], Reason: "the only unfenced primary: " + found}
	}
	return &witnessv1.GroupStart{Reason: fmt.Sprintf("no single unfenced primary (%s); starts in observe mode: state the active site with witnessctl apply --active %s=SITE", found, spec.GetName())}
}
