package deploy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/deploy"
)

func TestWithoutThreshold(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`sum by (job) (witness_raft_leader) < 1`, `sum by (job) (witness_raft_leader) < bool 1`},
		{`a <= floor(b / 2) + 1 and on (job) c == 1`, `a <= bool floor(b / 2) + 1 and on (job) c == bool 1`},
		{`x{kind="failover",a!="b",c=~"d|e",f!~"g"} > 0`, `x{kind="failover",a!="b",c=~"d|e",f!~"g"} > bool 0`},
		{`x >= 2 or y != 3`, `x >= bool 2 or y != bool 3`},
		{`x > bool 5`, `x > bool 5`},
		{`label_replace(x, "a", "$1", "b", "(.*)>=")`, `label_replace(x, "a", "$1", "b", "(.*)>=")`},
	} {
		if got := deploy.WithoutThreshold(tt.in); got != tt.want {
			t.Errorf("WithoutThreshold(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

func TestMetricNames(t *testing.T) {
	got := deploy.MetricNames(`histogram_quantile(0.9, sum by (le) (rate(witness_step_duration_seconds_bucket{step="witness_x"}[5m]))) / on (instance) witness_raft_leader + grpc_server_handled_total`)
	want := []string{"grpc_server_handled_total", "witness_raft_leader", "witness_step_duration_seconds_bucket"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestSubstitute(t *testing.T) {
	got := deploy.Substitute(`rate(x{group=~"$group",site=~"${site}"}[$__rate_interval])`)
	if want := `rate(x{group=~".*",site=~".*"}[1m])`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// The dashboards pick their data source through $datasource, name no data
// source UID, and use each variable as label=~"$var".
func TestDashboardsUseTheDatasourceVariable(t *testing.T) {
	files, _ := filepath.Glob("grafana/dashboards/*.json")
	if len(files) != 3 {
		t.Fatalf("want the cluster, groups and detection dashboards, have %v", files)
	}
	uid := regexp.MustCompile(`"uid":\s*"([^"]*)"`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			UID        string `json:"uid"`
			Templating struct {
				List []struct{ Name, Type string } `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(d.Templating.List) == 0 || d.Templating.List[0].Name != "datasource" || d.Templating.List[0].Type != "datasource" {
			t.Errorf("%s: first variable is not the datasource variable", f)
		}
		for _, m := range uid.FindAllSubmatch(b, -1) {
			if u := string(m[1]); u != "${datasource}" && u != d.UID {
				t.Errorf("%s: hard-coded uid %q", f, u)
			}
		}
	}
	qs, err := deploy.Queries()
	if err != nil {
		t.Fatal(err)
	}
	use := regexp.MustCompile(`[a-z_]+(=~?|!~?)"\$\{?[a-z_]+\}?"`)
	for _, q := range qs {
		for _, m := range use.FindAllStringSubmatch(q.Expr, -1) {
			if m[1] != "=~" {
				t.Errorf("%s: variable used with %s, want =~ (All is .*): %s", q.Source, m[1], q.Expr)
			}
		}
	}
}

// Every alert has a severity, a summary, a description and a runbook that
// exists in docs/runbooks.md.
func TestAlertRulesComplete(t *testing.T) {
	rules, err := deploy.AlertRules()
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) < 8 {
		t.Fatalf("only %d alert rules", len(rules))
	}
	runbooks, err := os.ReadFile("../docs/runbooks.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(runbooks), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.ToLower(strings.TrimSpace(strings.TrimLeft(h, "#")))
			h = regexp.MustCompile(`[^a-z0-9 _-]`).ReplaceAllString(h, "")
			anchors[strings.ReplaceAll(h, " ", "-")] = true
		}
	}
	for _, r := range rules {
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q", r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[a] == "" {
				t.Errorf("%s: no %s", r.Alert, a)
			}
		}
		_, anchor, _ := strings.Cut(r.Annotations["runbook_url"], "docs/runbooks.md#")
		if !anchors[anchor] {
			t.Errorf("%s: runbook_url %q: no such heading in docs/runbooks.md", r.Alert, r.Annotations["runbook_url"])
		}
	}
}

// The alert rules load in Prometheus and pass their unit tests
// (prometheus/alerts_test.yml), as etcd's mixin does.
func TestAlertRulesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		// make test installs it (.ci/install-deps test); CI must run this.
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not installed: the alert rule tests cannot run")
		}
		t.Skip("promtool not installed (Debian package prometheus; make deps installs it)")
	}
	for _, args := range [][]string{
		{"check", "rules", "prometheus/alerts.yml"},
		{"test", "rules", "prometheus/alerts_test.yml"},
	} {
		var out bytes.Buffer
		cmd := exec.Command(promtool, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
	}
}
