// Package harness runs Witness for real on one machine: one network
// namespace per site (east, west, tiebreak) and one for DNS, joined by a
// bridge; real witnessd processes, BIND 9 with a dynamic zone signed by
// TSIG, a PostgreSQL 15 primary at east streaming to a standby at west, and
// a small HTTP service per site. Faults are iptables rules inside the
// namespaces and signals to processes. Recorders watch DNS and the
// databases from outside the sites (the host keeps a link into every
// namespace that faults never cut), so that invariants can be checked
// from what really happened.
//
// It needs root, ip(8), iptables, BIND 9 and PostgreSQL 15 (make deps).
// Everything it makes is named with the prefix "wh-" and removed at Close;
// a run that finds leftovers of a crashed one removes them first.
package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Group is the name of the protected service the harness sets up.
const Group = "app"

// Addresses of the sites on the harness's bridge.
var siteAddr = map[string]string{
	"east":     subnet + ".11",
	"west":     subnet + ".12",
	"tiebreak": subnet + ".13",
	"dns":      subnet + ".53",
}

// DNS answers of the group's record per site.
var recordValue = map[string]string{"east": "192.0.2.10", "west": "198.51.100.10"}

// Options shape one environment. Zero values take the defaults shown.
type Options struct {
	// Dir holds configs, data and logs; empty: a new temporary directory,
	// removed at Close unless the caller keeps it.
	Dir string
	// Bin holds witnessd; empty: built into Dir.
	Bin string
	// Logf receives progress lines; nil: none.
	Logf func(format string, args ...any)
	// ProbeInterval (1s) and FailThreshold (3) of every probe.
	ProbeInterval time.Duration
	FailThreshold int
	// FailoverAfter (5s) and FenceAfter (1s) of the group. FenceAfter
	// must leave the group's margin before FailoverAfter (about 3.6s with
	// 1s probes: see docs/config-reference.md, "The fence margin").
	FailoverAfter time.Duration
	FenceAfter    time.Duration
	// TTL of the DNS record in seconds (1).
	TTL int
	// HeartbeatTimeout and ElectionTimeout of Raft (500ms each).
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// Watchdog, when set, gives east's witness a watchdog of this timeout:
	// a file that a StandInWatchdog (Env.Watchdog) watches. FenceAfter
	// must hold it plus 750ms.
	Watchdog time.Duration
	// NoDataDirs leaves out of the group the data_dir of each site's
	// database. By default the group names them, so that the witnesses
	// there demote it (the self-fence, and the leader's fence of an old
	// site) and a failover whose fence of the old site fails may promote
	// by the lease rule; without them the witnesses fence over SQL, and
	// such a failover waits for a confirmed fence or old_site_down.
	NoDataDirs bool
	// Reinstate sets the group's reinstate (auto or manual; empty: the
	// default); it needs the data_dirs (not NoDataDirs).
	Reinstate string
	// MaxLag, when set, is the group's max_lag ("16MB"): the data-loss
	// guard on WAL positions.
	MaxLag string
	// SwitchoverTimeout, when set, is the group's switchover_timeout
	// (default 30s).
	SwitchoverTimeout time.Duration
	// WestB adds a second standby at west, PG["west-b"], on port 5433 of
	// west's address, streaming from east: the group then lists its
	// PostgreSQL nodes (east, west, west-b; data_dir on east and west)
	// and probes each.
	WestB bool
}

