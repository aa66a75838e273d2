package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/dns"
	"github.com/sitewitness/witness/clock"
	"github.com/sitewitness/witness/config"
	"github.com/sitewitness/witness/fsm"
	"github.com/sitewitness/witness/probes"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Log keys.
const (
	keyComponent = "component"
	keyNode      = "node"
	keyPeer      = "peer"
	keyErr       = "error"
)

// Errors of a node. One block, documented.
var (
	// ErrForeignDataDir: data_dir was made by another cluster or node.
	ErrForeignDataDir = errors.New("data_dir belongs to another cluster or node")
	// ErrNameClash: another member already uses this node's name or
	// address.
	ErrNameClash = errors.New("member name or address already in use")
	// ErrNoLeader: no leader was known within the wait.
	ErrNoLeader = errors.New("no leader")
	// ErrClosed: the node is shut down.
	ErrClosed = errors.New("node closed")
)

// NotLeaderError is returned for a write made on a follower. Leader and
// LeaderAdmin say where to send it; both are empty while no leader is known.
type NotLeaderError struct {
	Leader      string
	LeaderAdmin string
}

func (e *NotLeaderError) Error() string {
	if e.Leader == "" {
		return "not the leader, and no leader is known"
	}
	return fmt.Sprintf("not the leader; leader is %s at %s", e.Leader, e.LeaderAdmin)
}

// LeaderFunc runs on the leader for as long as it leads: ctx is cancelled
// when leadership is lost or the node closes.
type LeaderFunc func(ctx context.Context, n *Node)

// Options configure a node beyond its config file.
type Options struct {
	Config config.Node
	Logger *slog.Logger
	// Registerer receives the node's metrics; nil means none. Several nodes
	// in one process (witnessd dev, tests) each need their own registry.
	Registerer prometheus.Registerer
	// Gatherer serves /metrics on metrics_addr, when both are set.
	Gatherer prometheus.Gatherer
	// OnLeader runs while this node leads.
	OnLeader LeaderFunc
	// Runner carries out the reconciler's steps; nil means the real
	// targets (actions.Targets).
	Runner actions.Runner
	// LocalDatabase opens this site's databases, which the witness
	// fences when it loses its lease and demotes for the leader; nil
	// means PostgreSQL (actions.LocalPostgres).
	LocalDatabase LocalDatabase
	// Watchdog is fed by the lease loop while this witness's lease holds;
	// nil means the device of the config's watchdog setting, if any.
	Watchdog Watchdog
	// JoinTimeout bounds joining a running cluster; zero means 30s.
	JoinTimeout time.Duration
	// Clock is the time of every decision the node makes: probes,
	// gossip freshness, the leader loop, the lease and its grants, the
	// reconciler. Nil means real time.
	Clock clock.Clock

	// barrier, if set, stands in for Raft's barrier of a new leader, so
	// tests can make it fail.
	barrier func(timeout time.Duration) error
	// verifyLeader, if set, stands in for Raft's VerifyLeader, so tests
	// can leave a verification unanswered.
	verifyLeader func() raft.Future
	// beforeApply, if set, runs in the state machine's goroutine before
	// each entry is applied, so tests can hold an entry between Raft's
	// hand-over and the state machine.
	beforeApply func(index uint64)

	// Raft, Gossip, Peers and Probe replace the node's network, disk and
	// probes (see inject.go); zero values mean the real ones.
	Raft   RaftParts
	Gossip StartGossip
	Peers  Peers
	Probe  ProbeChecker
	// NoAdminListener serves no admin API on admin_addr: other witnesses
	// reach this one through their Peers (AdminServer).
	NoAdminListener bool
}

