package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/config"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

const goodGroups = `
groups:
  - name: app
    sites:
      - name: east
        probes:
          - kind: http
            url: http://10.0.1.20:8080/health
      - name: west
        probes:
          - kind: tcp
            address: 10.0.2.20:5432
    policy:
      failover_after: 10s
      max_lag: 16MB
    actions:
      dns:
        server: 10.0.0.53:53
        zone: example.test
        tsig: {name: witness-key, secret_file: /etc/witness/tsig.key}
        records:
          - name: app.example.test
            ttl: 30
            values: {east: 192.0.2.10, west: 198.51.100.10}
`

func TestParseGroupsFillsDefaults(t *testing.T) {
	specs, err := config.ParseGroups([]byte(goodGroups))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 1 {
		t.Fatalf("got %d specs", len(specs))
	}
	g := specs[0]
	pr := g.GetSites()[0].GetProbes()[0]
	got := []any{
		pr.GetIntervalMs(), pr.GetTimeoutMs(), pr.GetFailThreshold(), pr.GetExpectStatusMin(), pr.GetExpectStatusMax(),
		g.GetPolicy().GetMode(), g.GetPolicy().GetFenceAfterMs(), g.GetPolicy().GetRearm(), g.GetPolicy().GetMaxLagBytes(),
		g.GetActions().GetDns().GetZone(), g.GetActions().GetDns().GetRecords()[0].GetName(), g.GetActions().GetDns().GetRecords()[0].GetType(),
		g.GetActions().GetDns().GetTsigAlgorithm(), g.GetActions().GetDns().GetTsigKeyName(),
	}
	want := []any{
		int64(1000), int64(800), int32(3), int32(200), int32(399),
		witnessv1.Mode_MODE_AUTO, int64(5000), witnessv1.Rearm_REARM_MANUAL, int64(16_000_000),
		"example.test.", "app.example.test.", "A",
		"hmac-sha256", "witness-key.",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestHookDefaults(t *testing.T) {
	specs, err := config.ParseGroups([]byte(`
groups:
  - name: app
    sites: [{name: east, probes: [{kind: tcp, address: "h:1"}]}, {name: west, probes: [{kind: tcp, address: "h:2"}]}]
    actions:
      hooks:
        - {name: stop-old, step: fence, command: /bin/stop, run_on: east}
        - {name: stop-old-required, step: fence, command: /bin/stop, best_effort: false}
        - {name: warm, step: promote, command: /bin/warm}
        - {name: start, step: after_switch, command: /bin/start, run_on: west, best_effort: true}
        - {name: local, step: local_fence, command: /bin/stop}
`))
	if err != nil {
		t.Fatal(err)
	}
	type hook struct {
		Name, RunOn string
		BestEffort  bool
		TimeoutMs   int64
	}
	var got []hook
	for _, h := range specs[0].GetActions().GetHooks() {
		got = append(got, hook{h.GetName(), h.GetRunOn(), h.GetBestEffort(), h.GetTimeoutMs()})
	}
	want := []hook{
		{"stop-old", "east", true, 30000}, // fence hooks are best effort unless told
		{"stop-old-required", "leader", false, 30000},
		{"warm", "leader", false, 30000},
		{"start", "west", true, 30000},
		{"local", "", true, 30000}, // runs where the lease fences: no run_on
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hooks (-want +got):\n%s", diff)
	}
	specs, err = config.ParseGroups([]byte(goodGroups))
	if err != nil {
		t.Fatal(err)
	}
	if got := specs[0].GetActions().GetDns().GetCheckEveryMs(); got != 30000 {
		t.Errorf("dns.check_every default = %dms, want 30000", got)
	}
}

// fields returns the field paths of every problem in err.
func fields(t *testing.T, err error) []string {
	t.Helper()
	var es config.Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %v is not config.Errors", err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Field)
	}
	return out
}

func TestParseGroupsReportsEveryProblemWithItsPath(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"site without probes and unknown kind", `
groups:
  - name: app
    sites:
      - name: east
        probes: [{kind: ping}]
      - name: north
`, []string{"groups[0].sites[0].probes[0].kind", "groups[0].sites[1].probes"}},
		{"second group bad, first fine", `
groups:
  - name: ok
    sites: [{name: east, probes: [{kind: tcp, address: "h:1"}]}, {name: west, probes: [{kind: tcp, address: "h:2"}]}]
  - name: Bad_Name
    sites: [{name: east, probes: [{kind: http}]}]
`, []string{"groups[1].name", "groups[1].sites", "groups[1].sites[0].probes[0].url"}},
		{"fence_after too close to failover_after", `
groups:
  - name: app
    sites: [{name: east, probes: [{kind: tcp, address: "h:1"}]}, {name: west, probes: [{kind: tcp, address: "h:2"}]}]
    policy: {failover_after: 5s, fence_after: 4500ms}
`, []string{"groups[0].policy.fence_after"}},
		{"probe timeout not below interval", `
groups:
  - name: app
    sites: [{name: east, probes: [{kind: tcp, address: "h:1", interval: 1s, timeout: 1s}]}, {name: west, probes: [{kind: tcp, address: "h:2"}]}]
`, []string{"groups[0].sites[0].probes[0].timeout"}},
		{"dns records", `
groups:
  - name: app
    sites: [{name: east, probes: [{kind: tcp, address: "h:1"}]}, {name: west, probes: [{kind: tcp, address: "h:2"}]}]
    actions:
      dns:
        server: "ns:53"
        zone: example.test
        tsig: {name: k, secret_file: /k}
        records:
          - {name: app.example.test, ttl: 30, values: {east: 192.0.2.1}}
          - {name: app.other.test, type: MX, ttl: 0, values: {east: "::1", west: 1.2.3.4}}
          - {name: app6.example.test, type: AAAA, ttl: 5, values: {east: "::1", west: 1.2.3.4, north: "::2"}}
`, []string{
			"groups[0].actions.dns.records[0].values",
			"groups[0].actions.dns.records[1].name", "groups[0].actions.dns.records[1].type", "groups[0].actions.dns.records[1].ttl",
			"groups[0].actions.dns.records[2].values.north", "groups[0].actions.dns.records[2].values.west",
		}},
		{"duplicate names", `
groups:
  - name: app
    sites: [{name: east, probes: [{kind: tcp, address: "h:1"}]}, {name: east, probes: [{kind: tcp, address: "h:2"}]}]
  - name: app
    sites: [{name: east, probes: [{kind: tcp, address: "h:1"}]}, {name: west, probes: [{kind: exec}]}]
`, []string{"groups[0].sites[1].name", "groups[1].name", "groups[1].sites[1].probes[0].command"}},
		{"hooks", `
groups:
  - name: app
    sites: [{name: east, probes: [{kind: tcp, address: "h:1"}]}, {name: west, probes: [{kind: tcp, address: "h:2"}]}]
    actions:
      dns:
        server: "ns:53"
        zone: example.test
        tsig: {name: k, secret_file: /k}
        check_every: 100ms
        records: [{name: app.example.test, ttl: 30, values: {east: 192.0.2.1, west: 192.0.2.2}}]
      hooks:
        - {name: ok-leader, step: promote, command: /bin/true}
        - {name: ok-site, step: fence, command: /bin/true, run_on: east}
        - {name: ok-local, step: local_fence, command: /bin/true}
        - {name: north, step: after_switch, command: /bin/true, run_on: north}
        - {name: when, step: before_dns, command: /bin/true}
        - {name: local-on-site, step: local_fence, command: /bin/true, run_on: east}
        - {name: local-required, step: local_fence, command: /bin/true, best_effort: false}
        - {name: ok-leader, step: after_switch, command: /bin/true}
`, []string{
			"groups[0].actions.dns.check_every",
			"groups[0].actions.hooks[3].run_on", "groups[0].actions.hooks[4].step", "groups[0].actions.hooks[5].run_on",
			"groups[0].actions.hooks[6].best_effort", "groups[0].actions.hooks[7].name",
		}},
		{"unknown key", `
groups:
  - name: app
    sitez: []
`, []string{"groups[0].sitez"}},
		{"empty", ``, []string{"groups"}},
		{"bad duration", `
groups:
  - name: app
    policy: {failover_after: soon}
`, []string{"groups[0].policy.failover_after"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			specs, err := config.ParseGroups([]byte(tt.doc))
			if err == nil {
				t.Fatalf("accepted: %v", specs)
			}
			if specs != nil {
				t.Errorf("returned specs with an error")
			}
			if diff := cmp.Diff(tt.want, fields(t, err)); diff != "" {
				t.Errorf("field paths (-want +got):\n%s\nerror:\n%v", diff, err)
			}
		})
	}
}

