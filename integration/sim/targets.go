package sim

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/cluster"
	"github.com/sitewitness/witness/probes"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Errors of the fake targets.
var (
	// errHigherToken: the target holds a higher token than the action's.
	errHigherToken = errors.New("target holds a higher token")
	// errTargetDown: the target failed the action (a broken target).
	errTargetDown = errors.New("target failed")
)

// db is one PostgreSQL node of one group at one site, as Witness sees
// it: a primary or a standby in recovery, the highest token it was given,
// the SQL fence (the application roles' logins blocked), and whether its
// witness demoted it (stopped, able to start only as a standby).
type db struct {
	site       string
	inRecovery bool
	fenced     bool
	demoted    bool
	token      uint64
}

// writable reports whether the application's writes succeed there.
func (d *db) writable() bool { return !d.inRecovery && !d.fenced && !d.demoted }

func (d *db) String() string {
	role := "primary"
	switch {
	case d.demoted:
		role = "demoted"
	case d.inRecovery:
		role = "standby"
	case d.fenced:
		role = "fenced"
	}
	return fmt.Sprintf("%s %s@%d", d.site, role, d.token)
}

// record is a DNS name of one group: the site it points at and the token
// of the prerequisite record (_witness TXT) that guards it.
type record struct {
	site  string
	token uint64
}

// world holds the targets every witness acts on, and checks after every
// change what must hold of them.
type world struct {
	net *network
	sim *Sim

	mu      sync.Mutex
	dbs     map[string]map[string]*db // group -> site -> node
	dns     map[string]*record        // group -> its name
	service map[[2]string]int         // (group, site) -> the service there fails (a count of the faults that say so)
	blind   map[[3]string]int         // (observer site, group, site) -> that observer sees it fail
	flap    map[[2]string]time.Duration
	fails   map[[3]string][]time.Time // (observer site, group, site) -> when a probe failed
	stale   int                       // actions refused for a lower token
	writes  map[string]int            // group@token -> writes the application made
}

func newWorld(nw *network) *world {
	return &world{net: nw, dbs: map[string]map[string]*db{}, dns: map[string]*record{}, service: map[[2]string]int{},
		blind: map[[3]string]int{}, flap: map[[2]string]time.Duration{}, fails: map[[3]string][]time.Time{}, writes: map[string]int{}}
}

// checkLocked checks the targets' invariants; called with mu held after
// every change.
func (w *world) checkLocked(what string) {
	for g, sites := range w.dbs {
		var on []string
		for _, d := range sites {
			if d.writable() {
				on = append(on, d.String())
			}
		}
		if len(on) > 1 {
			sort.Strings(on)
			w.sim.violate("two writable databases of group %s after %s: %s", g, what, strings.Join(on, ", "))
		}
	}
}

// reach waits for a round trip from node to the targets at site, and
// reports whether the request got there (applied) and whether the answer
// came back.
func (w *world) reach(ctx context.Context, node, site string) (there, back bool, err error) {
	w.net.mu.Lock()
	slow := w.net.slow[site]
	w.net.mu.Unlock()
	f := w.net.fate(node, site, kindTarget)
	if err := wait(ctx, f.delay+slow); err != nil {
		return false, false, err
	}
	if f.drop {
		if err := wait(ctx, lostAfter); err != nil {
			return false, false, err
		}
		return false, false, fmt.Errorf("%s from %s: %w", site, node, errUnreachable)
	}
	b := w.net.fate(site, node, kindTarget)
	return true, !b.drop, nil
}

// act runs fn on the database of group at site, reached from node.
func (w *world) act(ctx context.Context, node, group, site, what string, fn func(*db) error) error {
	there, back, err := w.reach(ctx, node, site)
	if err != nil || !there {
		return err
	}
	w.net.mu.Lock()
	broken := w.net.broken[site]
	w.net.mu.Unlock()
	if broken {
		return fmt.Errorf("%s of %s at %s: %w", what, group, site, errTargetDown)
	}
	w.mu.Lock()
	d := w.dbs[group][site]
	if d == nil {
		w.mu.Unlock()
		return nil // no database of the group there
	}
	err = fn(d)
	if errors.Is(err, errHigherToken) {
		w.stale++
	}
	w.checkLocked(fmt.Sprintf("%s by %s", what, node))
	w.mu.Unlock()
	if !back {
		if err := wait(ctx, lostAfter); err != nil {
			return err
		}
		return fmt.Errorf("answer of %s at %s: %w", what, site, errUnreachable)
	}
	return err
}

