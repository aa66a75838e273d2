package deploy

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

//go:embed grafana/dashboards/*.json prometheus/alerts.yml
var files embed.FS

// Kinds of Query.
const (
	KindPanel      = "panel"      // a target of a dashboard panel
	KindVariable   = "variable"   // a dashboard variable's label_values query
	KindAnnotation = "annotation" // a dashboard annotation's query
	KindAlert      = "alert"      // an alert rule's expression
)

// Query is one PromQL expression shipped in deploy/.
type Query struct {
	Kind string
	// Source names where it is: the dashboard file and panel title, or the
	// alert's name.
	Source string
	Expr   string
	// Description is a panel's description, which says what the panel
	// needs beyond the default metrics.
	Description string
}

// Queries returns every PromQL expression of the Grafana dashboards and the
// alert rules, in a fixed order. A variable's label_values(METRIC, LABEL)
// is returned as METRIC.
func Queries() ([]Query, error) {
	var out []Query
	names, err := fs.Glob(files, "grafana/dashboards/*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for _, name := range names {
		qs, err := dashboardQueries(name)
		if err != nil {
			return nil, err
		}
		out = append(out, qs...)
	}
	rules, err := AlertRules()
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		out = append(out, Query{Kind: KindAlert, Source: "alert " + r.Alert, Expr: r.Expr})
	}
	return out, nil
}

type dashboard struct {
	Title       string  `json:"title"`
	UID         string  `json:"uid"`
	Panels      []panel `json:"panels"`
	Annotations struct {
		List []struct {
			Name string `json:"name"`
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Title       string  `json:"title"`
	Type        string  `json:"type"`
	Description string  `json:"description"`
	Panels      []panel `json:"panels"`
	Targets     []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

var labelValues = regexp.MustCompile(`^\s*label_values\(\s*(.+?)\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)

func dashboardQueries(name string) ([]Query, error) {
	b, err := files.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	file := path.Base(name)
	var out []Query
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				return nil, fmt.Errorf("%s: variable %s: %w", name, v.Name, err)
			}
			q = obj.Query
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			return nil, fmt.Errorf("%s: variable %s: want label_values(METRIC, LABEL), have %q", name, v.Name, q)
		}
		out = append(out, Query{Kind: KindVariable, Source: fmt.Sprintf("%s variable $%s", file, v.Name), Expr: m[1]})
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			out = append(out, Query{Kind: KindAnnotation, Source: fmt.Sprintf("%s annotation %q", file, a.Name), Expr: a.Expr})
		}
	}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) != "" {
					out = append(out, Query{Kind: KindPanel, Source: fmt.Sprintf("%s panel %q", file, p.Title), Expr: t.Expr, Description: p.Description})
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out, nil
}

// Rule is one alert rule of deploy/prometheus/alerts.yml.
type Rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// AlertRules returns the alert rules in file order.
func AlertRules() ([]Rule, error) {
	b, err := files.ReadFile("prometheus/alerts.yml")
	if err != nil {
		return nil, err
	}
	var doc struct {
		Groups []struct {
			Rules []Rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("alerts.yml: %w", err)
	}
	var out []Rule
	for _, g := range doc.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// Grafana's interval variables, and the values Substitute gives them.
var intervals = map[string]string{"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}

var variable = regexp.MustCompile(`\$\{([a-zA-Z0-9_]+)(?::[a-z]+)?\}|\$([a-zA-Z0-9_]+)|\[\[([a-zA-Z0-9_]+)\]\]`)

// Substitute replaces the dashboard variables of expr: the interval ones by
// fixed durations, every other one by ".*" (its "All" value; dashboards use
// them as label=~"$var").
func Substitute(expr string) string {
	return variable.ReplaceAllStringFunc(expr, func(m string) string {
		s := variable.FindStringSubmatch(m)
		name := s[1] + s[2] + s[3]
		if v, ok := intervals[name]; ok {
			return v
		}
		return ".*"
	})
}

// WithoutThreshold turns every comparison of expr outside label matchers
// and strings into its bool form (a > 5 becomes a > bool 5), so the
// expression returns every series it compares, 0 or 1, rather than only
// those past the threshold: a healthy alert's expression then still has
// series, and one that reads a metric no longer exported has none.
func WithoutThreshold(expr string) string {
	var b strings.Builder
	depth, quote := 0, byte(0)
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case quote != 0:
			b.WriteByte(c)
			if c == '\\' && i+1 < len(expr) {
				i++
				b.WriteByte(expr[i])
			} else if c == quote {
				quote = 0
			}
			continue
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '{':
			depth++
		case c == '}':
			depth--
		}
		if depth > 0 || !strings.ContainsRune("=!<>", rune(c)) {
			b.WriteByte(c)
			continue
		}
		op := string(c)
		if i+1 < len(expr) && expr[i+1] == '=' {
			op += "="
		}
		if op == "=" || op == "!" { // not a comparison (=~ and !~ live in matchers)
			b.WriteByte(c)
			continue
		}
		b.WriteString(op)
		i += len(op) - 1
		if !strings.HasPrefix(strings.TrimLeft(expr[i+1:], " "), "bool") {
			b.WriteString(" bool")
		}
	}
	return b.String()
}

var (
	stringLit  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	matchers   = regexp.MustCompile(`\{[^}]*\}`)
	identifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// metricPrefixes are the prefixes of the metrics Witness exports; an
// identifier in a query that starts with one is a metric name.
var metricPrefixes = []string{"witness_", "grpc_server_"}

// MetricNames returns, sorted and once each, the metric names expr reads:
// identifiers outside strings and label matchers that begin with a prefix
// of Witness's metrics.
func MetricNames(expr string) []string {
	expr = matchers.ReplaceAllString(stringLit.ReplaceAllString(expr, `""`), "{}")
	seen := map[string]bool{}
	for _, id := range identifier.FindAllString(expr, -1) {
		for _, p := range metricPrefixes {
			if strings.HasPrefix(id, p) {
				seen[id] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}