// Node is one witness: its Raft replica, gossip membership and admin API.
type Node struct {
	cfg  config.Node
	log  *slog.Logger
	opts Options
	fsm  *fsm.FSM
	id   identity

	clock clock.Clock // opts.Clock, or real time
	tls   *tlsFiles   // certificate material; nil runs plaintext (insecure)
	keys  *gossipKeys // gossip keyring; nil when gossip is not encrypted

	raft      *raft.Raft
	rfsm      *raftFSM
	transport raft.Transport
	store     *raftboltdb.BoltStore // when this node opened its own
	logs      raft.LogStore
	stable    raft.StableStore
	snaps     raft.SnapshotStore
	gossip    *gossip
	notifyCh  chan bool
	obs       *observations
	sched     *probes.Scheduler
	// resyncs carries the witnesses to push/pull with at once (see
	// observations.resync).
	resyncs chan string

	grpcSrv    *grpc.Server
	adminLis   net.Listener
	httpSrv    *http.Server
	metricsLis net.Listener

	peers Peers

	recMu sync.Mutex
	rec   *actions.Reconciler // while this node leads, nil otherwise

	hookRuns hookRuns
	// localDB serializes what this witness does to its site's databases
	// for the leader (demotion), after a given-up switchover or a creation
	// (start) and after a self-fence (start of a standby). Its holders
	// wait on time (a linearizable read, a start), and a goroutine
	// waiting for a sync.Mutex does not let a synctest bubble's clock
	// move: it is a channel.
	localDB chanMutex
	// abortStarted: group -> token at which startDemoted is done;
	// abortStartErr: group -> its last error, as logged.
	abortStarted, abortStartErr sync.Map
	// scheduleWaits: group -> why its scheduled switchover waits, as
	// logged.
	scheduleWaits sync.Map
	metrics       *nodeMetrics

	grants     *grants // lease renewals this witness granted as a voter
	lease      *holder // this witness's own lease
	leaseAskMu sync.Mutex
	leaseAsks  map[leaseAsk]leaseAnswer // the voters' last answers, by site

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	// leadDone is closed when watchLeadership has returned, with the
	// leader's work it ran (see Close).
	leadDone chan struct{}
	closeErr error
}

// Start opens the node's data_dir, starts Raft, gossip, the admin API and
// the metrics endpoint, and founds or joins the cluster when data_dir is
// new. It returns once the node runs; leadership comes later.
func Start(ctx context.Context, opts Options) (_ *Node, err error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(keyNode, cfg.Name)
	n := &Node{cfg: cfg, log: log, opts: opts, fsm: fsm.New(), notifyCh: make(chan bool, 8), metrics: newNodeMetrics(),
		clock: clock.Or(opts.Clock), lease: newHolder(), peers: opts.Peers, localDB: make(chanMutex, 1)}
	n.grants = newGrants(n.clock.Now())
	if n.peers == nil {
		n.peers = newGRPCPeers(n.dialCredentials)
	}
	n.obs = newObservations(cfg.Name, cfg.Site, log.With(keyComponent, "observations"))
	n.obs.recovered, n.obs.clock = n.siteRecovered, n.clock
	n.obs.dropped = n.metrics.gossipDropped.Inc
	n.resyncs = make(chan string, 8)
	n.obs.resync = func(node string) {
		select {
		case n.resyncs <- node:
		default: // one is already asked for
		}
	}
	n.sched = probes.NewScheduler(probes.Config{Clock: n.clock, OnObservation: n.metrics.probeObserver(n.obs.local), Logger: log.With(keyComponent, "probes")})
	n.ctx, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			n.Close()
		}
	}()

	id, haveID, err := n.openIdentity()
	if err != nil {
		return nil, err
	}
	if err := n.loadTLS(); err != nil {
		return nil, err
	}
	if err := n.startRaft(); err != nil {
		return nil, err
	}
	hasState, err := raft.HasExistingState(n.logs, n.stable, n.snaps)
	if err != nil {
		return nil, fmt.Errorf("raft state: %w", err)
	}
	if hasState && !haveID {
		return nil, fmt.Errorf("data_dir %s holds Raft state but no %s: %w", cfg.DataDir, identityFile, ErrForeignDataDir)
	}
	if err := n.startAdmin(); err != nil {
		return nil, err
	}
	if err := n.enter(ctx, id, hasState); err != nil {
		return nil, err
	}
	if n.obs.inc, err = nextIncarnation(cfg.DataDir, n.clock.Now()); err != nil {
		return nil, err
	}
	if err := n.startGossip(); err != nil {
		return nil, err
	}
	for _, v := range cfg.InitialVoters {
		if v.Name != cfg.Name {
			n.gossip.addPeers(v.GossipAddr)
		}
	}
	n.gossip.addPeers(n.id.GossipPeers...)
	n.startMetrics()
	n.startLoops()
	return n, nil
}

