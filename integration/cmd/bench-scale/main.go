// Command bench-scale measures Witness with many groups: three witnessd
// processes on loopback, a real BIND 9 (named) with one dynamic zone, and
// N groups, each with a TCP probe against its site's service (listeners
// this tool owns) and one DNS record. It applies the groups, waits until
// every group is stable at east, samples each witness's RSS and idle CPU,
// reads each witness's /metrics (series, bytes, time of one scrape),
// then cuts east (closes east's listeners) and measures the failover:
// how many Raft entries carried the decisions and how far apart they
// were, when BIND answered the west value for the first, half and every
// record, and when every group was stable again.
//
// Run with `make bench-scale N=1000` (needs BIND 9: make deps). The
// machine's load average is printed: on a shared machine, compare medians
// of several runs.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/dns"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

const zone = "scale.test."

var sites = []string{"east", "west", "tiebreak"}

var value = map[string]string{"east": "192.0.2.10", "west": "198.51.100.10"}

type options struct {
	n             int
	distinct      bool
	failoverAfter time.Duration
	ttl           int
	idle          time.Duration
	timeout       time.Duration
	dir           string
	keep          bool
	profile       string
	profileFor    time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 100, "number of groups")
	flag.BoolVar(&o.distinct, "distinct", false, "give every group its own service listener per site (default: one listener per site, the same probe target for every group)")
	flag.DurationVar(&o.failoverAfter, "failover-after", 5*time.Second, "policy.failover_after of every group")
	flag.IntVar(&o.ttl, "ttl", 1, "TTL of every record, seconds")
	flag.DurationVar(&o.idle, "idle", 10*time.Second, "how long to sample idle CPU")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "bound of each wait (stable, failover)")
	flag.StringVar(&o.dir, "dir", "", "working directory (default: a new temporary one)")
	flag.BoolVar(&o.keep, "keep", false, "keep the working directory (logs)")
	flag.StringVar(&o.profile, "profile", "", "write Go profiles to this `directory`: the leader's CPU from the apply and from the cut (each for -profile-for), every witness's heap once stable and after the failover")
	flag.DurationVar(&o.profileFor, "profile-for", 30*time.Second, "length of each CPU profile")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(1)
	}
}

type env struct {
	o        options
	dir      string
	dnsAddr  string
	secret   string
	procs    map[string]*exec.Cmd // witness name → process; "named"
	admin    map[string]witnessv1.AdminClient
	names    []string          // witness names
	pprof    map[string]string // witness name → pprof address
	metrics  map[string]string // witness name → metrics address
	services map[string][]net.Listener
	svcAddr  map[string][]string
	wg       sync.WaitGroup
	listFrom string // the witness groups asks first: the leader when it last looked
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, a...)...)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func run(o options) error {
	e := &env{o: o, procs: map[string]*exec.Cmd{}, admin: map[string]witnessv1.AdminClient{}, services: map[string][]net.Listener{}, svcAddr: map[string][]string{}, pprof: map[string]string{}, metrics: map[string]string{}}
	var err error
	e.dir = o.dir
	if e.dir == "" {
		if e.dir, err = os.MkdirTemp("", "bench-scale-"); err != nil {
			return err
		}
	}
	defer func() {
		e.close()
		if !o.keep && o.dir == "" {
			os.RemoveAll(e.dir)
		} else {
			logf("logs in %s", e.dir)
		}
	}()
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	logf("building witnessd")
	if err := build(e.dir); err != nil {
		return err
	}
	if err := e.startNamed(); err != nil {
		return err
	}
	if err := e.startServices(); err != nil {
		return err
	}
	if err := e.startWitnesses(); err != nil {
		return err
	}
	leader, err := e.waitLeader()
	if err != nil {
		return err
	}
	logf("leader %s; applying %d groups", leader, o.n)

	res := results{n: o.n, loadBefore: strings.TrimSpace(string(load))}
	doc := e.groupsYAML()
	start := time.Now()
	profiled := e.cpuProfile(leader, "create")
	if err := e.apply(doc); err != nil {
		return err
	}
	res.apply = time.Since(start)
	logf("applied in %s; waiting for every group stable at east", res.apply.Round(time.Millisecond))
	if err := e.waitStable("east", start, nil); err != nil {
		return err
	}
	res.stable = time.Since(start)
	e.heapProfiles("stable")
	for _, ch := range profiled { // not while idle CPU is sampled
		<-ch
	}
	profiled = nil
	logf("all stable in %s; sampling idle for %s", res.stable.Round(time.Millisecond), o.idle)
	res.idle, err = e.sampleIdle(o.idle)
	if err != nil {
		return err
	}
	res.statusTime, err = e.statusTime()
	if err != nil {
		return err
	}
	if res.scrapes, err = e.scrapes(); err != nil {
		return err
	}

	before, err := e.groups()
	if err != nil {
		return err
	}
	tokens := map[string]uint64{}
	for _, g := range before {
		tokens[g.GetSpec().GetName()] = g.GetStatus().GetToken()
	}
	applied0, _ := e.appliedIndex()
	logf("cutting east")
	cut := time.Now()
	e.cutEast()
	if l, err := e.leader(); err == nil {
		profiled = append(profiled, e.cpuProfile(l, "failover")...)
	}
	dnsTimes := make(chan []time.Duration, 1)
	stop := make(chan struct{})
	go func() { dnsTimes <- e.watchDNS(cut, stop) }()
	err = e.waitStable("west", cut, tokens)
	res.failover = time.Since(cut)
	close(stop)
	res.dns = <-dnsTimes
	if err != nil {
		return err
	}
	applied1, _ := e.appliedIndex()
	res.raftEntries = applied1 - applied0
	after, err := e.groups()
	if err != nil {
		return err
	}
	res.decisions(after, tokens, cut)
	res.rss, _ = e.rss()
	e.heapProfiles("failover")
	for _, ch := range profiled {
		<-ch
	}
	load, _ = os.ReadFile("/proc/loadavg")
	res.loadAfter = strings.TrimSpace(string(load))
	res.elections = e.elections()
	res.print(e.names)
	return nil
}

