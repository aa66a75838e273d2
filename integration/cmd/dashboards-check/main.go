// Command dashboards-check proves the Grafana dashboards and the alert rules
// of deploy/ against a real Prometheus scraping a real three-witness
// cluster. It starts `witnessd dev` (three witnesses, each with its own
// /metrics, an embedded DNS server and two simulated sites) and Debian's
// prometheus on 127.0.0.1 with free ports and a temporary data directory,
// loads deploy/prometheus/alerts.yml into it, forces a failover (site east
// down), waits until it has settled, and then:
//
//   - runs `promtool check metrics` on every witness's /metrics;
//   - sends every dashboard panel's, variable's and annotation's query
//     (variables substituted) to Prometheus's HTTP API, and fails on an
//     error or an empty result;
//   - sends every alert rule's and annotation's expression with its
//     comparisons in bool form (a healthy alert's expression is empty by
//     design; in bool form it still returns every series it compares, and
//     none if it reads a metric no longer exported);
//   - checks that Prometheus loaded every rule and that WitnessFailover
//     fires.
//
// It prints one line per query with its series count, and kills what it
// started on every exit path. Run it with `make dashboards-check`.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sitewitness/witness/deploy"
)

func main() {
	witnessd := flag.String("witnessd", "bin/witnessd", "the witnessd binary to run as `witnessd dev`")
	prometheus := flag.String("prometheus", "prometheus", "the prometheus binary")
	promtool := flag.String("promtool", "promtool", "the promtool binary")
	alerts := flag.String("alerts", "deploy/prometheus/alerts.yml", "the alert rules to load")
	verbose := flag.Bool("v", false, "show witnessd's and prometheus's output")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, config{witnessd: *witnessd, prometheus: *prometheus, promtool: *promtool, alerts: *alerts, verbose: *verbose})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dashboards-check:", err)
		os.Exit(1)
	}
}

type config struct {
	witnessd, prometheus, promtool, alerts string
	verbose                                bool
}

func run(ctx context.Context, cfg config) (err error) {
	for _, bin := range []string{cfg.witnessd, cfg.prometheus, cfg.promtool} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s: %w (Debian package prometheus: make deps; witnessd: make build)", bin, err)
		}
	}
	dir, err := os.MkdirTemp("", "dashboards-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	addrs, err := freeAddrs(18)
	if err != nil {
		return err
	}
	admin, metrics, raft, gossip := addrs[0:3], addrs[3:6], addrs[6:9], addrs[9:12]
	dnsAddr, eastAddr, westAddr, promAddr := addrs[12], addrs[13], addrs[14], addrs[15]

	dev, err := start(cfg.verbose, cfg.witnessd, "dev", "-data-dir", filepath.Join(dir, "witness"),
		"-admin-addrs", strings.Join(admin, ","), "-metrics-addrs", strings.Join(metrics, ","),
		"-raft-addrs", strings.Join(raft, ","), "-gossip-addrs", strings.Join(gossip, ","),
		"-dns-addr", dnsAddr, "-east-addr", eastAddr, "-west-addr", westAddr,
		"-log-level", "warn")
	if err != nil {
		return err
	}
	defer dev.kill()
	defer func() {
		if err != nil {
			dev.tell("witnessd dev")
		}
	}()

	rules, err := os.ReadFile(cfg.alerts)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), rules, 0o600); err != nil {
		return err
	}
	targets, _ := json.Marshal(metrics)
	promCfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: witness
    static_configs:
      - targets: %s