// local runs fn on the database of group at site by the witness on the
// database's own host: no network between them, and a stop that the
// database cannot refuse, so it always takes effect.
func (w *world) local(node, group, site, what string, fn func(*db) error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.dbs[group][site]
	if d == nil {
		return nil
	}
	err := fn(d)
	w.checkLocked(fmt.Sprintf("%s by %s", what, node))
	return err
}

// demote is the local demotion: a node that runs as a primary is stopped
// and can start again only as a standby; a standby only records token,
// as actions.Postgres does (it stamps a node in recovery over SQL rather
// than stop it).
func demote(token uint64) func(*db) error {
	return func(d *db) error {
		if d.inRecovery {
			if d.token < token {
				d.token = token
			}
			return nil
		}
		d.demoted = true
		return nil
	}
}

// startAsPrimary is the lift of a local demotion: a node this witness
// stopped starts again as the primary it was, at the token it holds;
// anything else is left as it is.
func startAsPrimary(d *db) error {
	d.demoted = false
	return nil
}

// fence is the SQL fence at token: logins blocked, token recorded.
func fence(token uint64) func(*db) error {
	return func(d *db) error {
		if d.token > token {
			return fmt.Errorf("fence at %d, holds %d: %w", token, d.token, errHigherToken)
		}
		d.token, d.fenced = token, true
		return nil
	}
}

// promote makes the node the writable primary at token.
func promote(token uint64) func(*db) error {
	return func(d *db) error {
		if d.token > token {
			return fmt.Errorf("promote at %d, holds %d: %w", token, d.token, errHigherToken)
		}
		d.token, d.fenced, d.inRecovery, d.demoted = token, false, false, false
		return nil
	}
}

// unfence lifts the SQL fence of a primary at token; a standby is left
// in recovery, as actions/postgres does.
func unfence(token uint64) func(*db) error {
	return func(d *db) error {
		if d.token > token {
			return fmt.Errorf("unfence at %d, holds %d: %w", token, d.token, errHigherToken)
		}
		if !d.inRecovery {
			d.token, d.fenced = token, false
		}
		return nil
	}
}

// nodeRef is the cluster.Node of a witness, once it has started.
type nodeRef struct {
	mu sync.Mutex
	n  *cluster.Node
}

func (r *nodeRef) set(n *cluster.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n = n
}

func (r *nodeRef) get() *cluster.Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// runner is one witness's actions.Runner on the fake targets.
type runner struct {
	w    *world
	node string
	dns  string   // the site the DNS server is at
	self *nodeRef // the witness itself, which asks others to demote
}

var _ actions.Runner = runner{}

// Demote asks the witness at site to demote its database, as
// actions.Targets does: through the witnesses' own calls, which the
// simulator cuts and delays; a group without a data_dir there has no
// local demotion, and the SQL fence is the only layer.
func (r runner) Demote(ctx context.Context, g *witnessv1.Group, site string, mode postgres.StopMode) (uint64, error) {
	pg := g.GetSpec().GetActions().GetPostgres()
	n := r.self.get()
	if pg.GetDataDir()[site] == "" || n == nil {
		return 0, fmt.Errorf("site %s: no data_dir: %w", site, actions.ErrNoLocalDemotion)
	}
	return n.DemoteLocal(ctx, site, actions.DemoteRequest{Group: g.GetSpec().GetName(), Token: g.GetStatus().GetToken(), Mode: mode})
}

