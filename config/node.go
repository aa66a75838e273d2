package config

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Node is one witness's own configuration.
type Node struct {
	// Cluster names the cluster; a data_dir made for another cluster is
	// refused at start.
	Cluster string `yaml:"cluster"`
	// Name is this witness's unique name, its Raft server ID and memberlist
	// node name.
	Name    string `yaml:"name"`
	Site    string `yaml:"site"`
	DataDir string `yaml:"data_dir"`

	RaftAddr    string `yaml:"raft_addr"`
	GossipAddr  string `yaml:"gossip_addr"`
	AdminAddr   string `yaml:"admin_addr"`
	MetricsAddr string `yaml:"metrics_addr"`
	// MetricsGroupObservations exports each observer site's verdict on
	// every site of every group (witness_observation_state); off, the
	// verdicts are counted by site and observer site only, which stays
	// cheap with thousands of groups.
	MetricsGroupObservations bool `yaml:"metrics_group_observations"`
	// MetricsGroupDetail exports every per group series: armed, mode,
	// pending switchover, transitions, last transition, step results and
	// how long each step fails, self-fenced, and the active site's 0 for
	// the other sites. Off, a group has its token, active site, decision,
	// eligible targets, failing steps and DNS drift only, and the rest is
	// counted over groups, which stays cheap with thousands of groups.
	MetricsGroupDetail bool `yaml:"metrics_group_detail"`
	// PprofAddr serves Go's profiles (net/http/pprof, plaintext, no
	// authentication) for measuring a witness; empty, the default, is
	// off. Bind it to loopback.
	PprofAddr string `yaml:"pprof_addr"`

	// InitialVoters bootstraps a new cluster: every founding node lists the
	// same voters, itself included. Ignored once data_dir holds a cluster.
	InitialVoters []Voter `yaml:"initial_voters"`
	// Join lists admin addresses of existing members, for a node that joins
	// a running cluster instead.
	Join []string `yaml:"join"`

	Raft     RaftTuning `yaml:"raft"`
	Gossip   Gossip     `yaml:"gossip"`
	LogLevel string     `yaml:"log_level"`

	// TLS is this witness's certificate material (config/tls.go); nil
	// runs every port in plaintext, which witnessd agent refuses unless
	// Insecure says so.
	TLS *TLS `yaml:"tls"`
	// Insecure states that this witness runs without TLS on purpose.
	Insecure bool `yaml:"insecure"`
	// MetricsTLS is how metrics_addr is served: plain (the default) or
	// tls.
	MetricsTLS string `yaml:"metrics_tls"`

	// Watchdog is the host's watchdog device, which the witness keeps fed
	// only while its lease with the voters holds; nil is not set (a
	// warning at start when a group demotes a database here).
	Watchdog *Watchdog `yaml:"watchdog"`
}

// Watchdog configures the watchdog a witness feeds. Either Device and
// Timeout, or Disabled.
//
// A witness that is frozen (SIGSTOP, a paused VM) or wedged while its site
// is cut off renews no lease and demotes nothing; the watchdog device,
// unfed, then resets the host, and with it the database. The witness
// writes to the device at each lease check while its lease holds with
// more than Timeout left, so the device fires before the lease runs out:
// before any quorum of voters may report the site's lease expired. It
// does not set the device's timeout: configure the device (the driver's
// module option, or systemd's RuntimeWatchdogSec left off) to the same
// Timeout. On a clean stop the witness writes the magic 'V' that disarms
// the device.
type Watchdog struct {
	// Device is the watchdog device, /dev/watchdog.
	Device string `yaml:"device"`
	// Timeout is the device's timeout: how long after the last write the
	// host resets.
	Timeout Duration `yaml:"timeout"`
	// Disabled states that this witness runs without a watchdog, and
	// silences the warning.
	Disabled bool `yaml:"disabled"`
}

// Enabled reports whether a watchdog device is to be fed.
func (w *Watchdog) Enabled() bool { return w != nil && !w.Disabled && w.Device != "" }

// MinWatchdogTimeout is the least watchdog timeout: Linux watchdog drivers
// count whole seconds.
const MinWatchdogTimeout = time.Second

// Voter is one founding member of a cluster.
type Voter struct {
	Name       string `yaml:"name"`
	RaftAddr   string `yaml:"raft_addr"`
	GossipAddr string `yaml:"gossip_addr"`
}

// RaftTuning holds Raft's timers.
type RaftTuning struct {
	HeartbeatTimeout   Duration `yaml:"heartbeat_timeout"`
	ElectionTimeout    Duration `yaml:"election_timeout"`
	LeaderLeaseTimeout Duration `yaml:"leader_lease_timeout"`
	SnapshotInterval   Duration `yaml:"snapshot_interval"`
	SnapshotThreshold  uint64   `yaml:"snapshot_threshold"`
}

