package actions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sitewitness/witness/actions/postgres"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Database is one group's PostgreSQL node at one site: reached over SQL
// by its DSN and, by the witness at that site, also through its data_dir.
// Every change carries the fencing token explicitly; the node records it
// and refuses a lower one. The leader reads, fences and promotes the
// nodes of a plan through it (Targets); the witness at a site fences,
// lifts and demotes its own node through it (the cluster's lease, and the
// demotions it runs for the leader).
type Database interface {
	// Position reads the node's WAL position: on a primary
	// pg_current_wal_lsn(), on a standby what it replayed.
	Position(ctx context.Context) (lsn uint64, inRecovery bool, err error)
	// Promote makes the node the group's writable primary at token.
	Promote(ctx context.Context, token uint64) error
	// Fence makes the node refuse writes at token. With a data_dir, a
	// standby that stays one is only stamped with token, and any other
	// node is demoted with an immediate stop; without one, the fence is
	// over SQL (the application roles' logins blocked, their sessions
	// ended; a standby only stamped). A node that holds a higher token
	// refuses with *postgres.HigherTokenError. Fence never promotes.
	Fence(ctx context.Context, token uint64) error
	// Fenced reports whether the node runs as a primary under an SQL
	// fence at token. A node with a data_dir is not looked at (false): a
	// demoted one is told by StoppedPrimary.
	Fenced(ctx context.Context, token uint64) (bool, error)
	// Unfence lets the node take writes again at token: with a data_dir,
	// a node demoted as a primary is started as one again (a node that
	// was in recovery is left alone: promoting it is the plan's, never a
	// lifted fence's); then the logins a fence blocked come back.
	Unfence(ctx context.Context, token uint64) error
	// Demote stops the node with mode and leaves it able to start only as
	// a standby; a running standby that stays one is only stamped with
	// token and left running. It reports whether it stopped the node. It
	// needs a data_dir: without one it returns ErrNoLocalDemotion.
	Demote(ctx context.Context, token uint64, mode postgres.StopMode) (stopped bool, err error)
	// FinalPosition reads the stopped node's last checkpoint location
	// from its data_dir: after a fast stop, its shutdown checkpoint.
	FinalPosition(ctx context.Context) (uint64, error)
	// StoppedPrimary reports whether the node is a demoted primary:
	// stopped, standby.signal in place, not in recovery when it stopped.
	// False without a data_dir.
	StoppedPrimary(ctx context.Context) (bool, error)
	// StartStoppedStandby starts, as the standby it was, a node that
	// stopped in recovery with standby.signal in place, and reports
	// whether it started one. False without a data_dir.
	StartStoppedStandby(ctx context.Context) (bool, error)
}

// Postgres is the Database of actions/postgres. Where the witness at its
// site reaches the node through its data_dir (Local), a fence demotes it:
// standby.signal, then an immediate shutdown (the postmaster killed at
// the fence's time limit), so that it takes no write from any client and
// can start again only as a standby; Unfence starts it as a primary
// again. Otherwise a fence is over SQL: the application roles' logins
// blocked and every session ended, given back by Unfence on a node that
// is a primary (never one in recovery).
type Postgres struct {
	Group, Site, DSN string
	// Roles are the application roles an SQL fence blocks.
	Roles []string
	// Local reaches the node through its data directory, on the witness
	// at its site; nil reaches it over SQL alone.
	Local *postgres.Demoter
	// MaxConnectTimeout caps each connection attempt over SQL; zero
	// leaves the DSN's own.
	MaxConnectTimeout time.Duration
	// FenceTimeout bounds a demotion with an immediate stop (the group's
	// fence_timeout); zero, and a fast stop, mean the Demoter's default.
	FenceTimeout time.Duration
}

var _ Database = (*Postgres)(nil)

// PostgresAt is the group's database at site as the leader reaches it:
// over SQL, by the DSN the spec names for site.
func PostgresAt(g *witnessv1.Group, site string) *Postgres {
	pg := g.GetSpec().GetActions().GetPostgres()
	return &Postgres{Group: g.GetSpec().GetName(), Site: site, DSN: SiteNode(g, site).GetDsn(), Roles: pg.GetRoles()}
}

