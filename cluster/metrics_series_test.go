package cluster

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/actionstest"
)

// seriesByGroup counts g's series by group and metric name.
func seriesByGroup(t *testing.T, g prometheus.Gatherer) map[string]map[string]int {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]map[string]int{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() != "group" {
					continue
				}
				if out[lp.GetValue()] == nil {
					out[lp.GetValue()] = map[string]int{}
				}
				out[lp.GetValue()][mf.GetName()]++
			}
		}
	}
	return out
}

const seriesGroups = `
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    actions:
      dns:
        server: "127.0.0.1:53"
        zone: example.test.
        tsig: {name: k, secret_file: /nonexistent}
        records: [{name: app.example.test., ttl: 5, values: {east: 192.0.2.1, west: 192.0.2.2}}]
`

// TestMetricSeriesPerGroup counts the series of one group (two sites, a
// DNS record, its DNS step done and its settle step failing, active at
// this witness's site): a few
// by default, so that 10,000 groups stay cheap, and every per group
// series with metrics_group_detail. A new per group series fails here
// until it is counted over groups or put behind the setting.
func TestMetricSeriesPerGroup(t *testing.T) {
	runner := actionstest.NewRunner()
	runner.Fail(actions.StepSettle, errors.New("still the old answer"))
	tc := newTestClusterWith(t, func(_ int, o *Options) { o.Runner = runner }, "east")
	_, leader := tc.leader()
	applyDoc(t, leader, seriesGroups)
	eventually(t, "dns done and settle failing", func() bool {
		g, _ := leader.FSM().Group("app")
		done := map[string]bool{}
		for _, r := range g.GetStatus().GetSteps() {
			done[r.GetStep()+" "+result(r.GetOk())] = true
		}
		return done["dns ok"] && done["settle failed"]
	})
	for _, tt := range []struct {
		detail bool
		want   map[string]int
	}{
		{false, map[string]int{
			"witness_group_token":            1,
			"witness_group_active_site":      1,
			"witness_group_decision_state":   1,
			"witness_group_eligible_targets": 1,
			"witness_group_steps_failing":    1,
			"witness_dns_drift_total":        1,
		}},
		{true, map[string]int{
			"witness_group_token":                             1,
			"witness_group_active_site":                       2,
			"witness_group_decision_state":                    1,
			"witness_group_eligible_targets":                  1,
			"witness_group_steps_failing":                     1,
			"witness_dns_drift_total":                         1,
			"witness_group_armed":                             1,
			"witness_group_mode":                              1,
			"witness_group_switchover_pending":                1,
			"witness_transitions_total":                       3, // initial, and a failover each way from 0
			"witness_group_last_transition_timestamp_seconds": 1,
			"witness_group_step_results":                      2,
			"witness_group_step_failing_seconds":              2,
			"witness_self_fenced":                             1,
		}},
	} {
		t.Run(fmt.Sprintf("detail=%v", tt.detail), func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(&collector{n: leader, detail: tt.detail})
			if diff := cmp.Diff(tt.want, seriesByGroup(t, reg)["app"]); diff != "" {
				t.Errorf("series of group app (-want +got):\n%s", diff)
			}
			// Counted over groups, whatever the setting.
			for _, c := range []struct {
				name   string
				labels map[string]string
				want   float64
			}{
				{"witness_active_site_groups", map[string]string{"site": "east"}, 1},
				{"witness_active_site_groups", map[string]string{"site": "west"}, 0},
				{"witness_mode_groups", map[string]string{"mode": "auto"}, 1},
				{"witness_mode_groups", map[string]string{"mode": "observe"}, 0},
				{"witness_site_transitions", map[string]string{"kind": "initial", "to_site": "east"}, 1},
				{"witness_site_transitions", map[string]string{"kind": "failover", "from_site": "east", "to_site": "west"}, 0},
				{"witness_step_failing_groups", map[string]string{"step": "settle"}, 1},
				{"witness_step_failing_groups", map[string]string{"step": "dns"}, 0},
				{"witness_self_fenced_groups", nil, 0},
			} {
				if v, ok := sample(t, reg, c.name, c.labels); !ok || v != c.want {
					t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
				}
			}
			lint(t, leader.Name(), reg)
		})
	}
}