// Gossip holds memberlist's timers.
type Gossip struct {
	ProbeInterval Duration `yaml:"probe_interval"`
	// KeyringFile enables gossip encryption (config/keyring.go);
	// witnessctl keyring writes the ring back to it, so a restart keeps
	// it.
	KeyringFile string `yaml:"keyring_file"`
	// VerifyIncoming and VerifyOutgoing default to true; turning
	// encryption on in a running cluster sets both false on every node,
	// then outgoing true, then incoming true, a rolling restart each.
	VerifyIncoming *bool `yaml:"verify_incoming"`
	VerifyOutgoing *bool `yaml:"verify_outgoing"`
}

// Default ports.
const (
	DefaultRaftPort    = 7300
	DefaultGossipPort  = 7301
	DefaultAdminPort   = 7400
	DefaultMetricsPort = 9400
)

// Default returns a node configuration with every default filled in.
func Default() Node {
	return Node{
		Cluster:     "witness",
		RaftAddr:    fmt.Sprintf("127.0.0.1:%d", DefaultRaftPort),
		GossipAddr:  fmt.Sprintf("127.0.0.1:%d", DefaultGossipPort),
		AdminAddr:   fmt.Sprintf("127.0.0.1:%d", DefaultAdminPort),
		MetricsAddr: fmt.Sprintf("127.0.0.1:%d", DefaultMetricsPort),
		Raft: RaftTuning{
			HeartbeatTimeout:   Duration(time.Second),
			ElectionTimeout:    Duration(time.Second),
			LeaderLeaseTimeout: Duration(500 * time.Millisecond),
			SnapshotInterval:   Duration(2 * time.Minute),
			SnapshotThreshold:  8192,
		},
		Gossip:   Gossip{ProbeInterval: Duration(500 * time.Millisecond)},
		LogLevel: "info",
	}
}

// LoadNode reads a node configuration file over Default(). Unknown keys are
// errors, so a typo is not silently ignored.
func LoadNode(path string) (Node, error) {
	n := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return n, fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&n); err != nil {
		if es := decodeErrors(data, reflect.TypeFor[Node]()); len(es) > 0 {
			return n, fmt.Errorf("%s:\n%w", path, es)
		}
		return n, Errors{{Field: path, Err: fmt.Errorf("%w: %s", ErrSyntax, err)}}
	}
	return n, nil
}