// openIdentity makes data_dir if needed and reads which cluster and node
// it belongs to: haveID is false for a new data_dir, whose identity is
// then the founding one when initial_voters is set.
func (n *Node) openIdentity() (id identity, haveID bool, err error) {
	cfg := &n.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return id, false, fmt.Errorf("data_dir: %w", err)
	}
	id, haveID, err = readIdentity(cfg.DataDir)
	if err != nil {
		return id, false, err
	}
	if haveID {
		if err := checkIdentity(id, cfg); err != nil {
			return id, false, err
		}
	} else if len(cfg.InitialVoters) > 0 {
		id = identity{Cluster: cfg.Cluster, ClusterID: foundingID(cfg.Cluster, cfg.InitialVoters), Node: cfg.Name}
	}
	return id, haveID, nil
}

// enter makes this node a member: it resumes from the Raft state it has,
// founds the cluster from initial_voters, or joins a running one; then it
// records its identity in data_dir.
func (n *Node) enter(ctx context.Context, id identity, hasState bool) error {
	cfg := n.cfg
	switch {
	case hasState:
		n.log.Info("resuming from data_dir", "cluster_id", id.ClusterID)
	case len(cfg.InitialVoters) > 0:
		servers := make([]raft.Server, len(cfg.InitialVoters))
		for i, v := range cfg.InitialVoters {
			servers[i] = raft.Server{ID: raft.ServerID(v.Name), Address: raft.ServerAddress(v.RaftAddr), Suffrage: raft.Voter}
		}
		if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("bootstrap: %w", err)
		}
		n.log.Info("founded cluster", "cluster_id", id.ClusterID, "voters", len(servers))
	case len(cfg.Join) > 0:
		joined, err := n.join(ctx)
		if err != nil {
			return err
		}
		id = joined
	default:
		return fmt.Errorf("data_dir %s is new: set initial_voters to found a cluster or join to enter one", cfg.DataDir)
	}
	if id.Node == "" {
		id.Cluster, id.Node = cfg.Cluster, cfg.Name
	}
	n.id = id
	return writeIdentity(cfg.DataDir, id)
}

// startLoops starts the node's background loops; Close stops them.
func (n *Node) startLoops() {
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.renewLoop() }()
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.leaseLoop() }()
	n.wg.Add(1)
	n.leadDone = make(chan struct{})
	go func() { defer n.wg.Done(); defer close(n.leadDone); n.watchLeadership() }()
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.gossipLoop() }()
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.rejoinLoop() }()
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.obs.run(n.ctx) }()
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.probeLoop() }()
}

