package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/config"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// The site lease.
//
// A witness proves that it is in contact with the Raft majority by renewing
// a lease with the voters, not by hearing from the leader: a follower hears
// only the leader, and a leader it cannot hear may still sit beside a
// majority that it reaches through another site.
//
// Every witness sends a renewal to every voter each leaseEvery, noting the
// send time t on its own monotonic clock. Once a quorum of voters granted
// the renewal sent at t, the witness holds its lease until t + fence_after;
// at that point, with no newer quorum, it fences its site's databases.
//
// A voter grants by noting the time it received the renewal, r >= t, on
// its own monotonic clock. It reports the witness's lease expired only
// once hold = fence_after + margin has passed since r (or since the voter
// started, for a witness it has never granted: it may have granted one
// before a restart). The margin covers what lies between t + fence_after
// and the fence holding: the lease check period, the first renewal round
// after a witness starts, the fence's own time limit and a bound on how
// much two clocks' rates may differ.
//
// The leader promotes a new primary without a confirmed fence only when a
// quorum of voters report every witness of the old site expired. Any such
// quorum shares a voter with the quorum that granted the old site's last
// lease, so by then the old site has fenced itself, by its own clock.

// Lease timing.
const (
	// leaseRenewTimeout bounds one renewal round, and the wait for the
	// first one after a witness starts, before its lease is judged; the
	// fence hold counts it (config.Margin.LeaseRound).
	leaseRenewTimeout = config.LeaseRoundTimeout
	// leaseStatusTimeout bounds the leader's question to the voters.
	leaseStatusTimeout = 2 * time.Second
)

// grants is a voter's record of the lease renewals it granted. Times are
// this process's monotonic clock.
type grants struct {
	mu      sync.Mutex
	started time.Time
	last    map[string]time.Time // witness -> receipt of its latest renewal
}

func newGrants(now time.Time) *grants {
	return &grants{started: now, last: map[string]time.Time{}}
}

// grant notes a renewal of node received at now.
func (g *grants) grant(node string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.After(g.last[node]) {
		g.last[node] = now
	}
}

// expired reports whether none of nodes was granted within hold before
// now, and how long ago the latest of them was. A node never granted by
// this voter counts from the voter's start.
func (g *grants) expired(nodes []string, hold time.Duration, now time.Time) (bool, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	latest := g.started
	for _, n := range nodes {
		if t, ok := g.last[n]; ok && t.After(latest) {
			latest = t
		}
	}
	since := now.Sub(latest)
	return since >= hold, since
}

// holder is a witness's own lease: the send time of the latest renewal a
// quorum of voters granted.
type holder struct {
	mu      sync.Mutex
	granted time.Time // zero: never granted since this witness started
	judged  chan struct{}
}

func newHolder() *holder { return &holder{judged: make(chan struct{})} }

func (h *holder) renewed(sent time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sent.After(h.granted) {
		h.granted = sent
	}
}

// since is how long ago the renewal behind the lease was sent; ok is
// false when no renewal was ever granted.
func (h *holder) since(now time.Time) (d time.Duration, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.granted.IsZero() {
		return 0, false
	}
	return now.Sub(h.granted), true
}

// quorum is the least number of the voters that is a majority.
func quorum(voters int) int { return voters/2 + 1 }

// voter is a Raft voter and where its admin API listens.
type voter struct {
	name, admin string
}

// voters lists the Raft voters with their admin addresses as gossip tells
// them; this witness's own has its own address, and a voter gossip does
// not see has none.
func (n *Node) voters() ([]voter, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	alive := map[string]peer{}
	if n.gossip != nil {
		alive = n.gossip.alive()
	}
	var out []voter
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		v := voter{name: string(s.ID)}
		if v.name == n.cfg.Name {
			v.admin = n.AdminAddr()
		} else if p, ok := alive[v.name]; ok {
			v.admin = p.Meta.Admin
		}
		out = append(out, v)
	}
	return out, nil
}

// renew sends one renewal round, stamped sent, to every voter, and
// extends this witness's lease once a quorum granted it. It returns
// whether a quorum did.
func (n *Node) renew(ctx context.Context, sent time.Time) bool {
	vs, err := n.voters()
	if err != nil || len(vs) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, leaseRenewTimeout)
	defer cancel()
	acks := make(chan bool, len(vs))
	for _, v := range vs {
		go func() { acks <- n.askGrant(ctx, v) }()
	}
	granted, need := 0, quorum(len(vs))
	for range vs {
		if <-acks {
			granted++
			if granted == need {
				n.lease.renewed(sent)
				n.metrics.leaseRenewals.Inc()
			}
		}
	}
	return granted >= need
}