`, targets)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(promCfg), 0o600); err != nil {
		return err
	}
	prom, err := start(cfg.verbose, cfg.prometheus, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)
	if err != nil {
		return err
	}
	defer prom.kill()
	defer func() {
		if err != nil {
			prom.tell("prometheus")
		}
	}()
	api := &promAPI{base: "http://" + promAddr, procs: []*process{dev, prom}}

	step := func(what string) { fmt.Printf("# %s %s\n", time.Now().UTC().Format("15:04:05"), what) }
	step(fmt.Sprintf("witnessd dev (metrics %s) and prometheus %s started", strings.Join(metrics, " "), promAddr))
	if err := waitFor(ctx, 60*time.Second, "prometheus scraping the three witnesses", func() (bool, error) {
		n, err := api.value(`sum(up{job="witness"})`)
		return n == 3, err
	}); err != nil {
		return err
	}
	if err := waitFor(ctx, 60*time.Second, "group app healthy at east", func() (bool, error) {
		n, err := api.value(`count(witness_group_decision_state{group="app",state="healthy"} and on (instance) witness_raft_leader == 1)`)
		return n == 1, err
	}); err != nil {
		return err
	}
	step("cluster healthy; taking site east down")
	if err := post("http://" + eastAddr + "/down"); err != nil {
		return err
	}
	if err := waitFor(ctx, 60*time.Second, "failover to west settled", func() (bool, error) {
		n, err := api.value(`max(witness_group_active_site{group="app",site="west"}) + sum(witness_transition_settle_seconds_count{kind="failover"})`)
		return n == 2, err
	}); err != nil {
		return err
	}
	step("failed over to west and settled; letting rate windows fill")
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
	}

	var failed []string
	for _, m := range metrics {
		if err := checkMetrics(cfg.promtool, "http://"+m+"/metrics"); err != nil {
			failed = append(failed, "promtool check metrics "+m)
			fmt.Printf("FAIL promtool check metrics %s: %v\n", m, err)
		} else {
			fmt.Printf("ok   promtool check metrics %s\n", m)
		}
	}
	qs, err := deploy.Queries()
	if err != nil {
		return err
	}
	for _, q := range qs {
		expr := deploy.Substitute(q.Expr)
		if q.Kind == deploy.KindAlert || q.Kind == deploy.KindAnnotation {
			expr = deploy.WithoutThreshold(expr)
		}
		n, err := api.count(expr)
		switch {
		case err != nil:
			failed = append(failed, q.Source)
			fmt.Printf("FAIL %-4s %s: %v\n     %s\n", "", q.Source, err, expr)
		case n == 0:
			failed = append(failed, q.Source)
			fmt.Printf("FAIL %4d series  %s: empty\n     %s\n", n, q.Source, expr)
		default:
			fmt.Printf("ok   %4d series  %s\n", n, q.Source)
		}
	}

	want, err := deploy.AlertRules()
	if err != nil {
		return err
	}
	loaded, err := api.ruleCount()
	if err != nil || loaded != len(want) {
		failed = append(failed, "rules loaded")
		fmt.Printf("FAIL prometheus loaded %d alert rules, want %d (%v)\n", loaded, len(want), err)
	} else {
		fmt.Printf("ok   prometheus loaded %d alert rules\n", loaded)
	}
	if err := waitFor(ctx, 20*time.Second, "WitnessFailover firing", func() (bool, error) {
		n, err := api.count(`ALERTS{alertname="WitnessFailover",alertstate="firing",from_site="east",to_site="west"}`)
		return n == 1, err
	}); err != nil {
		failed = append(failed, "WitnessFailover firing")
		fmt.Printf("FAIL %v\n", err)
	} else {
		fmt.Println("ok   alert WitnessFailover firing for east→west")
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d checks failed: %s", len(failed), strings.Join(failed, "; "))
	}
	fmt.Printf("# %d queries, every one with series\n", len(qs))
	return nil
}

// process is a child started in its own process group, so that killing it
// takes whatever it started too.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  *tail
}

func start(verbose bool, name string, args ...string) (*process, error) {
	cmd := exec.Command(name, args...)
	p := &process{cmd: cmd, done: make(chan struct{}), out: &tail{}}
	var out io.Writer = p.out
	if verbose {
		out = io.MultiWriter(p.out, os.Stderr)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tell prints the last of the process's output.
func (p *process) tell(name string) {
	fmt.Fprintf(os.Stderr, "--- last output of %s:\n%s\n", name, p.out.String())
}

// tail keeps the last 8 KiB written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > 8<<10 {
		t.buf = t.buf[len(t.buf)-8<<10:]
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// kill stops the process group: SIGTERM, then SIGKILL after 5 seconds.
func (p *process) kill() {
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// freeAddrs returns n distinct 127.0.0.1 addresses free for TCP and UDP.
func freeAddrs(n int) ([]string, error) {
	var out []string
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, l)
		u, err := net.ListenPacket("udp", l.Addr().String())
		if err != nil {
			continue
		}
		held = append(held, u)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

func waitFor(ctx context.Context, limit time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if errors.Is(err, errExited) {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s (last error: %v)", limit, what, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func post(u string) error {
	resp, err := http.Post(u, "text/plain", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s", u, resp.Status)
	}
	return nil
}

func checkMetrics(promtool, u string) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(body), &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

// errExited: a process the check started has ended before the check.
var errExited = errors.New("exited")

type promAPI struct {
	base  string
	procs []*process // a query fails at once when one of them has ended
}

type queryResponse struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	} `json:"data"`
}

func (a *promAPI) query(expr string) (*queryResponse, error) {
	for _, p := range a.procs {
		if p.exited() {
			return nil, fmt.Errorf("%s: %w: %v", p.cmd.Path, errExited, p.cmd.ProcessState)
		}
	}
	resp, err := http.PostForm(a.base+"/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r queryResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode answer (%s): %w", resp.Status, err)
	}
	if r.Status != "success" {
		return nil, errors.New(r.Error)
	}
	return &r, nil
}

// count is the number of series (or 1 for a scalar) expr returns.
func (a *promAPI) count(expr string) (int, error) {
	r, err := a.query(expr)
	if err != nil {
		return 0, err
	}
	if r.Data.ResultType == "scalar" {
		return 1, nil
	}
	return len(r.Data.Result), nil
}

// value is the value of the first series expr returns, 0 if none.
func (a *promAPI) value(expr string) (float64, error) {
	r, err := a.query(expr)
	if err != nil || len(r.Data.Result) == 0 {
		return 0, err
	}
	var s struct {
		Value [2]any `json:"value"`
	}
	if err := json.Unmarshal(r.Data.Result[0], &s); err != nil {
		return 0, err
	}
	str, _ := s.Value[1].(string)
	var v float64
	_, err = fmt.Sscan(str, &v)
	return v, err
}

func (a *promAPI) ruleCount() (int, error) {
	resp, err := http.Get(a.base + "/api/v1/rules?type=alert")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Groups []struct {
				Rules []json.RawMessage `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	n := 0
	for _, g := range r.Data.Groups {
		n += len(g.Rules)
	}
	return n, nil
}