func (n *Node) startRaft() error {
	cfg := n.cfg
	hl := newHCLog(n.log, "raft")
	parts := n.opts.Raft
	n.logs, n.stable, n.snaps = parts.Logs, parts.Stable, parts.Snapshots
	if n.logs == nil || n.stable == nil {
		store, err := raftboltdb.NewBoltStore(filepath.Join(cfg.DataDir, "raft.db"))
		if err != nil {
			return fmt.Errorf("open raft log %s: %w", filepath.Join(cfg.DataDir, "raft.db"), err)
		}
		n.store = store
		if n.logs == nil {
			n.logs = store
		}
		if n.stable == nil {
			n.stable = store
		}
	}
	if n.snaps == nil {
		snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hl)
		if err != nil {
			return fmt.Errorf("open snapshots: %w", err)
		}
		n.snaps = snaps
	}
	n.transport = parts.Transport
	if n.transport == nil {
		adv, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
		if err != nil {
			return fmt.Errorf("raft_addr: %w", err)
		}
		stream, err := newRaftStream(n.ctx, cfg.RaftAddr, adv)
		if err != nil {
			return fmt.Errorf("raft listen %s: %w", cfg.RaftAddr, err)
		}
		n.transport = raft.NewNetworkTransportWithLogger(n.raftLayer(stream), 3, 5*time.Second, hl)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Name)
	rc.HeartbeatTimeout = cfg.Raft.HeartbeatTimeout.D()
	rc.ElectionTimeout = cfg.Raft.ElectionTimeout.D()
	rc.LeaderLeaseTimeout = cfg.Raft.LeaderLeaseTimeout.D()
	rc.CommitTimeout = min(rc.CommitTimeout, cfg.Raft.HeartbeatTimeout.D()/2)
	rc.SnapshotInterval = cfg.Raft.SnapshotInterval.D()
	rc.SnapshotThreshold = cfg.Raft.SnapshotThreshold
	rc.Logger = hl
	rc.NotifyCh = n.notifyCh
	n.rfsm = &raftFSM{f: n.fsm, beforeApply: n.opts.beforeApply, changed: n.pokeReconciler}
	r, err := raft.NewRaft(rc, n.rfsm, n.logs, n.stable, n.snaps, n.transport)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	return nil
}

func (n *Node) startGossip() error {
	meta, err := json.Marshal(nodeMeta{Version: metaVersion, Site: n.cfg.Site, Raft: n.cfg.RaftAddr, Admin: n.AdminAddr()})
	if err != nil {
		return err
	}
	// The broadcast queue exists before the gossip layer, which may ask it
	// for broadcasts as soon as it runs.
	var layer atomic.Pointer[Gossip]
	n.obs.queue = &memberlist.TransmitLimitedQueue{RetransmitMult: 3, NumNodes: func() int {
		if g := layer.Load(); g != nil {
			return (*g).NumMembers()
		}
		return 1
	}}
	d := &delegate{meta: meta, log: n.log, obs: n.obs}
	seen := newMembers(n.log.With(keyComponent, "gossip"))
	if err := seen.loadSites(n.cfg.DataDir); err != nil {
		n.log.Warn("sites of witnesses seen before not loaded", keyErr, err)
	}
	gc := GossipConfig{Name: n.cfg.Name, Addr: n.cfg.GossipAddr, Label: "witness/" + n.id.ClusterID, ProbeInterval: n.cfg.Gossip.ProbeInterval.D(),
		Delegate: d, Conflict: d, Events: seen}
	start := n.opts.Gossip
	if start == nil {
		start = n.startMemberlist
	}
	g, err := start(gc)
	if err != nil {
		return err
	}
	layer.Store(&g)
	n.gossip = &gossip{ml: g, log: n.log.With(keyComponent, "gossip"), members: seen}
	return nil
}