func (n *Node) askGrant(ctx context.Context, v voter) bool {
	if v.name == n.cfg.Name {
		n.grants.grant(n.cfg.Name, n.clock.Now())
		return true
	}
	// Right after a start gossip may not know the voter's address yet:
	// look again until the round ends.
	for v.admin == "" {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
		if n.gossip != nil {
			if p, ok := n.gossip.alive()[v.name]; ok {
				v.admin = p.Meta.Admin
			}
		}
	}
	c, err := n.client(v.admin)
	if err != nil {
		return false
	}
	resp, err := c.RenewLease(ctx, &witnessv1.RenewLeaseRequest{Node: n.cfg.Name, Site: n.cfg.Site, ClusterId: n.id.ClusterID})
	return err == nil && resp.GetNode() == v.name
}

// renewLoop renews this witness's lease every leaseEvery. Rounds overlap
// when voters are slow to answer; each is bounded by leaseRenewTimeout.
func (n *Node) renewLoop() {
	var wg sync.WaitGroup
	defer wg.Wait()
	first := true
	t := n.clock.NewTicker(leaseEvery)
	defer t.Stop()
	for {
		sent := n.clock.Now()
		wg.Add(1)
		go func(first bool) {
			defer wg.Done()
			n.renew(n.ctx, sent)
			if first {
				close(n.lease.judged)
			}
		}(first)
		first = false
		select {
		case <-n.ctx.Done():
			return
		case <-t.C():
		}
	}
}

// RenewLease serves a renewal: it is granted by a voter of this cluster.
func (s *adminServer) RenewLease(_ context.Context, req *witnessv1.RenewLeaseRequest) (*witnessv1.RenewLeaseResponse, error) {
	n := s.n
	if req.GetNode() == "" {
		return nil, status.Error(codes.InvalidArgument, "node is required")
	}
	if req.GetClusterId() != n.id.ClusterID {
		return nil, status.Errorf(codes.FailedPrecondition, "cluster %q, this witness belongs to %q", req.GetClusterId(), n.id.ClusterID)
	}
	if !n.isVoter() {
		return nil, status.Error(codes.FailedPrecondition, "this witness is not a voter")
	}
	n.grants.grant(req.GetNode(), n.clock.Now())
	return &witnessv1.RenewLeaseResponse{Node: n.cfg.Name}, nil
}

// LeaseStatus tells whether none of the named witnesses was granted a
// renewal by this voter within hold_ms.
func (s *adminServer) LeaseStatus(_ context.Context, req *witnessv1.LeaseStatusRequest) (*witnessv1.LeaseStatusResponse, error) {
	n := s.n
	if req.GetHoldMs() <= 0 {
		return nil, status.Error(codes.InvalidArgument, "hold_ms must be above zero")
	}
	if !n.isVoter() {
		return nil, status.Error(codes.FailedPrecondition, "this witness is not a voter")
	}
	expired, since := n.grants.expired(req.GetNodes(), time.Duration(req.GetHoldMs())*time.Millisecond, n.clock.Now())
	return &witnessv1.LeaseStatusResponse{Node: n.cfg.Name, Expired: expired, SinceGrantMs: since.Milliseconds()}, nil
}

// ReadIndex serves a linearizable read point: the leader verifies its
// leadership with a quorum, then returns its commit index. A follower
// forwards the call to the leader once, so that a witness cut off from the
// leader alone (an east–west cut) still gets its read through another.
func (s *adminServer) ReadIndex(ctx context.Context, req *witnessv1.ReadIndexRequest) (*witnessv1.ReadIndexResponse, error) {
	n := s.n
	if resp, handled, err := forward(ctx, n, req, witnessv1.AdminClient.ReadIndex); handled {
		return resp, err
	}
	index, err := n.leaderReadIndex()
	if err != nil {
		return nil, toStatus(err)
	}
	return &witnessv1.ReadIndexResponse{Index: index, Leader: n.cfg.Name}, nil
}

// leaderReadIndex is the read index of this node as leader: its commit
// index, taken before it verifies with a quorum that it still leads.
func (n *Node) leaderReadIndex() (uint64, error) {
	index := n.raft.CommitIndex()
	if err := n.VerifyLeader(); err != nil {
		return 0, err
	}
	return index, nil
}