// LocalPostgres is the group's database at site as the witness at site
// reaches it: also through its data_dir, when the spec names one there.
func LocalPostgres(g *witnessv1.Group, site string) *Postgres {
	p := PostgresAt(g, site)
	pg := g.GetSpec().GetActions().GetPostgres()
	if dir := SiteNode(g, site).GetDataDir(); dir != "" {
		p.Local = &postgres.Demoter{DataDir: dir, PgCtl: pg.GetPgCtl(), Command: pg.GetDemoteCommand()}
	}
	return p
}

func (p *Postgres) client() *postgres.Client {
	return &postgres.Client{Site: p.Site, Roles: p.Roles, MaxConnectTimeout: p.MaxConnectTimeout}
}

func (p *Postgres) noDataDir() error {
	return fmt.Errorf("group %s at site %s: %w", p.Group, p.Site, ErrNoLocalDemotion)
}

func (p *Postgres) Position(ctx context.Context) (uint64, bool, error) {
	return p.client().Position(ctx, p.DSN)
}

func (p *Postgres) Promote(ctx context.Context, token uint64) error {
	return p.client().Promote(ctx, p.DSN, p.Group, token)
}

func (p *Postgres) Fence(ctx context.Context, token uint64) error {
	if p.Local != nil {
		if p.standbyStamped(ctx, token) {
			return nil
		}
		return p.Local.Demote(ctx, p.DSN, postgres.StopImmediate)
	}
	return p.client().Fence(ctx, p.DSN, p.Group, token)
}

func (p *Postgres) Fenced(ctx context.Context, token uint64) (bool, error) {
	if p.Local != nil {
		return false, nil
	}
	st, err := p.client().Status(ctx, p.DSN)
	if err != nil {
		return false, err
	}
	r, ok := st.Groups[p.Group]
	return ok && r.Role == postgres.RoleFenced && r.Token == token && !st.InRecovery, nil
}

func (p *Postgres) Unfence(ctx context.Context, token uint64) error {
	if p.Local != nil {
		err := p.Local.StartAsPrimary(ctx, p.DSN)
		if errors.Is(err, postgres.ErrNotPrimary) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	// The application roles' logins that an SQL fence blocked come back;
	// on a node just started it records the token it already holds.
	return p.client().Unfence(ctx, p.DSN, p.Group, token)
}

func (p *Postgres) Demote(ctx context.Context, token uint64, mode postgres.StopMode) (bool, error) {
	if p.Local == nil {
		return false, p.noDataDir()
	}
	// A standby that stays one takes no write: stopping it would fence
	// nothing, and would stop an old primary that came back as a standby
	// through prepare-start after the leader's fence of the site was
	// first tried. Reinstate rewinds such a node (its history left the
	// new primary's), running or not.
	if p.standbyStamped(ctx, token) {
		return false, nil
	}
	d := *p.Local
	if mode == postgres.StopImmediate {
		d.Timeout = p.FenceTimeout
	}
	return true, d.Demote(ctx, p.DSN, mode)
}

// standbyStamped reports whether the node is a standby that stays one (in
// recovery, standby.signal in place) and now holds token, or the higher
// token it held: it takes no write, so a fence or demotion leaves it
// running.
func (p *Postgres) standbyStamped(ctx context.Context, token uint64) bool {
	sctx, cancel := context.WithTimeout(ctx, FailoverFenceConnectTimeout)
	ok, err := p.Local.StandbyRunning(sctx, p.DSN)
	cancel()
	if err != nil || !ok {
		return false
	}
	err = p.client().Fence(ctx, p.DSN, p.Group, token)
	if higher, ok := errors.AsType[*postgres.HigherTokenError](err); ok {
		err = p.client().Fence(ctx, p.DSN, p.Group, higher.Held)
	}
	return err == nil
}

func (p *Postgres) FinalPosition(ctx context.Context) (uint64, error) {
	if p.Local == nil {
		return 0, p.noDataDir()
	}
	return p.Local.FinalPosition(ctx)
}

func (p *Postgres) StoppedPrimary(ctx context.Context) (bool, error) {
	if p.Local == nil {
		return false, nil
	}
	return p.Local.StoppedPrimary(ctx)
}

func (p *Postgres) StartStoppedStandby(ctx context.Context) (bool, error) {
	if p.Local == nil {
		return false, nil
	}
	stopped, err := p.Local.StoppedStandby(ctx)
	if err != nil || !stopped {
		return false, err
	}
	return true, p.Local.StartAsStandby(ctx, p.DSN)
}