// startMemberlist is the real gossip layer: memberlist on gossip_addr.
func (n *Node) startMemberlist(gc GossipConfig) (Gossip, error) {
	host, portStr, _ := net.SplitHostPort(gc.Addr)
	port, _ := strconv.Atoi(portStr)
	mc := memberlist.DefaultLANConfig()
	mc.Name = gc.Name
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	mc.ProbeInterval = gc.ProbeInterval
	mc.ProbeTimeout = min(mc.ProbeTimeout, mc.ProbeInterval)
	mc.GossipInterval = min(mc.GossipInterval, mc.ProbeInterval)
	mc.PushPullInterval = pushPullInterval
	// A join or push/pull towards a cut-off peer waits this long (10 s by
	// default); Close does not wait for it (see dial.go).
	mc.TCPTimeout = gossipTCPTimeout
	mc.Label = gc.Label
	if err := n.gossipEncryption(mc); err != nil {
		return nil, err
	}
	mc.Logger = newHCLog(n.log, "memberlist").StandardLogger(nil)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: mc.Logger})
	if err != nil {
		return nil, fmt.Errorf("gossip listen %s: %w", gc.Addr, err)
	}
	mc.Transport = &gossipTransport{NetTransport: nt, conns: newClosingConns(n.ctx)}
	mc.Delegate = gc.Delegate
	mc.Conflict = gc.Conflict
	mc.Events = gc.Events
	// A batch of observations too large for a packet goes to every other
	// member over memberlist's TCP (another gossip layer gets packets). Set
	// before memberlist runs, which may flush a batch at once.
	var members atomic.Pointer[memberlist.Memberlist]
	n.obs.reliable = n.sendReliable(&members)
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = nt.Shutdown()
		return nil, fmt.Errorf("gossip listen %s: %w", gc.Addr, err)
	}
	members.Store(ml)
	return ml, nil
}

// gossipLoop sends this witness's heartbeat every heartbeatEvery.
func (n *Node) gossipLoop() {
	beat := n.clock.NewTicker(heartbeatEvery)
	defer beat.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case now := <-beat.C():
			n.obs.heartbeat(now)
		}
	}
}

// rejoinLoop joins known peers that gossip does not see alive, and syncs
// at once with a witness whose observation deltas this one missed. A join
// towards a cut-off peer waits for gossipTCPTimeout, so it runs apart from
// the heartbeat, which must not wait for it.
func (n *Node) rejoinLoop() {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		n.gossip.rejoin(n.cfg.GossipAddr)
		if err := n.gossip.members.saveSites(n.cfg.DataDir); err != nil {
			n.log.Warn("sites of the witnesses seen not saved", keyErr, err)
		}
		for ticked := false; !ticked; {
			select {
			case <-n.ctx.Done():
				return
			case <-tick.C:
				ticked = true
			case node := <-n.resyncs:
				n.gossip.resync(node)
			}
		}
	}
}

// watchLeadership runs OnLeader while this node leads.
func (n *Node) watchLeadership() {
	type run struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	var cur *run
	stop := func() {
		if cur != nil {
			cur.cancel()
			<-cur.done
			cur = nil
		}
	}
	defer stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case leader := <-n.notifyCh:
			if !leader {
				if cur != nil {
					n.log.Info("lost leadership")
				}
				stop()
				continue
			}
			if cur != nil {
				continue
			}
			n.log.Info("became leader")
			ctx, cancel := context.WithCancel(n.ctx)
			cur = &run{cancel: cancel, done: make(chan struct{})}
			go n.lead(ctx, cur.done)
		}
	}
}

// lead runs while this node leads; ctx ends with leadership.
func (n *Node) lead(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	// Apply everything the previous leader committed before acting on the
	// state.
	barrier := func() error { return n.barrier(n.cfg.Raft.ElectionTimeout.D() * 5) }
	if !awaitBarrier(ctx, barrier, n.clock.After, n.log) {
		return
	}
	var wg sync.WaitGroup
	if n.opts.OnLeader != nil {
		wg.Add(1)
		go func() { defer wg.Done(); n.opts.OnLeader(ctx, n) }()
	}
	runner := n.opts.Runner
	if runner == nil {
		// One batcher per term: the DNS steps of a site failover go out
		// in a few updates per zone; wg.Wait below outlives its batches.
		batcher := &dns.Batcher{Log: n.log.With(keyComponent, "dns")}
		defer batcher.Close()
		runner = actions.Targets{Sites: n, Demoter: n, Witness: actions.Witness{Node: n.cfg.Name, Site: n.cfg.Site}, Clock: n.clock, DNS: batcher}
	}
	rec := &actions.Reconciler{Leader: n, Runner: runner, Node: n.cfg.Name, Log: n.log.With(keyComponent, "reconciler"), LeaderLease: n.cfg.Raft.LeaderLeaseTimeout.D(), Clock: n.clock,
		OnDrift: func(group string, _ actions.DNSDrift) { n.metrics.addDrift(group) }}
	n.setReconciler(rec)
	defer n.setReconciler(nil)
	wg.Add(2)
	go func() { defer wg.Done(); rec.Run(ctx) }()
	go func() { defer wg.Done(); n.autoReinstate(ctx) }()
	n.decide(ctx)
	wg.Wait()
}

