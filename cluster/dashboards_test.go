package cluster

import (
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sitewitness/witness/deploy"
)

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// exportedNames are the metric names a witness exports, with the series
// names of histograms and summaries.
func exportedNames() map[string]bool {
	n := &Node{metrics: newNodeMetrics()}
	cs := append(n.metrics.collectors(n), NewBuildInfoCollector("test"))
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	names := map[string]bool{}
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
				names[m[1]+suffix] = true
			}
		}
	}
	return names
}

// Every metric that a dashboard panel, variable or annotation or an alert
// rule reads is one the code exports: renaming a metric without its
// dashboards and alerts fails here, naming the panel or rule.
func TestDashboardsAndAlertsReadExportedMetrics(t *testing.T) {
	names := exportedNames()
	if !names["witness_transitions_total"] || !names["witness_step_duration_seconds_bucket"] || !names["grpc_server_handled_total"] {
		t.Fatalf("exported names look incomplete: %v", names)
	}
	qs, err := deploy.Queries()
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) < 40 {
		t.Fatalf("only %d queries in the dashboards and alerts", len(qs))
	}
	for _, q := range qs {
		read := deploy.MetricNames(q.Expr)
		if len(read) == 0 {
			t.Errorf("%s reads no Witness metric: %s", q.Source, q.Expr)
		}
		for _, m := range read {
			if !names[m] {
				t.Errorf("%s reads %s, which no witness exports: %s", q.Source, m, q.Expr)
			}
		}
	}
}

// optionalNames maps the metrics exported only with a node setting to
// that setting.
func optionalNames() map[string]string {
	out := map[string]string{}
	for _, d := range optionalDescs {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			continue
		}
		out[m[1]] = "metrics_group_detail"
		if d == descObsState {
			out[m[1]] = "metrics_group_observations"
		}
	}
	return out
}

// The alerts work with the default settings: none reads a metric that is
// exported only with metrics_group_detail or metrics_group_observations.
// A dashboard panel that reads one says so in its description.
func TestDashboardsAndAlertsWithDefaultMetrics(t *testing.T) {
	optional := optionalNames()
	if optional["witness_transitions_total"] != "metrics_group_detail" || optional["witness_observation_state"] != "metrics_group_observations" {
		t.Fatalf("optional names look wrong: %v", optional)
	}
	qs, err := deploy.Queries()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		for _, m := range deploy.MetricNames(q.Expr) {
			setting, ok := optional[m]
			switch {
			case !ok:
			case q.Kind == deploy.KindAlert || q.Kind == deploy.KindVariable || q.Kind == deploy.KindAnnotation:
				t.Errorf("%s reads %s, exported only with %s: %s", q.Source, m, setting, q.Expr)
			case !strings.Contains(q.Description, setting):
				t.Errorf("%s reads %s, exported only with %s, and its description does not say so", q.Source, m, setting)
			}
		}
	}
}