func (n *Node) isVoter() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	return slices.ContainsFunc(f.Configuration().Servers, func(s raft.Server) bool {
		return string(s.ID) == n.cfg.Name && s.Suffrage == raft.Voter
	})
}

// Errors of the lease.
var (
	// ErrLeaseHeld: the old site's witnesses may still hold their lease.
	ErrLeaseHeld = errors.New("the old site's lease has not expired")
	// ErrNoSiteWitnessKnown: no witness is known at the site, so its lease
	// proves nothing.
	ErrNoSiteWitnessKnown = errors.New("no witness of the site is known")
)

// SiteLeaseExpired asks the voters whether every witness of site has gone
// without a renewal for the group's fence hold (fence_after plus the
// margin, config.Timing.FenceHold) by their own clocks. It returns nil
// when a quorum says so, and otherwise an error saying what each voter
// answered. The witnesses of a site are the Raft servers that gossip has
// shown at that site, plus every server whose site this witness has never
// seen (it might be there).
func (n *Node) SiteLeaseExpired(ctx context.Context, site string, spec *witnessv1.GroupSpec) error {
	// Many groups of one site ask at once in a site failover: one answer
	// serves them for a lease period.
	key := leaseAsk{site: site, hold: n.cfg.Timing().FenceHold(spec)}
	n.leaseAskMu.Lock()
	if a, ok := n.leaseAsks[key]; ok && n.clock.Since(a.at) < leaseEvery {
		n.leaseAskMu.Unlock()
		return a.err
	}
	n.leaseAskMu.Unlock()
	err := n.siteLeaseExpired(ctx, site, key.hold)
	n.leaseAskMu.Lock()
	if n.leaseAsks == nil {
		n.leaseAsks = map[leaseAsk]leaseAnswer{}
	}
	n.leaseAsks[key] = leaseAnswer{err: err, at: n.clock.Now()}
	n.leaseAskMu.Unlock()
	return err
}

type leaseAsk struct {
	site string
	hold time.Duration
}

type leaseAnswer struct {
	err error
	at  time.Time
}

func (n *Node) siteLeaseExpired(ctx context.Context, site string, hold time.Duration) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("raft configuration: %w", err)
	}
	sites := n.sitesSeen()
	var nodes []string
	known := false
	for _, s := range f.Configuration().Servers {
		at, seen := sites[string(s.ID)]
		if seen && at != site {
			continue
		}
		known = known || seen
		nodes = append(nodes, string(s.ID))
	}
	if !known {
		return fmt.Errorf("site %s: %w", site, ErrNoSiteWitnessKnown)
	}
	if slices.Contains(nodes, n.cfg.Name) {
		return fmt.Errorf("site %s: this witness is there and runs: %w", site, ErrLeaseHeld)
	}
	vs, err := n.voters()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, leaseStatusTimeout)
	defer cancel()
	type answer struct {
		voter   string
		expired bool
		since   time.Duration
		err     error
	}
	answers := make(chan answer, len(vs))
	for _, v := range vs {
		go func() {
			a := answer{voter: v.name}
			if v.name == n.cfg.Name {
				a.expired, a.since = n.grants.expired(nodes, hold, n.clock.Now())
				answers <- a
				return
			}
			if v.admin == "" {
				a.err = errors.New("address unknown")
				answers <- a
				return
			}
			c, err := n.client(v.admin)
			if err == nil {
				var resp *witnessv1.LeaseStatusResponse
				resp, err = c.LeaseStatus(ctx, &witnessv1.LeaseStatusRequest{Site: site, Nodes: nodes, HoldMs: hold.Milliseconds()})
				if err == nil && resp.GetNode() != v.name {
					err = fmt.Errorf("answered by %s", resp.GetNode())
				}
				a.expired, a.since = resp.GetExpired(), time.Duration(resp.GetSinceGrantMs())*time.Millisecond
			}
			a.err = err
			answers <- a
		}()
	}
	expired, need := 0, quorum(len(vs))
	var views []string
	for range vs {
		a := <-answers
		switch {
		case a.err != nil:
			views = append(views, fmt.Sprintf("%s: no answer (%v)", a.voter, status.Convert(a.err).Message()))
		case a.expired:
			expired++
			views = append(views, fmt.Sprintf("%s: expired, %s since a grant", a.voter, a.since.Round(time.Millisecond)))
		default:
			views = append(views, fmt.Sprintf("%s: held, %s since a grant", a.voter, a.since.Round(time.Millisecond)))
		}
	}
	slices.Sort(views)
	if expired >= need {
		return nil
	}
	return fmt.Errorf("site %s: %d of %d voters see its lease (hold %s) expired, %d needed [%s]: %w",
		site, expired, len(vs), hold.Round(time.Millisecond), need, strings.Join(views, "; "), ErrLeaseHeld)
}