// ApplyEnv overrides fields from WITNESS_* environment variables, read with
// getenv (os.Getenv in production).
func (n *Node) ApplyEnv(getenv func(string) string) {
	for env, field := range map[string]*string{
		"WITNESS_CLUSTER":      &n.Cluster,
		"WITNESS_NAME":         &n.Name,
		"WITNESS_SITE":         &n.Site,
		"WITNESS_DATA_DIR":     &n.DataDir,
		"WITNESS_RAFT_ADDR":    &n.RaftAddr,
		"WITNESS_GOSSIP_ADDR":  &n.GossipAddr,
		"WITNESS_ADMIN_ADDR":   &n.AdminAddr,
		"WITNESS_METRICS_ADDR": &n.MetricsAddr,
		"WITNESS_PPROF_ADDR":   &n.PprofAddr,
		"WITNESS_LOG_LEVEL":    &n.LogLevel,
	} {
		if v := getenv(env); v != "" {
			*field = v
		}
	}
	if v := getenv("WITNESS_JOIN"); v != "" {
		n.Join = splitList(v)
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func checkName(p *problems, field, v string) {
	switch {
	case v == "":
		p.add(field, "", ErrRequired)
	case !nameRE.MatchString(v):
		p.addf(field, v, ErrInvalid, "use lowercase letters, digits and '-', at most 63")
	}
}

// checkAddr checks a host:port. When advertised is set the host must be one
// that peers can dial: not empty and not a wildcard address.
func checkAddr(p *problems, field, v string, advertised bool) {
	if v == "" {
		p.add(field, "", ErrRequired)
		return
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		p.addf(field, v, ErrInvalid, "want host:port")
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.addf(field, v, ErrInvalid, "port must be 0 to 65535")
		return
	}
	if advertised {
		ip := net.ParseIP(host)
		if host == "" || (ip != nil && ip.IsUnspecified()) {
			p.addf(field, v, ErrInvalid, "peers dial this address: name a reachable host, not a wildcard")
		}
		if port == "0" {
			p.addf(field, v, ErrInvalid, "peers dial this address: it needs a fixed port")
		}
	}
}

// Validate returns every problem of the configuration, each with its field
// path, or nil.
func (n *Node) Validate() error {
	var p problems
	checkName(&p, "cluster", n.Cluster)
	checkName(&p, "name", n.Name)
	checkName(&p, "site", n.Site)
	if n.DataDir == "" {
		p.add("data_dir", "", ErrRequired)
	}
	checkAddr(&p, "raft_addr", n.RaftAddr, true)
	checkAddr(&p, "gossip_addr", n.GossipAddr, true)
	checkAddr(&p, "admin_addr", n.AdminAddr, false)
	if n.MetricsAddr != "" {
		checkAddr(&p, "metrics_addr", n.MetricsAddr, false)
	}
	if n.PprofAddr != "" {
		checkAddr(&p, "pprof_addr", n.PprofAddr, false)
	}
	if len(n.InitialVoters) > 0 && len(n.Join) > 0 {
		p.addf("join", "", ErrConflict, "set initial_voters to found a cluster or join to enter one, not both")
	}
	names := map[string]bool{}
	addrs := map[string]bool{}
	self := false
	for i, v := range n.InitialVoters {
		f := fmt.Sprintf("initial_voters[%d]", i)
		checkName(&p, f+".name", v.Name)
		checkAddr(&p, f+".raft_addr", v.RaftAddr, true)
		checkAddr(&p, f+".gossip_addr", v.GossipAddr, true)
		if names[v.Name] {
			p.add(f+".name", v.Name, ErrDuplicate)
		}
		if addrs[v.RaftAddr] {
			p.add(f+".raft_addr", v.RaftAddr, ErrDuplicate)
		}
		names[v.Name], addrs[v.RaftAddr] = true, true
		if v.Name == n.Name {
			self = true
			if v.RaftAddr != n.RaftAddr {
				p.addf(f+".raft_addr", v.RaftAddr, ErrConflict, "this node's raft_addr is %s", n.RaftAddr)
			}
			if v.GossipAddr != n.GossipAddr {
				p.addf(f+".gossip_addr", v.GossipAddr, ErrConflict, "this node's gossip_addr is %s", n.GossipAddr)
			}
		}
	}
	if len(n.InitialVoters) > 0 {
		if !self {
			p.addf("initial_voters", n.Name, ErrRequired, "a founding node lists itself among the initial voters")
		}
		if len(n.InitialVoters)%2 == 0 {
			p.addf("initial_voters", strconv.Itoa(len(n.InitialVoters)), ErrInvalid, "use an odd number of voters: an even number tolerates no more failures than one fewer")
		}
	}
	for i, j := range n.Join {
		checkAddr(&p, fmt.Sprintf("join[%d]", i), j, true)
	}
	r := n.Raft
	if r.HeartbeatTimeout.D() < 5*time.Millisecond {
		p.addf("raft.heartbeat_timeout", r.HeartbeatTimeout.String(), ErrInvalid, "at least 5ms")
	}
	if r.ElectionTimeout.D() < r.HeartbeatTimeout.D() {
		p.addf("raft.election_timeout", r.ElectionTimeout.String(), ErrConflict, "must not be below raft.heartbeat_timeout")
	}
	if r.LeaderLeaseTimeout.D() <= 0 || r.LeaderLeaseTimeout.D() > r.HeartbeatTimeout.D() {
		p.addf("raft.leader_lease_timeout", r.LeaderLeaseTimeout.String(), ErrConflict, "must be above zero and not above raft.heartbeat_timeout")
	}
	if n.Gossip.ProbeInterval.D() < 10*time.Millisecond {
		p.addf("gossip.probe_interval", n.Gossip.ProbeInterval.String(), ErrInvalid, "at least 10ms")
	}
	if w := n.Watchdog; w != nil {
		switch {
		case w.Disabled && (w.Device != "" || w.Timeout != 0):
			p.addf("watchdog.disabled", "true", ErrConflict, "set device and timeout, or disabled, not both")
		case w.Disabled:
		case w.Device == "":
			p.addf("watchdog.device", "", ErrRequired, "the watchdog device (/dev/watchdog), or disabled: true")
		default:
			if !strings.HasPrefix(w.Device, "/") {
				p.addf("watchdog.device", w.Device, ErrInvalid, "an absolute path")
			}
			if t := w.Timeout.D(); t < MinWatchdogTimeout || t%time.Second != 0 {
				p.addf("watchdog.timeout", w.Timeout.String(), ErrInvalid, "whole seconds, at least 1s: the device counts seconds")
			}
		}
	}
	n.validateSecurity(&p)
	switch n.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		p.addf("log_level", n.LogLevel, ErrInvalid, "one of debug, info, warn, error")
	}
	return p.err()
}