// setReconciler sets the reconciler this node runs while it leads.
func (n *Node) setReconciler(r *actions.Reconciler) {
	n.recMu.Lock()
	n.rec = r
	n.recMu.Unlock()
}

func (n *Node) reconciler() *actions.Reconciler {
	n.recMu.Lock()
	defer n.recMu.Unlock()
	return n.rec
}

// pokeReconciler tells the reconciler, if this node runs one, that the
// state changed: the state machine calls it after every applied command,
// whoever proposed it.
func (n *Node) pokeReconciler() {
	if r := n.reconciler(); r != nil {
		r.Poke()
	}
}

// siteRecovered retries at once, if this node leads, the steps that were
// backing off: a site that was failing is seen again, and an old primary
// there may have come back writable.
func (n *Node) siteRecovered(site string) {
	if r := n.reconciler(); r != nil {
		if waiting := r.RetryNow(); waiting > 0 {
			n.log.Info("a failing site is seen again; retrying waiting steps now", "site", site, "steps", waiting)
		}
	}
}

// Groups returns the groups of this node's replica.
func (n *Node) Groups() []*witnessv1.Group { return n.fsm.Groups() }

func (n *Node) startMetrics() {
	if n.opts.Registerer != nil {
		n.registerMetrics(n.opts.Registerer)
	}
	if n.cfg.MetricsAddr == "" || n.opts.Gatherer == nil {
		return
	}
	lis, err := net.Listen("tcp", n.cfg.MetricsAddr)
	if err != nil {
		n.log.Error("metrics listener", keyErr, err)
		return
	}
	n.metricsLis = lis
	lis = n.metricsListener(lis)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.opts.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	n.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.httpSrv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("metrics server", keyErr, err)
		}
	}()
}

// MetricsAddr is the address /metrics is served on, or "".
func (n *Node) MetricsAddr() string {
	if n.metricsLis == nil {
		return ""
	}
	return n.metricsLis.Addr().String()
}

// leadStopWait bounds how long Close waits for the leader's work to end
// before it shuts Raft down anyway (a step still waiting on a DNS server
// or a database then fails as not leader).
const leadStopWait = 5 * time.Second

// Close leaves gossip, shuts Raft down and stops every goroutine the node
// started. It is safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		var errs []error
		began := time.Now()
		var stages []any
		stage := func(name string) {
			stages = append(stages, name, time.Since(began).Round(time.Millisecond))
		}
		if n.grpcSrv != nil {
			stopped := make(chan struct{})
			go func() { n.grpcSrv.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(2 * time.Second):
				n.grpcSrv.Stop()
			}
			stage("admin")
		}
		if n.httpSrv != nil {
			errs = append(errs, n.httpSrv.Close())
		}
		if n.gossip != nil {
			_ = n.gossip.ml.Leave(time.Second)
			errs = append(errs, n.gossip.ml.Shutdown())
			stage("gossip")
		}
		if n.leadDone != nil {
			// The leader's work ends before Raft does: hashicorp/raft
			// takes a VerifyLeader into a buffer that its loop, once told
			// to shut down, may leave unread, and never answers it; the
			// work waiting on it would keep Close waiting for good. Ended
			// first, it finds Raft still answering.
			select {
			case <-n.leadDone:
			case <-time.After(leadStopWait):
			}
			stage("leader")
		}
		if n.raft != nil {
			errs = append(errs, n.raft.Shutdown().Error())
			stage("raft")
		}
		if t, ok := n.transport.(interface{ CloseStreams() }); ok {
			t.CloseStreams()
		}
		if t, ok := n.transport.(raft.WithClose); ok {
			errs = append(errs, t.Close())
		}
		if n.store != nil {
			errs = append(errs, n.store.Close())
		}
		n.wg.Wait()
		stage("tasks")
		n.log.Info("stopped", stages...)
		if n.peers != nil {
			errs = append(errs, n.peers.Close())
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// Name is this node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Site is this node's site.
func (n *Node) Site() string { return n.cfg.Site }

// FSM is the node's replica of the state. Reads may lag the leader.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// ClusterID identifies the cluster this node belongs to.
func (n *Node) ClusterID() string { return n.id.ClusterID }

// IsLeader reports whether this node believes it leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's name and admin address as this node knows
// them; both empty while there is none.
func (n *Node) Leader() (name, admin string) {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return "", ""
	}
	name = string(id)
	if name == n.cfg.Name {
		return name, n.AdminAddr()
	}
	if n.gossip != nil {
		if p, ok := n.gossip.alive()[name]; ok {
			return name, p.Meta.Admin
		}
	}
	return name, ""
}