func (o *Options) defaults() {
	if o.ProbeInterval == 0 {
		o.ProbeInterval = time.Second
	}
	if o.FailThreshold == 0 {
		o.FailThreshold = 3
	}
	if o.FailoverAfter == 0 {
		o.FailoverAfter = 5 * time.Second
	}
	if o.FenceAfter == 0 {
		o.FenceAfter = time.Second
	}
	if o.TTL == 0 {
		o.TTL = 1
	}
	if o.HeartbeatTimeout == 0 {
		o.HeartbeatTimeout = 500 * time.Millisecond
	}
	if o.ElectionTimeout == 0 {
		o.ElectionTimeout = 500 * time.Millisecond
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Env is one running environment.
type Env struct {
	Opts Options
	Dir  string
	bin  string // witnessd and witnessctl

	Witnesses []*Witness
	PG        map[string]*Postgres // east (primary at start), west (standby)

	net      *network
	named    *named
	services map[string]*service
	lock     *os.File
	ownDir   bool
	closers  []func() error

	raftFaults map[string]bool       // sites with Raft faults (DropRaft, DelayRaft)
	raftDelays map[string]*raftDelay // by site

	DNS    *DNSRecorder
	Writes *WriteRecorder
	// Watchdog is east's stand-in watchdog when Options.Watchdog is set.
	Watchdog *StandInWatchdog
}

// Deadlines for what only takes long on a slow machine: they bound how
// long a broken environment takes to report, not how fast Witness must be.
const (
	// startTimeout bounds each step of bringing a part up (a server
	// answering, a leader elected, the group stable).
	startTimeout = 3 * time.Minute
	// stopTimeout bounds a process's orderly stop before it is killed.
	stopTimeout = time.Minute
)

// Witness is one witnessd process.
type Witness struct {
	Name, Site, Addr string
	Proc             *Process
	Admin            witnessv1.AdminClient
	conn             *grpc.ClientConn
}

// AdminAddr is the witness's admin API address.
func (w *Witness) AdminAddr() string { return w.Addr + ":7400" }

// Start builds the whole environment and waits until the group is stable
// at east with DNS answering east. On error everything made is removed.
func Start(opts Options) (env *Env, err error) {
	opts.defaults()
	if os.Geteuid() != 0 {
		return nil, errNotRoot
	}
	for _, tool := range []string{"ip", "iptables", "setpriv", "/usr/sbin/named", filepath.Join(pgBin, "postgres")} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("harness needs %s: %w (run make deps)", tool, err)
		}
	}
	e := &Env{Opts: opts, PG: map[string]*Postgres{}, services: map[string]*service{}}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\nlogs:\n%s", err, e.Logs(3000))
			if cerr := e.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
			env = nil
		}
	}()
	if e.lock, err = lockRun(); err != nil {
		return nil, err
	}
	removed, err := RemoveLeftovers()
	if err != nil {
		return nil, fmt.Errorf("removing leftovers of an earlier run: %w", err)
	}
	for _, r := range removed {
		opts.Logf("removed leftover %s of an earlier run", r)
	}
	e.Dir = opts.Dir
	if e.Dir == "" {
		if e.Dir, err = os.MkdirTemp("", "witness-harness-"); err != nil {
			return nil, err
		}
		e.ownDir = true
	}
	if err := os.Chmod(e.Dir, 0o755); err != nil {
		return nil, err
	}
	bin := opts.Bin
	if bin == "" {
		bin = filepath.Join(e.Dir, "bin")
		if err := buildWitnessd(bin); err != nil {
			return nil, err
		}
	}
	e.bin = bin

	start := time.Now()
	e.net = newNetwork()
	if err := e.net.up(); err != nil {
		return nil, err
	}
	for _, s := range []string{"east", "west", "tiebreak", "dns"} {
		if err := e.net.addSite(s, siteAddr[s]); err != nil {
			return nil, err
		}
	}
	opts.Logf("network up in %s", time.Since(start).Round(time.Millisecond))

	if e.named, err = newNamed(filepath.Join(e.Dir, "named"), siteAddr["dns"]); err != nil {
		return nil, err
	}
	if err := e.named.start(); err != nil {
		return nil, err
	}
	if err := e.startDatabases(); err != nil {
		return nil, err
	}
	opts.Logf("named and postgres up in %s", time.Since(start).Round(time.Millisecond))
	for _, s := range []string{"east", "west"} {
		svc, err := startService(s, siteAddr[s])
		if err != nil {
			return nil, err
		}
		e.services[s] = svc
	}
	if err := e.startWitnesses(bin); err != nil {
		return nil, err
	}
	if err := e.applyGroup(); err != nil {
		return nil, err
	}
	if err := e.WaitHealthy(startTimeout); err != nil {
		return nil, err
	}
	opts.Logf("group %s stable at east, every site seen healthy, in %s", Group, time.Since(start).Round(time.Millisecond))
	e.DNS = startDNSRecorder(siteAddr["dns"] + ":53")
	e.Writes = startWriteRecorder(e.PG)
	return e, nil
}

