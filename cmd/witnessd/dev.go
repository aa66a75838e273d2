package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sitewitness/witness/actions/dns/zoneserver"
	"github.com/sitewitness/witness/cluster"
	"github.com/sitewitness/witness/cmd/internal/buildinfo"
	"github.com/sitewitness/witness/config"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

const devZone = "example.test."

type devFlags struct {
	dataDir                      string
	admin, metrics, raft, gossip string
	dnsAddr, eastAddr, westAddr  string
	logLevel                     string
	failoverAfter                time.Duration
}

func dev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f devFlags
	fs := flag.NewFlagSet("witnessd dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.dataDir, "data-dir", "", "keep the witnesses' data here (default: a temporary directory removed on exit)")
	fs.StringVar(&f.admin, "admin-addrs", "127.0.0.1:7400,127.0.0.1:7401,127.0.0.1:7402", "admin gRPC addresses of the three witnesses")
	fs.StringVar(&f.metrics, "metrics-addrs", "127.0.0.1:9400,127.0.0.1:9401,127.0.0.1:9402", "metrics HTTP addresses of the three witnesses")
	fs.StringVar(&f.raft, "raft-addrs", "127.0.0.1:7300,127.0.0.1:7301,127.0.0.1:7302", "Raft addresses of the three witnesses")
	fs.StringVar(&f.gossip, "gossip-addrs", "127.0.0.1:7310,127.0.0.1:7311,127.0.0.1:7312", "gossip addresses of the three witnesses")
	fs.StringVar(&f.dnsAddr, "dns-addr", "127.0.0.1:8053", "embedded DNS server for zone example.test. (UDP and TCP)")
	fs.StringVar(&f.eastAddr, "east-addr", "127.0.0.1:8081", "simulated service at site east")
	fs.StringVar(&f.westAddr, "west-addr", "127.0.0.1:8082", "simulated service at site west")
	fs.StringVar(&f.logLevel, "log-level", "warn", "debug, info, warn or error")
	fs.DurationVar(&f.failoverAfter, "failover-after", 5*time.Second, "the demo group's failover_after")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: witnessd dev [flags]\n\nRuns a self-contained Witness: three witnesses (sites east, west, tiebreak),\nan authoritative DNS server for example.test. that takes TSIG-signed updates,\nand two simulated site services, with a demo group \"app\".\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	log := newLogger(stderr, f.logLevel)
	log.Warn("witnessd dev runs without TLS: its admin API, Raft and gossip are plaintext and open to anyone on this host; use witnessd agent with tls for anything real")

	dir := f.dataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "witness-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}

	keyFile := filepath.Join(dir, "tsig.key")
	secret, err := devSecret(keyFile)
	if err != nil {
		return err
	}
	dnsSrv, err := startDevDNS(f.dnsAddr, secret, log)
	if err != nil {
		return err
	}
	defer dnsSrv.Close()

	east, err := startSiteService(f.eastAddr, "east")
	if err != nil {
		return err
	}
	defer east.Close()
	west, err := startSiteService(f.westAddr, "west")
	if err != nil {
		return err
	}
	defer west.Close()

	nodes, err := startDevCluster(ctx, f, dir, log)
	for _, n := range nodes {
		defer n.Close()
	}
	if err != nil {
		return err
	}
	if err := applyDevGroup(ctx, nodes, f, keyFile); err != nil {
		return err
	}
	printGuide(stdout, f)
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nstopping")
	return nil
}

func split3(flagName, s string) ([]string, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return nil, fmt.Errorf("-%s wants three comma-separated addresses, got %q", flagName, s)
	}
	return parts, nil
}