// WaitLeader waits until a leader is known, or ctx ends.
func (n *Node) WaitLeader(ctx context.Context) (name string, err error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if name, _ := n.Leader(); name != "" {
			return name, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for leader: %w", ErrNoLeader)
		case <-t.C:
		}
	}
}

// VerifyLeader confirms with a quorum that this node still leads. It
// returns ErrClosed once the node closes, answered or not: hashicorp/raft
// takes a verification into a buffer that its loop, told to shut down,
// may leave unread, and then never answers it.
func (n *Node) VerifyLeader() error {
	verify := n.raft.VerifyLeader
	if n.opts.verifyLeader != nil {
		verify = n.opts.verifyLeader
	}
	f := verify()
	answer := make(chan error, 1)
	go func() { answer <- f.Error() }()
	var err error
	select {
	case err = <-answer:
	case <-n.ctx.Done():
		return fmt.Errorf("verify leadership: %w", ErrClosed)
	}
	if err != nil {
		name, admin := n.Leader()
		return fmt.Errorf("verify leadership: %w", &NotLeaderError{Leader: name, LeaderAdmin: admin})
	}
	return nil
}

// Apply commits a command through Raft and returns the state machine's
// result. On a follower it returns *NotLeaderError.
func (n *Node) Apply(ctx context.Context, cmd proto.Message) (fsm.Result, error) {
	entry, err := fsm.Encode(cmd)
	if err != nil {
		return fsm.Result{}, err
	}
	if n.raft.State() != raft.Leader {
		name, admin := n.Leader()
		return fsm.Result{}, &NotLeaderError{Leader: name, LeaderAdmin: admin}
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	began := time.Now()
	f := n.raft.Apply(entry, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			name, admin := n.Leader()
			return fsm.Result{}, fmt.Errorf("apply: %w", &NotLeaderError{Leader: name, LeaderAdmin: admin})
		}
		if errors.Is(err, raft.ErrRaftShutdown) {
			return fsm.Result{}, ErrClosed
		}
		return fsm.Result{}, fmt.Errorf("apply: %w", err)
	}
	res, _ := f.Response().(fsm.Result)
	n.applied(cmd, time.Since(began))
	return res, nil
}

// Member is one witness as this node sees it.
type Member struct {
	Name, Site, RaftAddr, GossipAddr, AdminAddr string
	Voter, Alive, Leader                        bool
}

