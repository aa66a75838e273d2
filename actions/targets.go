package actions

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sitewitness/witness/actions/dns"
	"github.com/sitewitness/witness/actions/notify"
	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/clock"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Targets is the Runner that acts on the real systems: PostgreSQL through
// its Database (Postgres, over SQL from here), DNS through actions/dns, hooks through actions/exec on
// the leader or, through Sites, on a witness at the hook's run_on site.
type Targets struct {
	// Sites runs hooks whose run_on names a site; nil refuses them.
	Sites SiteHooks
	// Demoter asks a witness at a site to demote its database; nil leaves
	// the SQL fence as the only layer.
	Demoter SiteDemoter
	// Witness is this node, told to the hooks it runs itself.
	Witness Witness
	// Clock tells when a record's TTL has passed since the switch; nil
	// means real time.
	Clock clock.Clock
	// DNS, when set, carries the DNS steps of many groups in one zone in
	// a few batched updates; nil sends one update per record.
	DNS *dns.Batcher
}

func dnsClient(a *witnessv1.DNSAction) (*dns.Client, error) {
	secret, err := os.ReadFile(a.GetTsigSecretFile())
	if err != nil {
		return nil, fmt.Errorf("read TSIG secret: %w", err)
	}
	return &dns.Client{Server: a.GetServer(), Zone: a.GetZone(),
		Key: &dns.Key{Name: a.GetTsigKeyName(), Algorithm: a.GetTsigAlgorithm(), Secret: strings.TrimSpace(string(secret))}}, nil
}

func record(r *witnessv1.DNSRecord) dns.Record {
	return dns.Record{Name: r.GetName(), Type: r.GetType(), TTL: r.GetTtl(), Values: r.GetValues()}
}

// SiteDemoter asks a witness at a named site to demote a group's database
// there; the cluster provides it. DemoteLocal returns once that witness
// reports the database demoted, with its final WAL position after a fast
// stop (0 when unknown), and otherwise an error saying which witness
// refused (a stale token, …) or that none answered.
type SiteDemoter interface {
	DemoteLocal(ctx context.Context, site string, req DemoteRequest) (uint64, error)
}

// DemoteRequest asks a witness to demote its site's database of a group
// at a token. The witness takes the data directory from its own replica.
type DemoteRequest struct {
	Group string
	Token uint64
	Mode  postgres.StopMode
}

// Demote asks a witness at site to demote the group's database there,
// when the spec names a data_dir for that site.
func (t Targets) Demote(ctx context.Context, g *witnessv1.Group, site string, mode postgres.StopMode) (uint64, error) {
	pg, n := g.GetSpec().GetActions().GetPostgres(), SiteNode(g, site)
	if n.GetDataDir() == "" || n.GetDsn() == "" || pg.GetFence() == "none" {
		return 0, fmt.Errorf("site %s: no data_dir: %w", site, ErrNoLocalDemotion)
	}
	if t.Demoter == nil {
		return 0, fmt.Errorf("site %s: this runner cannot reach other witnesses: %w", site, ErrNoLocalDemotion)
	}
	return t.Demoter.DemoteLocal(ctx, site, DemoteRequest{Group: g.GetSpec().GetName(), Token: g.GetStatus().GetToken(), Mode: mode})
}

// Position reads the WAL position of the group's database at site.
func (Targets) Position(ctx context.Context, g *witnessv1.Group, site string) (uint64, bool, error) {
	db := PostgresAt(g, site)
	if db.DSN == "" {
		return 0, false, fmt.Errorf("site %s has no database in the group's spec", site)
	}
	return db.Position(ctx)
}