func startDevCluster(ctx context.Context, f devFlags, dir string, log *slog.Logger) ([]*cluster.Node, error) {
	admin, err := split3("admin-addrs", f.admin)
	if err != nil {
		return nil, err
	}
	metrics, err := split3("metrics-addrs", f.metrics)
	if err != nil {
		return nil, err
	}
	raftAddrs, err := split3("raft-addrs", f.raft)
	if err != nil {
		return nil, err
	}
	gossipAddrs, err := split3("gossip-addrs", f.gossip)
	if err != nil {
		return nil, err
	}
	sites := []string{"east", "west", "tiebreak"}
	var voters []config.Voter
	for i, site := range sites {
		voters = append(voters, config.Voter{Name: site + "-1", RaftAddr: raftAddrs[i], GossipAddr: gossipAddrs[i]})
	}
	var nodes []*cluster.Node
	for i, site := range sites {
		c := config.Default()
		c.Cluster = "dev"
		c.Name, c.Site = site+"-1", site
		c.DataDir = filepath.Join(dir, c.Name)
		c.RaftAddr, c.GossipAddr, c.AdminAddr, c.MetricsAddr = raftAddrs[i], gossipAddrs[i], admin[i], metrics[i]
		c.InitialVoters = voters
		c.MetricsGroupObservations, c.MetricsGroupDetail = true, true
		c.Raft.HeartbeatTimeout = config.Duration(500 * time.Millisecond)
		c.Raft.ElectionTimeout = config.Duration(500 * time.Millisecond)
		c.Raft.LeaderLeaseTimeout = config.Duration(250 * time.Millisecond)
		c.Gossip.ProbeInterval = config.Duration(250 * time.Millisecond)
		// Three witnesses share one host and nothing real to protect.
		c.Watchdog = &config.Watchdog{Disabled: true}
		// A demo on loopback: plaintext, and the log says so.
		c.Insecure = true
		reg := prometheus.NewRegistry()
		reg.MustRegister(cluster.NewBuildInfoCollector(buildinfo.String()))
		n, err := cluster.Start(ctx, cluster.Options{Config: c, Logger: log, Registerer: reg, Gatherer: reg, OnLeader: leaderLoop(log)})
		if err != nil {
			return nodes, fmt.Errorf("start witness %s: %w", c.Name, err)
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// devGroup is the demo group's spec: record app.example.test. follows the
// active site, probed through the simulated services.
func devGroup(f devFlags, dnsAddr, keyFile string) string {
	return fmt.Sprintf(`groups:
  - name: app
    sites:
      - name: east
        probes: [{kind: http, url: "http://%s/health", interval: 1s, timeout: 500ms}]
      - name: west
        probes: [{kind: http, url: "http://%s/health", interval: 1s, timeout: 500ms}]
    policy:
      failover_after: %s
    actions:
      dns:
        server: "%s"
        zone: example.test.
        tsig: {name: witness-dev, secret_file: "%s"}
        records:
          - name: app.example.test.
            type: A
            ttl: 5
            values: {east: 192.0.2.10, west: 198.51.100.10}
`, f.eastAddr, f.westAddr, f.failoverAfter, dnsAddr, keyFile)
}

func applyDevGroup(ctx context.Context, nodes []*cluster.Node, f devFlags, keyFile string) error {
	specs, err := config.ParseGroups([]byte(devGroup(f, f.dnsAddr, keyFile)))
	if err != nil {
		return fmt.Errorf("demo group: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		for _, n := range nodes {
			if !n.IsLeader() {
				continue
			}
			res, err := n.Apply(wctx, &witnessv1.PutGroupsCommand{Specs: specs, AtUnixNano: time.Now().UnixNano(), By: "witnessd dev"})
			if err == nil && res.Err == nil {
				return nil
			}
			var nl *cluster.NotLeaderError
			if err != nil && !errors.As(err, &nl) {
				return fmt.Errorf("apply demo group: %w", err)
			}
			if res.Err != nil {
				return fmt.Errorf("apply demo group: %w", res.Err)
			}
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("apply demo group: %w", cluster.ErrNoLeader)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// devSecret returns the TSIG secret kept in file, making one if needed.
func devSecret(file string) (string, error) {
	if b, err := os.ReadFile(file); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	secret := base64.StdEncoding.EncodeToString(raw)
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write TSIG key: %w", err)
	}
	return secret, nil
}

func startDevDNS(addr, secret string, log *slog.Logger) (*zoneserver.Server, error) {
	a, err := mdns.NewRR("app.example.test. 5 IN A 192.0.2.10")
	if err != nil {
		return nil, err
	}
	srv, err := zoneserver.New(zoneserver.Config{
		Zone:    devZone,
		Keys:    map[string]string{"witness-dev.": secret},
		Records: []mdns.RR{a},
		Logger:  log.With("component", "dev-dns"),
	})
	if err != nil {
		return nil, err
	}
	if err := srv.Start(addr); err != nil {
		return nil, fmt.Errorf("dns server on %s: %w", addr, err)
	}
	return srv, nil
}

// siteService simulates one site's service: GET /health answers 200 while
// up and 503 while down; POST /down and POST /up switch it.
type siteService struct {
	srv  *http.Server
	down atomic.Bool
}

func startSiteService(addr, site string) (*siteService, error) {
	s := &siteService{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		if s.down.Load() {
			http.Error(w, site+" is down (simulated)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%s ok\n", site)
	})
	mux.HandleFunc("POST /down", func(w http.ResponseWriter, _ *http.Request) {
		s.down.Store(true)
		fmt.Fprintf(w, "%s is now down\n", site)
	})
	mux.HandleFunc("POST /up", func(w http.ResponseWriter, _ *http.Request) {
		s.down.Store(false)
		fmt.Fprintf(w, "%s is now up\n", site)
	})
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("simulated %s service: %w", site, err)
	}
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go s.srv.Serve(lis)
	return s, nil
}

func (s *siteService) Close() error { return s.srv.Close() }

func printGuide(w io.Writer, f devFlags) {
	dnsHost, dnsPort, _ := net.SplitHostPort(f.dnsAddr)
	admin := strings.Split(f.admin, ",")[0]
	fmt.Fprintf(w, `Witness dev is running: three witnesses (east-1, west-1, tiebreak-1), DNS for
example.test. on %[1]s, and a demo group "app" active at east.

  dig @%[2]s -p %[3]s app.example.test A +short        # 192.0.2.10 (east)
  dig @%[2]s -p %[3]s _witness.app.example.test TXT +short
  go run ./cmd/witnessctl --addr %[4]s status         # or bin/witnessctl after make build

Simulate losing site east, and watch the group fail over to west within about
%[5]s plus detection:

  curl -X POST %[6]s/down
  watch -n1 dig @%[2]s -p %[3]s app.example.test A +short   # 198.51.100.10 (west)

Bring east back: nothing moves (the group is disarmed after a failover) until
an operator acts:

  curl -X POST %[6]s/up
  go run ./cmd/witnessctl --addr %[4]s arm app

Press Ctrl-C to stop.
`, f.dnsAddr, dnsHost, dnsPort, admin, f.failoverAfter, "http://"+f.eastAddr)
}