// Position: replication is not modelled (a standby holds every write), so
// every reachable node is at the group's one position; the catch-up wait
// of a switchover is proven on real PostgreSQL by the integration
// scenarios.
func (r runner) Position(ctx context.Context, g *witnessv1.Group, site string) (uint64, bool, error) {
	var lsn uint64
	var inRecovery bool
	err := r.w.act(ctx, r.node, g.GetSpec().GetName(), site, "position", func(d *db) error {
		lsn, inRecovery = 1, d.inRecovery
		return nil
	})
	return lsn, inRecovery, err
}

func (r runner) Fence(ctx context.Context, g *witnessv1.Group, from string) error {
	return r.w.act(ctx, r.node, g.GetSpec().GetName(), from, "fence", fence(g.GetStatus().GetToken()))
}

func (r runner) Promote(ctx context.Context, g *witnessv1.Group) error {
	return r.w.act(ctx, r.node, g.GetSpec().GetName(), g.GetStatus().GetActiveSite(), "promote", promote(g.GetStatus().GetToken()))
}

func (r runner) SwitchDNS(ctx context.Context, g *witnessv1.Group) error {
	there, back, err := r.w.reach(ctx, r.node, r.dns)
	if err != nil || !there {
		return err
	}
	name, st := g.GetSpec().GetName(), g.GetStatus()
	r.w.mu.Lock()
	rec := r.w.dns[name]
	if rec == nil {
		rec = &record{}
		r.w.dns[name] = rec
	}
	if rec.token > st.GetToken() {
		r.w.stale++
		err = fmt.Errorf("dns update at %d, prerequisite holds %d: %w", st.GetToken(), rec.token, errHigherToken)
	} else {
		rec.site, rec.token = st.GetActiveSite(), st.GetToken()
	}
	r.w.mu.Unlock()
	if !back {
		return fmt.Errorf("answer of the dns server: %w", errUnreachable)
	}
	return err
}

func (r runner) Hook(context.Context, *witnessv1.Group, *witnessv1.HookAction) error { return nil }
func (r runner) Notify(context.Context, *witnessv1.Group, string) error              { return nil }

func (r runner) Settled(_ context.Context, g *witnessv1.Group, _ time.Time) error {
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	rec := r.w.dns[g.GetSpec().GetName()]
	if rec == nil || rec.site != g.GetStatus().GetActiveSite() || rec.token != g.GetStatus().GetToken() {
		return errors.New("dns does not answer the new site yet")
	}
	return nil
}

func (r runner) CheckDNS(context.Context, *witnessv1.Group) ([]actions.DNSDrift, error) {
	return nil, nil
}

// localDatabase is one witness's cluster.LocalDatabase: its own site's
// database of a group, demoted where the group names a data_dir there,
// else fenced over SQL.
func localDatabase(w *world, node string) cluster.LocalDatabase {
	return func(g *witnessv1.Group, site string) actions.Database {
		return localDB{w: w, node: node, site: site, group: g.GetSpec().GetName(),
			dataDir: g.GetSpec().GetActions().GetPostgres().GetDataDir()[site] != ""}
	}
}

type localDB struct {
	w                 *world
	node, site, group string
	dataDir           bool // the group names a data_dir at the site
}

func (l localDB) Position(ctx context.Context) (uint64, bool, error) {
	var inRecovery bool
	err := l.w.act(ctx, l.node, l.group, l.site, "position", func(d *db) error {
		inRecovery = d.inRecovery
		return nil
	})
	return 1, inRecovery, err
}

func (l localDB) Promote(ctx context.Context, token uint64) error {
	return l.w.act(ctx, l.node, l.group, l.site, "promote", promote(token))
}

// Demote is the local demotion of the site's database, for the leader.
func (l localDB) Demote(_ context.Context, token uint64, _ postgres.StopMode) (bool, error) {
	if !l.dataDir {
		return false, errors.New("no data_dir at this site")
	}
	var stopped bool
	err := l.w.local(l.node, l.group, l.site, "demotion", func(d *db) error {
		stopped = !d.inRecovery
		return demote(token)(d)
	})
	return stopped, err
}