// lockRun takes the machine-wide harness lock: two runs would fight over
// the same namespace names.
func lockRun() (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "witness-harness.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("another harness run holds %s: %w", f.Name(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Build builds witnessd and witnessctl into dir, for Options.Bin.
func Build(dir string) error { return buildWitnessd(dir) }

// buildWitnessd builds the daemon into dir.
func buildWitnessd(dir string) error {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/witnessd", "./cmd/witnessctl")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build witnessd: %v: %s", err, out)
	}
	return nil
}

func (e *Env) startDatabases() error {
	east, err := newPostgres(e.Dir, "east", siteAddr["east"])
	if err != nil {
		return err
	}
	west, err := newPostgres(e.Dir, "west", siteAddr["west"])
	if err != nil {
		return err
	}
	e.PG["east"], e.PG["west"] = east, west
	if err := east.initPrimary(); err != nil {
		return err
	}
	if !e.Opts.NoDataDirs {
		if err := east.ownConf(); err != nil {
			return err
		}
	}
	if err := east.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := east.Exec(ctx, writesTable); err != nil {
		return fmt.Errorf("create the writes table: %w", err)
	}
	if err := west.initStandby(east); err != nil {
		return err
	}
	if !e.Opts.NoDataDirs {
		if err := west.ownConf(); err != nil {
			return err
		}
	}
	if err := west.Start(); err != nil {
		return err
	}
	err = waitFor(startTimeout, "west to stream from east", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var n int
		if err := east.Query(ctx, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", &n); err != nil {
			return err
		}
		if n == 0 {
			return errors.New("no streaming standby yet")
		}
		return nil
	})
	if err != nil || !e.Opts.WestB {
		return err
	}
	westB, err := newPostgresNode(e.Dir, "west-b", "west", siteAddr["west"], 5433)
	if err != nil {
		return err
	}
	e.PG["west-b"] = westB
	if err := westB.initStandby(east); err != nil {
		return err
	}
	if err := westB.ownConf(); err != nil {
		return err
	}
	if err := westB.Start(); err != nil {
		return err
	}
	return waitFor(startTimeout, "west-b to stream from east", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var n int
		if err := east.Query(ctx, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND application_name = 'west-b'", &n); err != nil {
			return err
		}
		if n == 0 {
			return errors.New("west-b not streaming yet")
		}
		return nil
	})
}

var witnessSites = []string{"east", "west", "tiebreak"}

func (e *Env) startWitnesses(bin string) error {
	if err := e.makePKI(bin); err != nil {
		return err
	}
	creds, err := e.clientCreds()
	if err != nil {
		return err
	}
	var voters strings.Builder
	for _, s := range witnessSites {
		fmt.Fprintf(&voters, "  - {name: %s-1, raft_addr: \"%s:%s\", gossip_addr: \"%s:7301\"}\n", s, siteAddr[s], raftPort, siteAddr[s])
	}
	for _, s := range witnessSites {
		name, addr := s+"-1", siteAddr[s]
		dir := filepath.Join(e.Dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		conf := fmt.Sprintf(`cluster: harness
name: %[1]s
site: %[2]s
data_dir: %[3]s/data
raft_addr: %[4]s:%[9]s
gossip_addr: %[4]s:7301
admin_addr: %[4]s:7400
metrics_addr: %[4]s:9400
initial_voters:
%[5]sraft:
  heartbeat_timeout: %[6]s
  election_timeout: %[7]s
  leader_lease_timeout: %[8]s
`, name, s, dir, addr, voters.String(), e.Opts.HeartbeatTimeout, e.Opts.ElectionTimeout, e.Opts.HeartbeatTimeout/2, raftPort)
		if e.Opts.Watchdog > 0 && s == "east" {
			device := filepath.Join(dir, "watchdog")
			dog, err := newStandInWatchdog(device, s, e.Opts.Watchdog, e.PG[s].Kill)
			if err != nil {
				return err
			}
			e.Watchdog = dog
			e.closers = append(e.closers, dog.close)
			conf += fmt.Sprintf("watchdog:\n  device: %s\n  timeout: %s\n", device, e.Opts.Watchdog)
		}
		conf += e.tlsConfig(name)
		cfg := filepath.Join(dir, "witness.yaml")
		if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
			return err
		}
		conn, err := grpc.NewClient(addr+":7400", creds)
		if err != nil {
			return err
		}
		w := &Witness{Name: name, Site: s, Addr: addr, conn: conn, Admin: witnessv1.NewAdminClient(conn),
			Proc: &Process{Name: "witness " + name, Site: s, Log: filepath.Join(e.Dir, name+".log"), dumpOnHang: true,
				argv: []string{filepath.Join(bin, "witnessd"), "agent", "-config", cfg}}}
		if err := w.Proc.Start(); err != nil {
			return err
		}
		e.Witnesses = append(e.Witnesses, w)
	}
	_, err = e.WaitLeader(startTimeout, nil)
	return err
}