// cpuProfile starts a CPU profile of witness name for -profile-for, when
// -profile is set; the channel is closed once it is written.
func (e *env) cpuProfile(name, phase string) []chan struct{} {
	if e.o.profile == "" {
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", e.pprof[name], int(e.o.profileFor.Seconds()))
		if err := fetchTo(url, filepath.Join(e.o.profile, fmt.Sprintf("%s-%s.cpu.pprof", phase, name))); err != nil {
			logf("cpu profile of %s: %v", name, err)
		}
	}()
	return []chan struct{}{done}
}

// heapProfiles writes every witness's heap profile, when -profile is set.
func (e *env) heapProfiles(phase string) {
	if e.o.profile == "" {
		return
	}
	for _, n := range e.names {
		if err := fetchTo(fmt.Sprintf("http://%s/debug/pprof/heap", e.pprof[n]), filepath.Join(e.o.profile, fmt.Sprintf("%s-%s.heap.pprof", phase, n))); err != nil {
			logf("heap profile of %s: %v", n, err)
		}
	}
}

func fetchTo(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

func build(dir string) error {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/witnessd", "./cmd/witnessctl")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build witnessd: %v: %s", err, out)
	}
	return nil
}

func (e *env) startNamed() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	e.dnsAddr = "127.0.0.1:" + strconv.Itoa(port)
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return err
	}
	e.secret = base64.StdEncoding.EncodeToString(raw)
	dir := filepath.Join(e.dir, "named")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "tsig.key"), []byte(e.secret+"\n"), 0o600); err != nil {
		return err
	}
	conf := fmt.Sprintf(`options {
	directory %q;
	pid-file %q;
	listen-on port %d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	allow-query { any; };
	allow-transfer { any; };
	notify no;
	dnssec-validation no;
};
logging {
	channel all { stderr; severity info; print-time yes; print-category yes; };
	category default { all; };
	category update { null; };
	category update-security { all; };
	category queries { null; };
	category xfer-out { null; };
	category lame-servers { null; };
};
controls { };
key "witness" {
	algorithm hmac-sha256;
	secret %q;
};
zone %q {
	type primary;
	file "zone.db";
	allow-update { key "witness"; };
};
`, dir, filepath.Join(dir, "named.pid"), port, e.secret, zone)
	zoneDB := fmt.Sprintf("$TTL 1\n@ IN SOA ns1.%[1]s hostmaster.%[1]s ( 1 60 60 3600 1 )\n@ IN NS ns1.%[1]s\nns1 IN A 127.0.0.1\n", zone)
	if err := os.WriteFile(filepath.Join(dir, "named.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "zone.db"), []byte(zoneDB), 0o644); err != nil {
		return err
	}
	cmd, err := e.spawn("named", "/usr/sbin/named", "-g", "-4", "-c", filepath.Join(dir, "named.conf"))
	if err != nil {
		return err
	}
	e.procs["named"] = cmd
	return waitFor(time.Minute, "named to answer", func() error {
		_, _, err := dns.Resolve(context.Background(), e.dnsAddr, zone, "SOA")
		return err
	})
}