// Fence is the self-fence: the local demotion where the group names a
// data_dir here, else the SQL fence, which a broken target refuses.
func (l localDB) Fence(ctx context.Context, token uint64) error {
	if l.dataDir {
		return l.w.local(l.node, l.group, l.site, "self-demotion", demote(token))
	}
	return l.w.act(ctx, l.node, l.group, l.site, "self-fence", selfFence(token))
}

// selfFence is the SQL fence at token, or at the higher token the node
// holds, in one step: the witness fences again at the held token when
// the real node refuses a lower one (a self-fence does not yield to a
// decision its witness has not heard of).
func selfFence(token uint64) func(*db) error {
	return func(d *db) error {
		return fence(max(token, d.token))(d)
	}
}

func (l localDB) Unfence(ctx context.Context, token uint64) error {
	if l.dataDir {
		if err := l.w.local(l.node, l.group, l.site, "start after self-demotion", startAsPrimary); err != nil {
			return err
		}
	}
	return l.w.act(ctx, l.node, l.group, l.site, "lift self-fence", unfence(token))
}

// StoppedPrimary reports a primary that a local demotion stopped, as the
// real database reads it from the data directory (no network involved).
func (l localDB) StoppedPrimary(context.Context) (bool, error) {
	if !l.dataDir {
		return false, nil
	}
	var stopped bool
	err := l.w.local(l.node, l.group, l.site, "look at the data directory", func(d *db) error {
		stopped = d.demoted && !d.inRecovery
		return nil
	})
	return stopped, err
}

// Fenced looks for an SQL self-fence left by an earlier run; a demoted
// database is not looked at, as in the real one.
func (l localDB) Fenced(ctx context.Context, token uint64) (bool, error) {
	if l.dataDir {
		return false, nil
	}
	var on bool
	err := l.w.act(ctx, l.node, l.group, l.site, "look at self-fence", func(d *db) error {
		on = d.fenced && !d.inRecovery && d.token == token
		return nil
	})
	return on, err
}

// FinalPosition is unknown: the simulator keeps no WAL.
func (localDB) FinalPosition(context.Context) (uint64, error) { return 0, nil }

// StartStoppedStandby starts none: a simulated demotion of a standby only
// records the token (demote), so no standby is ever stopped.
func (localDB) StartStoppedStandby(context.Context) (bool, error) { return false, nil }

// checker is the probe of one witness on one target: it fails when the
// witness cannot reach the site, the service there fails, this observer
// site is blind to it, or it is in the failing half of a flap.
type checker struct {
	w              *world
	node, observer string
	group, site    string
}

func (c *checker) Check(ctx context.Context) probes.Result {
	ok := c.w.healthy(c.node, c.observer, c.group, c.site)
	if !ok {
		c.w.mu.Lock()
		k := [3]string{c.observer, c.group, c.site}
		c.w.fails[k] = append(c.w.fails[k], time.Now())
		c.w.mu.Unlock()
		return probes.Result{Detail: "sim: failing"}
	}
	return probes.Result{OK: true}
}

func (w *world) healthy(node, observer, group, site string) bool {
	if !w.net.up(node, site) || !w.net.up(site, node) {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.service[[2]string{group, site}] > 0 || w.blind[[3]string{observer, group, site}] > 0 {
		return false
	}
	if p := w.flap[[2]string{group, site}]; p > 0 {
		return (time.Now().UnixNano()/int64(p))%2 == 0
	}
	return true
}

// failedBetween reports whether a probe by observer of group at site
// failed between from and to.
func (w *world) failedBetween(observer, group, site string, from, to time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, at := range w.fails[[3]string{observer, group, site}] {
		if !at.Before(from) && !at.After(to) {
			return true
		}
	}
	return false
}

// write is the application writing through DNS: it resolves the group's
// name and writes to the database there, if that takes writes.
func (w *world) write(group string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	rec := w.dns[group]
	if rec == nil {
		return
	}
	if d := w.dbs[group][rec.site]; d != nil && d.writable() {
		w.writes[fmt.Sprintf("%s@%d", group, d.token)]++
	}
}