// groupYAML is the protected service: east first, then west; HTTP and
// PostgreSQL probes; DNS and PostgreSQL actions.
func (e *Env) groupYAML() string {
	o := e.Opts
	dataDirs := ""
	if !o.NoDataDirs {
		dataDirs = fmt.Sprintf("        data_dir: {east: %s, west: %s}\n", e.PG["east"].Data, e.PG["west"].Data)
	}
	if o.Reinstate != "" {
		dataDirs += fmt.Sprintf("        reinstate: %s\n", o.Reinstate)
	}
	maxLag := ""
	if o.MaxLag != "" {
		maxLag = "      max_lag: " + o.MaxLag + "\n"
	}
	if o.SwitchoverTimeout > 0 {
		maxLag += fmt.Sprintf("      switchover_timeout: %s\n", o.SwitchoverTimeout)
	}
	probes := func(site string) string {
		out := fmt.Sprintf(`          - {kind: http, url: "http://%[1]s:%[2]s/health", interval: %[3]s, fail_threshold: %[4]d}
          - {kind: postgres, dsn: "%[5]s", interval: %[3]s, fail_threshold: %[4]d}
`, siteAddr[site], ServicePort, o.ProbeInterval, o.FailThreshold, e.PG[site].DSN())
		if !o.WestB {
			return out
		}
		// Each node's probe names it.
		out = strings.Replace(out, "{kind: postgres,", "{kind: postgres, node: "+site+",", 1)
		if site == "west" {
			out += fmt.Sprintf("          - {kind: postgres, node: west-b, interval: %s, fail_threshold: %d}\n", o.ProbeInterval, o.FailThreshold)
		}
		return out
	}
	pgNodes := fmt.Sprintf("        dsn:\n          east: \"%s\"\n          west: \"%s\"\n", e.PG["east"].DSN(), e.PG["west"].DSN())
	if o.WestB {
		dir := func(site string) string {
			if o.NoDataDirs {
				return ""
			}
			return ", data_dir: " + e.PG[site].Data
		}
		pgNodes = fmt.Sprintf("        nodes:\n          - {name: east, site: east, dsn: \"%s\"%s}\n          - {name: west, site: west, dsn: \"%s\"%s}\n          - {name: west-b, site: west, dsn: \"%s\"}\n",
			e.PG["east"].DSN(), dir("east"), e.PG["west"].DSN(), dir("west"), e.PG["west-b"].DSN())
		dataDirs = strings.Replace(dataDirs, fmt.Sprintf("        data_dir: {east: %s, west: %s}\n", e.PG["east"].Data, e.PG["west"].Data), "", 1)
	}
	return fmt.Sprintf(`groups:
  - name: %[1]s
    sites:
      - name: east
        probes:
%[2]s      - name: west
        probes:
%[3]s    policy:
      mode: auto
      failover_after: %[4]s
      fence_after: %[5]s
%[18]s    actions:
      dns:
        server: "%[6]s:53"
        zone: %[7]s
        tsig: {name: %[8]s, algorithm: hmac-sha256, secret_file: %[9]s}
        records:
          - {name: %[10]s, type: A, ttl: %[11]d, values: {east: %[12]s, west: %[13]s}}
      postgres:
%[14]s        roles: [%[15]s, %[16]s]
%[17]s`, Group, probes("east"), probes("west"), o.FailoverAfter, o.FenceAfter,
		siteAddr["dns"], Zone, TSIGName, e.named.secretFile, RecordName, o.TTL, recordValue["east"], recordValue["west"],
		pgNodes, AppRole, BypassRole, dataDirs, maxLag)
}