func (e *env) spawn(name string, argv ...string) (*exec.Cmd, error) {
	f, err := os.Create(filepath.Join(e.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	e.wg.Add(1)
	go func() { defer e.wg.Done(); _ = cmd.Wait(); f.Close() }()
	return cmd, nil
}

// startServices opens the sites' services: one listener per site, or one
// per group and site with -distinct. Each accepts and closes.
func (e *env) startServices() error {
	count := 1
	if e.o.distinct {
		count = e.o.n
	}
	for _, s := range []string{"east", "west"} {
		for range count {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			e.services[s] = append(e.services[s], l)
			e.svcAddr[s] = append(e.svcAddr[s], l.Addr().String())
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
	}
	return nil
}

func (e *env) cutEast() {
	for _, l := range e.services["east"] {
		l.Close()
	}
}

func (e *env) startWitnesses() error {
	type ports struct{ raft, gossip, admin, metrics, pprof int }
	ps := map[string]ports{}
	// Every port is held until all are picked: a port closed at once
	// can come back as the next one.
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for _, s := range sites {
		var p [5]int
		for i := range p {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			held = append(held, l)
			p[i] = l.Addr().(*net.TCPAddr).Port
		}
		ps[s] = ports{p[0], p[1], p[2], p[3], p[4]}
	}
	for _, l := range held {
		l.Close()
	}
	held = nil
	var voters strings.Builder
	for _, s := range sites {
		fmt.Fprintf(&voters, "  - {name: %s-1, raft_addr: \"127.0.0.1:%d\", gossip_addr: \"127.0.0.1:%d\"}\n", s, ps[s].raft, ps[s].gossip)
	}
	for _, s := range sites {
		name, p := s+"-1", ps[s]
		dir := filepath.Join(e.dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		// Plaintext on loopback: the benchmark measures failover, not TLS.
		conf := fmt.Sprintf(`cluster: scale
insecure: true
name: %s
site: %s
data_dir: %s/data
raft_addr: 127.0.0.1:%d
gossip_addr: 127.0.0.1:%d
admin_addr: 127.0.0.1:%d
metrics_addr: 127.0.0.1:%d
initial_voters:
%s`, name, s, dir, p.raft, p.gossip, p.admin, p.metrics, voters.String())
		e.metrics[name] = fmt.Sprintf("127.0.0.1:%d", p.metrics)
		if e.o.profile != "" {
			e.pprof[name] = fmt.Sprintf("127.0.0.1:%d", p.pprof)
			conf += fmt.Sprintf("pprof_addr: %s\n", e.pprof[name])
		}
		cfg := filepath.Join(dir, "witness.yaml")
		if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
			return err
		}
		cmd, err := e.spawn(name, filepath.Join(e.dir, "witnessd"), "agent", "-config", cfg)
		if err != nil {
			return err
		}
		conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", p.admin), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
		if err != nil {
			return err
		}
		e.procs[name] = cmd
		e.admin[name] = witnessv1.NewAdminClient(conn)
		e.names = append(e.names, name)
	}
	return nil
}

func (e *env) close() {
	for _, ls := range e.services {
		for _, l := range ls {
			l.Close()
		}
	}
	for _, c := range e.procs {
		if c.Process != nil {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
	}
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		for _, c := range e.procs {
			if c.Process != nil {
				_ = c.Process.Kill()
			}
		}
		<-done
	}
}

func waitFor(timeout time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) leader() (string, error) {
	var errs []error
	for _, n := range e.names {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		st, err := e.admin[n].Status(ctx, &witnessv1.StatusRequest{})
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.GetLeader() == n {
			return n, nil
		}
	}
	return "", fmt.Errorf("no witness says it leads: %w", errors.Join(errs...))
}

func (e *env) waitLeader() (string, error) {
	var l string
	err := waitFor(2*time.Minute, "a leader", func() (err error) { l, err = e.leader(); return err })
	return l, err
}

func (e *env) groupName(i int) string { return fmt.Sprintf("svc-%05d", i) }

func (e *env) groupsYAML() []byte {
	var b strings.Builder
	b.WriteString("groups:\n")
	secret := filepath.Join(e.dir, "named", "tsig.key")
	for i := range e.o.n {
		k := 0
		if e.o.distinct {
			k = i
		}
		name := e.groupName(i)
		fmt.Fprintf(&b, `  - name: %[1]s
    sites:
      - name: east
        probes: [{kind: tcp, address: "%[2]s"}]
      - name: west
        probes: [{kind: tcp, address: "%[3]s"}]
    policy: {mode: auto, failover_after: %[4]s}
    actions:
      dns:
        server: "%[5]s"
        zone: %[6]s
        tsig: {name: witness, algorithm: hmac-sha256, secret_file: %[7]s}
        records:
          - {name: %[1]s.%[6]s, type: A, ttl: %[8]d, values: {east: %[9]s, west: %[10]s}}
`, name, e.svcAddr["east"][k], e.svcAddr["west"][k], e.o.failoverAfter, e.dnsAddr, zone, secret, e.o.ttl, value["east"], value["west"])
	}
	return []byte(b.String())
}

func (e *env) apply(doc []byte) error {
	return waitFor(2*time.Minute, "the groups applied", func() error {
		l, err := e.waitLeader()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		_, err = e.admin[l].ApplyGroups(ctx, &witnessv1.ApplyGroupsRequest{Document: doc, By: "bench-scale"})
		return err
	})
}

// groups lists every group as the leader (or any witness) holds it.
// groups lists the groups, from the witness that led at the last call if
// it still answers: a Status of every witness at each poll (each one 6 MB
// at 10,000 groups) would weigh on the witnesses measured.
func (e *env) groups() ([]*witnessv1.Group, error) {
	order := slices.Clone(e.names)
	if e.listFrom == "" {
		if l, err := e.leader(); err == nil {
			e.listFrom = l
		}
	}
	if e.listFrom != "" {
		order = append([]string{e.listFrom}, order...)
	}
	var errs []error
	for _, n := range order {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := e.admin[n].ListGroups(ctx, &witnessv1.ListGroupsRequest{})
		cancel()
		if err == nil {
			return resp.GetGroups(), nil
		}
		errs = append(errs, err)
		e.listFrom = ""
	}
	return nil, errors.Join(errs...)
}

func (e *env) appliedIndex() (uint64, error) {
	l, err := e.leader()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := e.admin[l].Status(ctx, &witnessv1.StatusRequest{})
	return st.GetAppliedIndex(), err
}

// zoneRecords reads the zone by AXFR: owner → A value, and owner of a
// record → fence token.
func (e *env) zoneRecords() (map[string]string, map[string]uint64, error) {
	m := new(mdns.Msg)
	m.SetAxfr(zone)
	t := &mdns.Transfer{DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second}
	ch, err := t.In(m, e.dnsAddr)
	if err != nil {
		return nil, nil, err
	}
	a, fences := map[string]string{}, map[string]uint64{}
	for env := range ch {
		if env.Error != nil {
			return nil, nil, env.Error
		}
		for _, rr := range env.RR {
			switch r := rr.(type) {
			case *mdns.A:
				a[r.Hdr.Name] = r.A.String()
			case *mdns.TXT:
				name, ok := strings.CutPrefix(r.Hdr.Name, "_witness.")
				if !ok {
					continue
				}
				if f, err := dns.ParseFence(strings.Join(r.Txt, "")); err == nil {
					fences[name] = f.Token
				}
			}
		}
	}
	return a, fences, nil
}

// waitStable waits until every group is active at site (with a token
// above tokens[name] when tokens is given), its plan done, and BIND
// answering site's value with the group's token in the fence.
func (e *env) waitStable(site string, since time.Time, tokens map[string]uint64) error {
	last := time.Now()
	return waitFor(e.o.timeout, "every group stable at "+site, func() error {
		gs, err := e.groups()
		if err != nil {
			return err
		}
		a, fences, err := e.zoneRecords()
		if err != nil {
			return err
		}
		stable := 0
		var first error
		for _, g := range gs {
			st := g.GetStatus()
			name := g.GetSpec().GetName() + "." + zone
			switch {
			case st.GetActiveSite() != site || (tokens != nil && st.GetToken() <= tokens[g.GetSpec().GetName()]):
				err = fmt.Errorf("%s active at %s token %d", g.GetSpec().GetName(), st.GetActiveSite(), st.GetToken())
			case !planDone(g):
				err = fmt.Errorf("%s plan at token %d not done", g.GetSpec().GetName(), st.GetToken())
			case a[name] != value[site] || fences[name] != st.GetToken():
				err = fmt.Errorf("%s: BIND answers %s fence token %d", g.GetSpec().GetName(), a[name], fences[name])
			default:
				stable++
				continue
			}
			if first == nil {
				first = err
			}
		}
		if len(gs) != e.o.n {
			return fmt.Errorf("%d groups of %d", len(gs), e.o.n)
		}
		if time.Since(last) > 5*time.Second {
			logf("  %d/%d stable after %s", stable, e.o.n, time.Since(since).Round(time.Second))
			last = time.Now()
		}
		return first
	})
}

func planDone(g *witnessv1.Group) bool {
	tok := g.GetStatus().GetToken()
	for _, step := range actions.Plan(g) {
		if step == actions.StepFence || step == actions.StepNotify {
			continue
		}
		ok := false
		for _, s := range g.GetStatus().GetSteps() {
			if s.GetToken() == tok && s.GetStep() == step && s.GetOk() {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// watchDNS polls BIND until stop and returns, sorted, when each record
// first answered west's value, measured from cut.
func (e *env) watchDNS(cut time.Time, stop <-chan struct{}) []time.Duration {
	seen := map[string]time.Duration{}
	for {
		a, _, err := e.zoneRecords()
		now := time.Since(cut)
		if err == nil {
			for name, v := range a {
				if _, ok := seen[name]; !ok && v == value["west"] {
					seen[name] = now
				}
			}
		}
		if len(seen) == e.o.n {
			break
		}
		select {
		case <-stop:
		case <-time.After(50 * time.Millisecond):
			continue
		}
		break
	}
	out := make([]time.Duration, 0, len(seen))
	for _, d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

type cpuRSS struct {
	cpu float64 // percent of one core
	rss int64   // bytes
}

func procStat(pid int) (ticks int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st, nil
}

func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, nil
		}
	}
	return 0, errors.New("no VmRSS")
}

func (e *env) sampleIdle(d time.Duration) (map[string]cpuRSS, error) {
	t0 := map[string]int64{}
	for _, n := range e.names {
		t, err := procStat(e.procs[n].Process.Pid)
		if err != nil {
			return nil, err
		}
		t0[n] = t
	}
	start := time.Now()
	time.Sleep(d)
	el := time.Since(start).Seconds()
	out := map[string]cpuRSS{}
	for _, n := range e.names {
		pid := e.procs[n].Process.Pid
		t, err := procStat(pid)
		if err != nil {
			return nil, err
		}
		rss, _ := procRSS(pid)
		out[n] = cpuRSS{cpu: float64(t-t0[n]) / 100 / el * 100, rss: rss}
	}
	return out, nil
}

func (e *env) rss() (map[string]int64, error) {
	out := map[string]int64{}
	for _, n := range e.names {
		r, err := procRSS(e.procs[n].Process.Pid)
		if err != nil {
			return nil, err
		}
		out[n] = r
	}
	return out, nil
}

// elections counts the times a witness became leader, from their logs.
func (e *env) elections() int {
	n := 0
	for _, name := range e.names {
		b, _ := os.ReadFile(filepath.Join(e.dir, name+".log"))
		n += strings.Count(string(b), `msg="became leader"`)
	}
	return n
}

// statusTime is how long `witnessctl status` takes against the leader.
func (e *env) statusTime() (time.Duration, error) {
	l, err := e.leader()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err = e.admin[l].Status(ctx, &witnessv1.StatusRequest{})
	return time.Since(start), err
}

// scrape is one witness's /metrics: its series, its size and how long
// one scrape takes (the median of scrapeRuns).
type scrape struct {
	series int
	bytes  int64
	took   time.Duration
	// mem is the Go runtime's go_memstats_* gauges of the last scrape,
	// by name without the prefix: where the RSS goes.
	mem map[string]float64
}

const scrapeRuns = 5

// scrapes reads every witness's /metrics scrapeRuns times, as Prometheus
// would (no compression, the text format).
func (e *env) scrapes() (map[string]scrape, error) {
	out := map[string]scrape{}
	c := &http.Client{Timeout: time.Minute}
	for _, n := range e.names {
		var s scrape
		var took []time.Duration
		for range scrapeRuns {
			start := time.Now()
			resp, err := c.Get("http://" + e.metrics[n] + "/metrics")
			if err != nil {
				return nil, err
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return nil, err
			}
			if resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("scrape %s: %s", n, resp.Status)
			}
			took = append(took, time.Since(start))
			s.bytes, s.series, s.mem = int64(len(b)), 0, map[string]float64{}
			for line := range strings.SplitSeq(string(b), "\n") {
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				s.series++
				if rest, ok := strings.CutPrefix(line, "go_memstats_"); ok {
					if name, val, ok := strings.Cut(rest, " "); ok {
						if v, err := strconv.ParseFloat(val, 64); err == nil {
							s.mem[name] = v
						}
					}
				}
			}
		}
		slices.Sort(took)
		s.took = took[len(took)/2]
		out[n] = s
	}
	return out, nil
}

type results struct {
	n                     int
	loadBefore, loadAfter string
	apply, stable         time.Duration
	idle                  map[string]cpuRSS
	statusTime            time.Duration
	scrapes               map[string]scrape
	failover              time.Duration
	dns                   []time.Duration
	raftEntries           uint64
	elections             int
	decisionEntries       int
	firstDecision         time.Duration
	decisionSpread        time.Duration
	rss                   map[string]int64
}

// decisions groups the failover transitions after tokens by their
// command's time: the moves of one Raft entry share it.
func (r *results) decisions(gs []*witnessv1.Group, tokens map[string]uint64, cut time.Time) {
	ats := map[int64]bool{}
	var lo, hi int64
	for _, g := range gs {
		for _, t := range g.GetStatus().GetHistory() {
			if t.GetToken() <= tokens[g.GetSpec().GetName()] || t.GetPhase() != "" {
				continue
			}
			at := t.GetAtUnixNano()
			ats[at] = true
			if lo == 0 || at < lo {
				lo = at
			}
			if at > hi {
				hi = at
			}
		}
	}
	r.decisionEntries = len(ats)
	r.firstDecision = time.Unix(0, lo).Sub(cut)
	r.decisionSpread = time.Duration(hi - lo)
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(float64(len(ds))*p+0.5) - 1
	i = max(0, min(i, len(ds)-1))
	return ds[i]
}

func (r *results) print(names []string) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }
	fmt.Printf("bench-scale N=%d (load average before: %s; after: %s)\n", r.n, r.loadBefore, r.loadAfter)
	fmt.Printf("  apply (ApplyGroups call)       %s\n", ms(r.apply))
	fmt.Printf("  apply → all stable             %s\n", ms(r.stable))
	fmt.Printf("  witnessctl status (leader)     %s\n", ms(r.statusTime))
	for _, n := range names {
		fmt.Printf("  idle %-12s              CPU %5.1f%%  RSS %4d MiB (after failover %d MiB)\n", n, r.idle[n].cpu, r.idle[n].rss>>20, r.rss[n]>>20)
	}
	for _, n := range names {
		s := r.scrapes[n]
		fmt.Printf("  /metrics %-12s          %d series, %.1f MiB, scrape %s (%.1f series and %d bytes per group)\n",
			n, s.series, float64(s.bytes)/(1<<20), s.took.Round(time.Millisecond), float64(s.series)/float64(r.n), s.bytes/int64(r.n))
	}
	for _, n := range names {
		m := r.scrapes[n].mem
		mib := func(k string) float64 { return m[k] / (1 << 20) }
		fmt.Printf("  Go memory %-12s         heap in use %.0f MiB, free in heap %.0f MiB (%.0f returned), next GC at %.0f MiB, stacks %.0f MiB, from the OS %.0f MiB\n",
			n, mib("heap_inuse_bytes"), mib("heap_idle_bytes"), mib("heap_released_bytes"), mib("next_gc_bytes"), mib("stack_inuse_bytes"), mib("sys_bytes"))
	}
	fmt.Printf("  cut → all stable at west       %s\n", ms(r.failover))
	fmt.Printf("  leaders elected in the run     %d (1: the leader was never lost)\n", r.elections)
	fmt.Printf("  decisions: %d Raft entries, first at cut+%s, spread %s (Raft entries in all after the cut: %d)\n",
		r.decisionEntries, ms(r.firstDecision), ms(r.decisionSpread), r.raftEntries)
	fmt.Printf("  DNS at west after the cut: first %s / 50%% %s / 100%% %s (%d of %d records)\n",
		ms(pct(r.dns, 0)), ms(pct(r.dns, 0.5)), ms(pct(r.dns, 1)), len(r.dns), r.n)
	if len(r.dns) > 0 {
		fmt.Printf("  DNS after the first decision:  first %s / 50%% %s / 100%% %s\n",
			ms(pct(r.dns, 0)-r.firstDecision), ms(pct(r.dns, 0.5)-r.firstDecision), ms(pct(r.dns, 1)-r.firstDecision))
	}
}