func TestNodeLayers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "witness.yaml")
	if err := os.WriteFile(path, []byte(`
name: east-1
site: east
data_dir: /var/lib/witness
raft_addr: 10.0.1.5:7300
gossip_addr: 10.0.1.5:7301
raft: {election_timeout: 2s}
initial_voters:
  - {name: east-1, raft_addr: "10.0.1.5:7300", gossip_addr: "10.0.1.5:7301"}
  - {name: west-1, raft_addr: "10.0.2.5:7300", gossip_addr: "10.0.2.5:7301"}
  - {name: tie-1, raft_addr: "10.0.3.5:7300", gossip_addr: "10.0.3.5:7301"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := config.LoadNode(path)
	if err != nil {
		t.Fatal(err)
	}
	n.ApplyEnv(func(k string) string {
		return map[string]string{"WITNESS_ADMIN_ADDR": "10.0.1.5:7400", "WITNESS_LOG_LEVEL": "debug", "WITNESS_PPROF_ADDR": "127.0.0.1:6060"}[k]
	})
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	got := []any{n.Cluster, n.AdminAddr, n.LogLevel, n.Raft.ElectionTimeout.D(), n.Raft.HeartbeatTimeout.D(), n.PprofAddr}
	want := []any{"witness", "10.0.1.5:7400", "debug", 2 * time.Second, time.Second, "127.0.0.1:6060"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layers (-want +got):\n%s", diff)
	}
}

func TestNodeValidate(t *testing.T) {
	base := func() config.Node {
		n := config.Default()
		n.Name, n.Site, n.DataDir = "east-1", "east", "/d"
		n.InitialVoters = []config.Voter{{Name: "east-1", RaftAddr: n.RaftAddr, GossipAddr: n.GossipAddr}}
		return n
	}
	tests := []struct {
		name   string
		mutate func(*config.Node)
		want   []string
	}{
		{"valid", func(*config.Node) {}, nil},
		{"missing name and data dir", func(n *config.Node) { n.Name, n.DataDir = "", "" }, []string{"name", "data_dir", "initial_voters"}},
		{"wildcard raft address", func(n *config.Node) { n.RaftAddr = "0.0.0.0:7300"; n.InitialVoters[0].RaftAddr = n.RaftAddr }, []string{"raft_addr", "initial_voters[0].raft_addr"}},
		{"self address differs", func(n *config.Node) { n.InitialVoters[0].RaftAddr = "127.0.0.1:9" }, []string{"initial_voters[0].raft_addr"}},
		{"even voters and join", func(n *config.Node) {
			n.InitialVoters = append(n.InitialVoters, config.Voter{Name: "west-1", RaftAddr: "h:1", GossipAddr: "h:2"})
			n.Join = []string{"h:7400"}
		}, []string{"join", "initial_voters"}},
		{"election below heartbeat", func(n *config.Node) { n.Raft.ElectionTimeout = config.Duration(time.Millisecond * 100) }, []string{"raft.election_timeout"}},
		{"pprof address without a port", func(n *config.Node) { n.PprofAddr = "localhost" }, []string{"pprof_addr"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := base()
			tt.mutate(&n)
			err := n.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(tt.want, fields(t, err)); diff != "" {
				t.Errorf("field paths (-want +got):\n%s\nerror:\n%v", diff, err)
			}
		})
	}
}

func TestErrorsAreInspectable(t *testing.T) {
	_, err := config.ParseGroups([]byte("groups:\n  - name: app\n    sites: [{name: east, probes: [{kind: ping}]}]\n"))
	if !errors.Is(err, config.ErrUnknown) {
		t.Errorf("errors.Is(err, ErrUnknown) = false for %v", err)
	}
	var ve *config.ValidationError
	if !errors.As(err, &ve) || !strings.HasPrefix(ve.Field, "groups[0]") {
		t.Errorf("errors.As found %v", ve)
	}
}

func FuzzParseGroups(f *testing.F) {
	f.Add([]byte(goodGroups))
	f.Add([]byte("groups: [{name: a}]"))
	f.Add([]byte("groups:\n  - sites: [{probes: [{kind: dns, type: ZZ}]}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		specs, err := config.ParseGroups(b)
		if err != nil {
			var es config.Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is not a non-empty Errors: %v", err)
			}
			return
		}
		for _, s := range specs {
			if s.GetName() == "" || len(s.GetSites()) < 2 {
				t.Fatalf("accepted an invalid spec: %v", s)
			}
		}
	})
}