// Members lists the Raft servers and the witnesses gossip sees, sorted by
// name.
func (n *Node) Members() ([]Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	leader, _ := n.Leader()
	alive := map[string]peer{}
	if n.gossip != nil {
		alive = n.gossip.alive()
	}
	byName := map[string]*Member{}
	for _, s := range f.Configuration().Servers {
		m := &Member{Name: string(s.ID), RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter}
		byName[m.Name] = m
	}
	for name, p := range alive {
		m, ok := byName[name]
		if !ok {
			m = &Member{Name: name, RaftAddr: p.Meta.Raft}
			byName[name] = m
		}
		m.Alive, m.Site, m.AdminAddr, m.GossipAddr = true, p.Meta.Site, p.Meta.Admin, p.GossipAddr
	}
	if m, ok := byName[n.cfg.Name]; ok {
		m.Alive, m.Site, m.AdminAddr, m.GossipAddr = true, n.cfg.Site, n.AdminAddr(), n.cfg.GossipAddr
	}
	out := make([]Member, 0, len(byName))
	for _, m := range byName {
		m.Leader = m.Name == leader
		out = append(out, *m)
	}
	sortMembers(out)
	return out, nil
}

// addVoter adds or confirms a voter; only the leader may.
func (n *Node) addVoter(name, addr string) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	for _, s := range f.Configuration().Servers {
		switch {
		case string(s.ID) == name && string(s.Address) == addr:
			return nil // already a member: joining again is harmless
		case string(s.ID) == name:
			return fmt.Errorf("member %q is already at %s: %w", name, s.Address, ErrNameClash)
		case string(s.Address) == addr:
			return fmt.Errorf("address %s is already used by member %q: %w", addr, s.ID, ErrNameClash)
		}
	}
	if err := n.raft.AddVoter(raft.ServerID(name), raft.ServerAddress(addr), 0, 30*time.Second).Error(); err != nil {
		return fmt.Errorf("add voter %s: %w", name, err)
	}
	return nil
}

func (n *Node) removeServer(name string) error {
	if name == n.cfg.Name {
		// Hand leadership over first so the cluster keeps a leader.
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			return fmt.Errorf("transfer leadership before removing %s: %w", name, err)
		}
		return &NotLeaderError{}
	}
	if err := n.raft.RemoveServer(raft.ServerID(name), 0, 30*time.Second).Error(); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// join asks the members in cfg.Join to add this node, until one answers.
func (n *Node) join(ctx context.Context) (identity, error) {
	timeout := n.opts.JoinTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req := &witnessv1.AddMemberRequest{Name: n.cfg.Name, Site: n.cfg.Site, RaftAddress: n.cfg.RaftAddr, GossipAddress: n.cfg.GossipAddr}
	var last error
	for {
		for _, addr := range n.cfg.Join {
			c, err := n.client(addr)
			if err != nil {
				last = err
				continue
			}
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			resp, err := c.AddMember(cctx, req)
			ccancel()
			if err == nil {
				id := identity{Cluster: n.cfg.Cluster, ClusterID: resp.GetClusterId(), Node: n.cfg.Name}
				for _, m := range resp.GetMembers() {
					if m.GetName() != n.cfg.Name && m.GetGossipAddress() != "" {
						id.GossipPeers = append(id.GossipPeers, m.GetGossipAddress())
					}
				}
				n.log.Info("joined cluster", "via", addr, "cluster_id", id.ClusterID)
				return id, nil
			}
			if isPermanent(err) {
				return identity{}, fmt.Errorf("join via %s: %w", addr, err)
			}
			last = err
		}
		select {
		case <-ctx.Done():
			return identity{}, fmt.Errorf("join %v: %w (last: %v)", n.cfg.Join, ctx.Err(), last)
		case <-time.After(time.Second):
		}
	}
}

// client returns an admin client of another witness.
func (n *Node) client(addr string) (witnessv1.AdminClient, error) {
	return n.peers.Client(addr)
}

// chanMutex is a mutual exclusion lock made of a channel of one slot.
// Unlike sync.Mutex, a goroutine waiting for it is durably blocked in a
// testing/synctest bubble, so the bubble's clock moves for the holder.
type chanMutex chan struct{}

// Lock takes the lock, waiting for it.
func (m chanMutex) Lock() { m <- struct{}{} }

// Unlock gives the lock back.
func (m chanMutex) Unlock() { <-m }