func (e *Env) applyGroup() error {
	// On a loaded machine the first leader may step down right after its
	// election: the apply is then refused as Unavailable, and is asked
	// again of whoever leads next.
	err := waitFor(startTimeout, "the group applied", func() error {
		w, err := e.WaitLeader(startTimeout, nil)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err = w.Admin.ApplyGroups(ctx, &witnessv1.ApplyGroupsRequest{Document: []byte(e.groupYAML()), By: "harness"})
		if status.Code(err) == codes.Unavailable {
			return err
		}
		if err != nil {
			return backoffStop{err}
		}
		return nil
	})
	var stop backoffStop
	if errors.As(err, &stop) {
		err = stop.err
	}
	if err != nil {
		return fmt.Errorf("apply the group: %w", err)
	}
	return e.WaitStable(startTimeout, "east", 0)
}

// backoffStop ends a waitFor at once with err.
type backoffStop struct{ err error }

func (b backoffStop) Error() string { return b.err.Error() }

// Close stops and removes everything: processes, the network (and the
// faults in it), the directory unless kept. Every part is removed even
// when an earlier one fails; the errors are joined. It is safe to call
// more than once and on a half-built environment.
func (e *Env) Close() error {
	var errs []error
	if e.DNS != nil {
		e.DNS.stop()
	}
	if e.Writes != nil {
		e.Writes.stop()
	}
	for _, c := range slices.Backward(e.closers) {
		if err := c(); err != nil {
			errs = append(errs, err)
		}
	}
	e.closers = nil
	for _, w := range e.Witnesses {
		began := time.Now()
		if err := w.Proc.Terminate(syscall.SIGTERM, stopTimeout); err != nil {
			errs = append(errs, err)
		}
		e.Opts.Logf("%s stopped in %s", w.Name, time.Since(began).Round(time.Millisecond))
		w.conn.Close()
	}
	for _, p := range e.PG {
		if err := p.proc.Terminate(syscall.SIGQUIT, stopTimeout); err != nil {
			errs = append(errs, err)
		}
		if err := p.stopExternal(); err != nil {
			errs = append(errs, err)
		}
	}
	if e.named != nil {
		if err := e.named.proc.Terminate(syscall.SIGTERM, stopTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range e.services {
		s.close()
	}
	e.services = nil
	if e.net != nil {
		if err := e.net.down(); err != nil {
			errs = append(errs, err)
		}
		e.net = nil
	}
	if e.ownDir && e.Dir != "" {
		if err := os.RemoveAll(e.Dir); err != nil {
			errs = append(errs, err)
		}
		e.Dir = ""
	}
	if e.lock != nil {
		e.lock.Close()
		e.lock = nil
	}
	return errors.Join(errs...)
}

// KeepDir stops Close from removing the environment's directory, for a
// failed test's logs; it returns the directory.
func (e *Env) KeepDir() string {
	e.ownDir = false
	return e.Dir
}

// Logs returns the tail of every process's log, for a failed test.
func (e *Env) Logs(n int64) string {
	var b strings.Builder
	procs := []*Process{}
	for _, w := range e.Witnesses {
		procs = append(procs, w.Proc)
	}
	names := []string{}
	for s := range e.PG {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		procs = append(procs, e.PG[s].proc)
	}
	if e.named != nil {
		procs = append(procs, e.named.proc)
	}
	for _, p := range procs {
		fmt.Fprintf(&b, "----- %s (%s)\n%s\n", p.Name, p.Log, p.Tail(n))
	}
	return b.String()
}

// waitFor calls f every 50 ms until it returns nil or timeout passes, or
// a backoffStop.
func waitFor(timeout time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		var stop backoffStop
		if errors.As(err, &stop) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting %s for %s: %w", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// NamedLog returns BIND's log.
func (e *Env) NamedLog() string { return e.named.proc.Tail(1 << 20) }
