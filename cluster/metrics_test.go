package cluster

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/sitewitness/witness/actions/actionstest"
)

// sample reads the value of one series from g: a gauge or counter value, or
// a histogram's sample count.
func sample(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			return value(m), true
		}
	}
	return 0, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

// total sums a series over the registries of every witness.
func total(t *testing.T, regs []*prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, r := range regs {
		v, _ := sample(t, r, name, labels)
		sum += v
	}
	return sum
}

// lint fails the test on any problem promlint finds in g's metrics.
func lint(t *testing.T, who string, g prometheus.Gatherer) {
	t.Helper()
	problems, err := testutil.GatherAndLint(g)
	if err != nil {
		t.Fatalf("%s: gather: %v", who, err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s: %s", who, p.Metric, p.Text)
	}
}

// TestMetricsThroughAFailover runs a three-site cluster through a site
// loss with a failing DNS step, and reads what an operator would alert on:
// the transition counted on every witness (and after a restart), the
// decision, the verdicts, the failing step and how long it fails, the
// durations the leader observed; every registry lint-clean.
func TestMetricsThroughAFailover(t *testing.T) {
	var mu sync.Mutex
	regs := make([]*prometheus.Registry, 3)
	reg := func(i int) *prometheus.Registry { mu.Lock(); defer mu.Unlock(); return regs[i] }
	runner := actionstest.NewRunner()
	runner.Fail("dns", errors.New("refused"))
	tc := newTestClusterWith(t, func(i int, o *Options) {
		mu.Lock()
		regs[i] = prometheus.NewPedanticRegistry()
		o.Registerer, o.Gatherer = regs[i], regs[i]
		mu.Unlock()
		o.Config.MetricsGroupObservations, o.Config.MetricsGroupDetail = true, true
		o.Runner, o.LocalDatabase = runner, (&fenceRecorder{}).database
	}, "east", "west", "tiebreak")
	east, west := newSiteEndpoint(t), newSiteEndpoint(t)
	keyFile := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(keyFile, []byte("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, leader := tc.leader()
	applyDoc(t, leader, fmt.Sprintf(`
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: http, url: "%s/health", interval: 200ms, timeout: 150ms}]}
      - {name: west, probes: [{kind: http, url: "%s/health", interval: 200ms, timeout: 150ms}]}
    policy: {failover_after: 2s, fence_after: 500ms}
    actions:
      dns:
        server: 127.0.0.1:53
        zone: example.test.
        tsig: {name: witness, secret_file: %s}
        records: [{name: app.example.test., ttl: 1, values: {east: 192.0.2.1, west: 192.0.2.2}}]
`, east.srv.URL, west.srv.URL, keyFile))
	li, _ := tc.leader()
	eventually(t, "west seen healthy from east", func() bool {
		v, ok := sample(t, reg(li), "witness_observation_state", map[string]string{"group": "app", "site": "west", "observer_site": "east"})
		return ok && v == 1
	})

	term := func() float64 {
		var max float64
		for i := range tc.nodes {
			v, _ := sample(t, reg(i), "witness_raft_term", nil)
			max = math.Max(max, v)
		}
		return max
	}
	termBefore := term()
	east.down.Store(true)
	// The DNS step already fails for the initial transition: wait for the
	// failover itself, and say what each witness's policy saw if it does
	// not come.
	eventuallyOr(t, "the failover committed and its DNS step failing", func() bool {
		a, _ := sample(t, reg(li), "witness_group_active_site", map[string]string{"group": "app", "site": "west"})
		v, _ := sample(t, reg(li), "witness_group_steps_failing", map[string]string{"group": "app"})
		return a == 1 && v == 1
	}, func() string { return explainAll(tc, "app") })
	failover := map[string]string{"group": "app", "kind": "failover", "from_site": "east", "to_site": "west"}
	for i := range tc.nodes {
		eventuallyOr(t, fmt.Sprintf("the failover counted on %s", tc.nodes[i].Name()), func() bool {
			v, _ := sample(t, reg(i), "witness_transitions_total", failover)
			return v == 1
		}, func() string { return explainAll(tc, "app") })
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   func(float64) bool
	}{
		{"witness_group_decision_state", map[string]string{"group": "app", "state": "disarmed"}, func(v float64) bool { return v == 1 }},
		// East, the only other site, is down: nothing could take app over.
		{"witness_group_eligible_targets", map[string]string{"group": "app"}, func(v float64) bool { return v == 0 }},
		{"witness_decision_groups", map[string]string{"state": "disarmed"}, func(v float64) bool { return v == 1 }},
		{"witness_observation_state", map[string]string{"group": "app", "site": "east", "observer_site": "west"}, func(v float64) bool { return v == 0 }},
		{"witness_observation_groups", map[string]string{"site": "east", "observer_site": "tiebreak", "state": "failing"}, func(v float64) bool { return v == 1 }},
		{"witness_group_active_site", map[string]string{"group": "app", "site": "west"}, func(v float64) bool { return v == 1 }},
		{"witness_group_armed", map[string]string{"group": "app"}, func(v float64) bool { return v == 0 }},
		{"witness_raft_leader_changes_total", nil, func(v float64) bool { return v >= 1 }},
		{"witness_raft_voters", nil, func(v float64) bool { return v == 3 }},
		{"witness_raft_voters_alive", nil, func(v float64) bool { return v == 3 }},
		{"witness_probe_failures_total", map[string]string{"site": "east", "kind": "http"}, func(v float64) bool { return v >= 1 }},
		{"witness_observation_age_seconds", map[string]string{"observer_site": "west"}, func(v float64) bool { return v < 5 }},
		{"witness_dns_drift_total", map[string]string{"group": "app"}, func(v float64) bool { return v == 0 }},
		// Counted over groups, for the alerts and dashboards without
		// metrics_group_detail.
		{"witness_site_transitions", map[string]string{"kind": "failover", "from_site": "east", "to_site": "west"}, func(v float64) bool { return v == 1 }},
		{"witness_active_site_groups", map[string]string{"site": "west"}, func(v float64) bool { return v == 1 }},
		{"witness_active_site_groups", map[string]string{"site": "east"}, func(v float64) bool { return v == 0 }},
		{"witness_step_failing_groups", map[string]string{"step": "dns"}, func(v float64) bool { return v == 1 }},
	}
	for _, c := range checks {
		if v, ok := sample(t, reg(li), c.name, c.labels); !ok || !c.want(v) {
			t.Errorf("%s%v = %v (present %v) on %s", c.name, c.labels, v, ok, tc.nodes[li].Name())
		}
	}
	// Leader-only durations are observed by whichever witness led (the
	// leader may change under a loaded machine): summed over all.
	// The leader that proposed observes it; one that lost its leadership
	// while the entry committed (a loaded machine) has no answer to time.
	switch v := total(t, regs, "witness_failover_commit_seconds", nil); {
	case v == 1:
	case v == 0 && term() > termBefore:
		t.Logf("verdict to commit not observed: the leader changed during the failover (term %v → %v)", termBefore, term())
	default:
		t.Errorf("verdict to commit observed %v times, want 1", v)
	}
	if v := total(t, regs, "witness_step_duration_seconds", map[string]string{"step": "dns", "result": "failed"}); v < 1 {
		t.Errorf("failed dns step attempts observed %v times, want at least 1", v)
	}
	eventually(t, "the DNS step failing for a while", func() bool {
		v, _ := sample(t, reg(li), "witness_group_step_failing_seconds", map[string]string{"group": "app", "step": "dns"})
		return v > 0.2
	})

	runner.Fail("dns", nil)
	eventually(t, "DNS settled", func() bool {
		return total(t, regs, "witness_transition_settle_seconds", map[string]string{"kind": "failover"}) == 1
	})
	if v, _ := sample(t, reg(li), "witness_group_step_failing_seconds", map[string]string{"group": "app", "step": "dns"}); v != 0 {
		t.Errorf("dns step failing for %vs after it succeeded", v)
	}
	for i := range tc.nodes {
		lint(t, tc.nodes[i].Name(), reg(i))
	}

	// A follower restarted with a new registry counts the failover too:
	// the count comes from the replicated state. Scrapes while it stops
	// neither fail nor panic.
	fi := (li + 1) % 3
	stopped := make(chan struct{})
	scraped := make(chan error, 1)
	old := reg(fi)
	go func() {
		var err error
		for done := false; !done; {
			select {
			case <-stopped:
				done = true
			default:
			}
			if _, gerr := old.Gather(); gerr != nil && err == nil {
				err = gerr
			}
		}
		scraped <- err
	}()
	time.Sleep(50 * time.Millisecond)
	tc.stop(fi)
	close(stopped)
	if err := <-scraped; err != nil {
		t.Errorf("scrape while stopping: %v", err)
	}
	tc.start(fi)
	eventually(t, "the failover counted after a restart", func() bool {
		v, _ := sample(t, reg(fi), "witness_transitions_total", failover)
		return v == 1
	})
	lint(t, tc.nodes[fi].Name()+" restarted", reg(fi))
}

// TestCommandNames checks the command label's words.
func TestCommandNames(t *testing.T) {
	for _, tt := range []struct{ cmd, want string }{
		{"PutGroupsCommand", "put_groups"},
		{"RecordStepCommand", "record_step"},
		{"TransitionCommand", "transition"},
	} {
		if got := snake(strings.TrimSuffix(tt.cmd, "Command")); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.cmd, got, tt.want)
		}
	}
}