// Fence makes the old site's database read-only, if it can be reached.
func (Targets) Fence(ctx context.Context, g *witnessv1.Group, from string) error {
	db := PostgresAt(g, from)
	if db.DSN == "" || g.GetSpec().GetActions().GetPostgres().GetFence() == "none" {
		return nil
	}
	if transitionKind(g) == witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER {
		// A majority saw the old site down, and its own witnesses fenced
		// it after fence_after: an old primary that cannot even be
		// connected to must not hold up the promotion. A reachable one
		// connects at once and is fenced first; an unreachable one is
		// left to the step's retries.
		db.MaxConnectTimeout = FailoverFenceConnectTimeout
	}
	return db.Fence(ctx, g.GetStatus().GetToken())
}

// FailoverFenceConnectTimeout caps the fence step's connection attempt to
// the old site's database in a failover.
const FailoverFenceConnectTimeout = time.Second

// Promote promotes the active site's database.
func (Targets) Promote(ctx context.Context, g *witnessv1.Group) error {
	db := PostgresAt(g, g.GetStatus().GetActiveSite())
	if db.DSN == "" {
		return nil
	}
	return db.Promote(ctx, g.GetStatus().GetToken())
}

// SwitchDNS points every record at the active site, under the token's
// compare-and-swap.
func (t Targets) SwitchDNS(ctx context.Context, g *witnessv1.Group) error {
	a := g.GetSpec().GetActions().GetDns()
	c, err := dnsClient(a)
	if err != nil {
		return err
	}
	for _, rec := range a.GetRecords() {
		var err error
		if t.DNS != nil {
			_, err = t.DNS.Switch(ctx, c, record(rec), g.GetStatus().GetActiveSite(), g.GetStatus().GetToken())
		} else {
			_, err = c.Switch(ctx, record(rec), g.GetStatus().GetActiveSite(), g.GetStatus().GetToken())
		}
		if err != nil {
			return fmt.Errorf("switch %s: %w", rec.GetName(), err)
		}
	}
	return nil
}

// Hook runs one hook: on this node when its run_on is the leader, else
// on a witness at the named site through Sites.
func (t Targets) Hook(ctx context.Context, g *witnessv1.Group, h *witnessv1.HookAction) error {
	if h.GetRunOn() == "" || h.GetRunOn() == RunOnLeader {
		_, err := RunHook(ctx, g, h, t.Witness)
		return err
	}
	if t.Sites == nil {
		return fmt.Errorf("hook %s: run_on %s: this runner cannot reach other witnesses: %w", h.GetName(), h.GetRunOn(), ErrUnsupported)
	}
	return t.Sites.RunHook(ctx, h.GetRunOn(), HookRequest{Group: g.GetSpec().GetName(), Hook: h.GetName(), Step: h.GetStep(), Token: g.GetStatus().GetToken()})
}

// Notify sends every notification of the group; secrets are read from
// their files now.
func (Targets) Notify(ctx context.Context, g *witnessv1.Group, from string) error {
	st := g.GetStatus()
	m := notify.Message{Group: g.GetSpec().GetName(), From: from, To: st.GetActiveSite(), Token: st.GetToken()}
	for _, h := range slices.Backward(st.GetHistory()) {
		if h.GetToken() == st.GetToken() {
			m.Kind, m.Reason, m.At = strings.ToLower(strings.TrimPrefix(h.GetKind().String(), "TRANSITION_KIND_")), h.GetReason(), time.Unix(0, h.GetAtUnixNano())
			break
		}
	}
	for _, s := range st.GetSteps() {
		if s.GetToken() == st.GetToken() {
			m.Steps = append(m.Steps, notify.Step{Name: s.GetStep(), OK: s.GetOk(), Error: s.GetError(), Duration: time.Duration(s.GetDurationMs()) * time.Millisecond})
		}
	}
	var errs []error
	for _, n := range g.GetSpec().GetActions().GetNotify() {
		var err error
		switch n.GetKind() {
		case "webhook":
			w := &notify.Webhook{URL: n.GetUrl()}
			if n.GetSecretFile() != "" {
				var secret []byte
				if secret, err = os.ReadFile(n.GetSecretFile()); err == nil {
					w.Secret = []byte(strings.TrimSpace(string(secret)))
				}
			}
			if err == nil {
				err = w.Send(ctx, m)
			}
		case "email":
			e := &notify.Email{Server: n.GetSmtpServer(), From: n.GetFrom(), To: n.GetTo(), Username: n.GetUsername()}
			if n.GetPasswordFile() != "" {
				var pw []byte
				if pw, err = os.ReadFile(n.GetPasswordFile()); err == nil {
					e.Password = strings.TrimSpace(string(pw))
				}
			}
			if err == nil {
				err = e.Send(ctx, m)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("notify %s: %w", n.GetKind(), err))
		}
	}
	return errors.Join(errs...)
}