// sitesSeen is the site of every witness this node has seen, in gossip or
// itself, since it started; a witness that gossip no longer sees keeps the
// site it had.
func (n *Node) sitesSeen() map[string]string {
	out := map[string]string{}
	if n.gossip != nil {
		out = n.gossip.members.seenSites()
	}
	out[n.cfg.Name] = n.cfg.Site
	return out
}

// askReadIndex asks the leader for its read index, directly when this
// witness knows where it is, else through each other voter in turn, which
// forwards the question to the leader it follows.
func (n *Node) askReadIndex(ctx context.Context) (uint64, error) {
	var via []string
	if _, admin := n.Leader(); admin != "" {
		via = append(via, admin)
	}
	if vs, err := n.voters(); err == nil {
		for _, v := range vs {
			if v.name != n.cfg.Name && v.admin != "" && !slices.Contains(via, v.admin) {
				via = append(via, v.admin)
			}
		}
	}
	if len(via) == 0 {
		return 0, fmt.Errorf("read index: %w", ErrNoLeader)
	}
	var errs []error
	for _, addr := range via {
		c, err := n.client(addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		actx, cancel := context.WithTimeout(ctx, leaseRenewTimeout/2)
		resp, err := c.ReadIndex(actx, &witnessv1.ReadIndexRequest{})
		cancel()
		if err == nil {
			return resp.GetIndex(), nil
		}
		errs = append(errs, fmt.Errorf("via %s: %w", addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	return 0, fmt.Errorf("read index: %w", errors.Join(errs...))
}

// readIndex asks the leader for a linearizable read point and waits until
// this witness's replica has applied it, so that what it reads next is at
// least as new as anything committed before the call.
func (n *Node) readIndex(ctx context.Context) error {
	var index uint64
	if n.raft.State() == raft.Leader {
		var err error
		if index, err = n.leaderReadIndex(); err != nil {
			return err
		}
	} else {
		var err error
		if index, err = n.askReadIndex(ctx); err != nil {
			return err
		}
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !n.stateHolds(index) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("read index %d, applied %d: %w", index, n.rfsm.applied.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// stateHolds reports whether the state machine holds every entry up to
// index. Raft's AppliedIndex is not enough: it moves when entries are
// handed to the state machine's goroutine, before they are applied. The
// state machine's own index is not enough either: only commands reach it,
// not a leader's no-op or barrier entries, so after a leader change it
// stays below the read index until some command commits. Once every entry
// up to index was handed over, the state machine holds them when it has
// applied the last command among them.
func (n *Node) stateHolds(index uint64) bool {
	applied := n.rfsm.applied.Load()
	if applied >= index {
		return true
	}
	if n.raft.AppliedIndex() < index {
		return false
	}
	return applied >= n.lastCommandUpTo(index)
}

// lastCommandUpTo is the index of the last command entry at or before
// index in the log, 0 when there is none above the log's first index or
// the entries are in a snapshot (compacted into one that the state
// machine took, or installed from the leader and restored into it). An entry it cannot read makes it answer index: the
// caller then waits for the state machine to reach index itself.
func (n *Node) lastCommandUpTo(index uint64) uint64 {
	first, err := n.logs.FirstIndex()
	if err != nil {
		return index
	}
	var l raft.Log
	for i := index; i >= first && i > 0; i-- {
		if err := n.logs.GetLog(i, &l); err != nil {
			if f, ferr := n.logs.FirstIndex(); ferr == nil && i < f {
				return 0 // compacted meanwhile
			}
			if n.snapshotCovers(i) {
				return 0 // an installed snapshot holds it, the log not
			}
			return index
		}
		if l.Type == raft.LogCommand {
			return i
		}
	}
	return 0
}

// snapshotCovers reports whether the latest snapshot holds entry index:
// the state machine took it or had it restored, so it holds that entry.
func (n *Node) snapshotCovers(index uint64) bool {
	snap, err := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64)
	return err == nil && snap >= index
}
