// Command witnessd is the Witness daemon.
//
//	witnessd agent -config FILE [flags]   run one witness
//	witnessd dev [flags]                  three witnesses, a DNS server and two simulated sites in one process
//	witnessd version                      print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sitewitness/witness/cluster"
	"github.com/sitewitness/witness/cmd/internal/buildinfo"
	"github.com/sitewitness/witness/config"
)

const usage = `witnessd is the Witness daemon: it decides with its peers which site is
active for each protected service and carries the decision out.

Usage:
  witnessd agent -config FILE [flags]   run one witness (see 'witnessd agent -h')
  witnessd dev [flags]                  run a self-contained demo (see 'witnessd dev -h')
  witnessd tls ca create | cert create  write a CA and certificates (see 'witnessd tls')
  witnessd keygen                       print a new gossip key (gossip.keyring_file, witnessctl keyring)
  witnessd version                      print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "agent", "dev":
		setGCDefault(os.Getenv)
	}
	switch args[0] {
	case "agent":
		err = agent(ctx, args[1:], stderr)
	case "dev":
		err = dev(ctx, args[1:], stdout, stderr)
	case "tls":
		err = tlsCmd(args[1:], stdout, stderr)
	case "keygen":
		fmt.Fprintln(stdout, config.NewGossipKey())
		return 0
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "witnessd", buildinfo.String())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "witnessd: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "witnessd: %v\n", err)
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

func newLogger(w io.Writer, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	return slog.New(&onceHandler{next: slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv})})
}

func agent(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("witnessd agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "node configuration `file` (YAML); required")
	overrides := map[string]*string{}
	for _, f := range []struct{ name, help string }{
		{"name", "this witness's unique name"},
		{"site", "this witness's site"},
		{"data-dir", "directory for the Raft log, snapshots and identity"},
		{"raft-addr", "Raft address (host:port), reachable by peers"},
		{"gossip-addr", "gossip address (host:port), reachable by peers"},
		{"admin-addr", "admin gRPC listen address"},
		{"metrics-addr", "Prometheus /metrics listen address (empty: off)"},
		{"join", "comma-separated admin addresses of members, to join a running cluster"},
		{"log-level", "debug, info, warn or error"},
	} {
		overrides[f.name] = fs.String(f.name, "", f.help+" (overrides the file and WITNESS_* environment)")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: witnessd agent -config FILE [flags]\n\nRuns one witness. Settings come from defaults, then FILE, then WITNESS_*\nenvironment variables (WITNESS_NAME, WITNESS_DATA_DIR, ...), then these flags.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		fs.Usage()
		return errUsage
	}
	cfg, err := config.LoadNode(*path)
	if err != nil {
		return err
	}
	cfg.ApplyEnv(os.Getenv)
	fs.Visit(func(f *flag.Flag) {
		o, ok := overrides[f.Name]
		if !ok {
			return // -config itself
		}
		v := *o
		switch f.Name {
		case "name":
			cfg.Name = v
		case "site":
			cfg.Site = v
		case "data-dir":
			cfg.DataDir = v
		case "raft-addr":
			cfg.RaftAddr = v
		case "gossip-addr":
			cfg.GossipAddr = v
		case "admin-addr":
			cfg.AdminAddr = v
		case "metrics-addr":
			cfg.MetricsAddr = v
		case "join":
			cfg.Join = strings.Split(v, ",")
		case "log-level":
			cfg.LogLevel = v
		}
	})
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	if err := cfg.CheckSecure(); err != nil {
		return fmt.Errorf("%s: %w", *path, err)
	}
	log := newLogger(stderr, cfg.LogLevel).With("component", "witnessd")
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), cluster.NewBuildInfoCollector(buildinfo.String()))
	node, err := cluster.Start(ctx, cluster.Options{Config: cfg, Logger: log, Registerer: reg, Gatherer: reg, OnLeader: leaderLoop(log)})
	if err != nil {
		return err
	}
	log.Info("witness running", "version", buildinfo.String(), "name", cfg.Name, "site", cfg.Site,
		"admin", node.AdminAddr(), "raft", cfg.RaftAddr, "gossip", cfg.GossipAddr, "metrics", node.MetricsAddr())
	closeProfiles := func() error { return nil }
	if cfg.PprofAddr != "" {
		if closeProfiles, err = serveProfiles(cfg.PprofAddr, log); err != nil {
			return errors.Join(err, node.Close())
		}
	}
	<-ctx.Done()
	return shutdown(log, func() error { return errors.Join(closeProfiles(), node.Close()) })
}

// serveProfiles serves Go's runtime profiles (net/http/pprof) on addr
// until the returned func closes the server and waits for it.
func serveProfiles(addr string, log *slog.Logger) (func() error, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof_addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof server", "error", err)
		}
	}()
	log.Warn("serving Go profiles without authentication", "pprof", lis.Addr().String())
	return func() error { err := srv.Close(); <-done; return err }, nil
}

// shutdown runs closeFn; a second SIGINT or SIGTERM stops waiting for it.
// Nothing is lost by stopping early: the Raft log is synced on every write.
func shutdown(log *slog.Logger, closeFn func() error) error {
	again := make(chan os.Signal, 1)
	signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(again)
	log.Info("shutting down; signal again to stop at once")
	done := make(chan error, 1)
	go func() { done <- closeFn() }()
	select {
	case err := <-done:
		return err
	case sig := <-again:
		return fmt.Errorf("stopped by a second signal (%s) before the shutdown finished", sig)
	}
}

// leaderLoop is what the leader runs while it leads.
func leaderLoop(log *slog.Logger) cluster.LeaderFunc {
	return func(ctx context.Context, n *cluster.Node) {
		log.Info("leading", "groups", len(n.FSM().Groups()))
		<-ctx.Done()
	}
}