// CheckDNS puts back, under the current token, every record or fence that
// differs from what the token says. A fence with a higher token is never
// lowered, and a fence that cannot be read is never guessed at: both are
// reported as drift that was not put back.
func (Targets) CheckDNS(ctx context.Context, g *witnessv1.Group) ([]DNSDrift, error) {
	a := g.GetSpec().GetActions().GetDns()
	c, err := dnsClient(a)
	if err != nil {
		return nil, err
	}
	site, token := g.GetStatus().GetActiveSite(), g.GetStatus().GetToken()
	var drifts []DNSDrift
	var errs []error
	for _, rec := range a.GetRecords() {
		out, found, err := c.Ensure(ctx, record(rec), site, token)
		d := DNSDrift{Record: rec.GetName() + " " + rec.GetType(), Found: found.String(),
			Want: fmt.Sprintf("fence %s, values [%s] ttl %d", dns.Fence{Token: token, Site: site}, rec.GetValues()[site], rec.GetTtl())}
		switch {
		case err == nil && out == dns.OutcomeUnchanged:
		case err == nil:
			drifts = append(drifts, d)
		case errors.Is(err, dns.ErrBadFence):
			d.Found, d.Err = "a fence Witness cannot read", err
			drifts = append(drifts, d)
		case errors.Is(err, dns.ErrLowerToken):
			d.Err = err
			drifts = append(drifts, d)
		default:
			errs = append(errs, fmt.Errorf("check %s: %w", rec.GetName(), err))
		}
	}
	return drifts, errors.Join(errs...)
}

// Settled checks that the DNS server answers every record with the active
// site's value and that the longest TTL has passed since the switch.
func (t Targets) Settled(ctx context.Context, g *witnessv1.Group, switched time.Time) error {
	a := g.GetSpec().GetActions().GetDns()
	for _, rec := range a.GetRecords() {
		want, err := record(rec).Rdata(g.GetStatus().GetActiveSite())
		if err != nil {
			return err
		}
		got, _, err := dns.Resolve(ctx, a.GetServer(), rec.GetName(), rec.GetType())
		if err != nil {
			return fmt.Errorf("resolve %s: %w", rec.GetName(), err)
		}
		if !slices.Contains(got, want) || len(got) != 1 {
			return fmt.Errorf("%s answers %v, want %s: %w", rec.GetName(), got, want, ErrNotSettled)
		}
	}
	if wait := ttlPassed(g, switched).Sub(clock.Or(t.Clock).Now()); wait > 0 {
		return fmt.Errorf("TTL not yet passed (%s left): %w", wait.Round(time.Second), ErrNotSettled)
	}
	return nil
}

// Repoint points node, a standby of the group, at the active site's
// node, promoted at the current token.
func (Targets) Repoint(ctx context.Context, g *witnessv1.Group, node *witnessv1.PostgresNode) error {
	src := SiteNode(g, g.GetStatus().GetActiveSite())
	if src == nil {
		return fmt.Errorf("site %s has no database in the group's spec", g.GetStatus().GetActiveSite())
	}
	return postgres.RepointStandby(ctx, node.GetDsn(), ReplicationDSN(src), node.GetName())
}
