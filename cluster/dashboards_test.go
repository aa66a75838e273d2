package cluster

import (
	"regexp"
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
