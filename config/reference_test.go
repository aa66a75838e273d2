package config_test

import (
	"bufio"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/config"
)

// referenceFile is the operator's reference of every configuration key.
const referenceFile = "../docs/config-reference.md"

// yamlPaths lists every key path of t as written in YAML: nested mappings
// joined with ".", list elements as "[]" (raft.heartbeat_timeout,
// groups[].sites[].probes[].url). Containers are listed as well as their
// keys.
func yamlPaths(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		path := prefix + name
		out = append(out, path)
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			out = append(out, yamlPaths(ft, path+".")...)
		case ft.Kind() == reflect.Slice && elem(ft).Kind() == reflect.Struct:
			out = append(out, yamlPaths(elem(ft), path+"[].")...)
		}
	}
	return out
}

func elem(t reflect.Type) reflect.Type {
	t = t.Elem()
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// reference reads the reference: the key paths in the first column of
// every table whose header starts with "key", and every other name written
// in backticks anywhere.
func reference(t *testing.T) (keys []string, quoted map[string]bool) {
	t.Helper()
	f, err := os.Open(referenceFile)
	if err != nil {
		t.Fatalf("the configuration reference is missing: %v", err)
	}
	defer f.Close()
	code := regexp.MustCompile("`([^`]+)`")
	quoted = map[string]bool{}
	inKeyTable := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		for _, m := range code.FindAllStringSubmatch(line, -1) {
			quoted[m[1]] = true
		}
		if !strings.HasPrefix(line, "|") {
			inKeyTable = false
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		first := strings.TrimSpace(cells[0])
		switch {
		case strings.EqualFold(first, "key"):
			inKeyTable = true
			continue
		case !inKeyTable || strings.HasPrefix(first, "--") || strings.HasPrefix(first, ":-"):
			continue
		}
		m := code.FindStringSubmatch(first)
		if m == nil || m[0] != first {
			t.Errorf("%s: key table row %q: the first column must be one key path in backticks", referenceFile, line)
			continue
		}
		keys = append(keys, m[1])
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return keys, quoted
}

// The reference documents every key the code reads, and no key it does
// not: a field added to, renamed in or removed from config.Node or
// config.GroupsDoc fails here until docs/config-reference.md follows.
func TestReferenceCoversEveryKey(t *testing.T) {
	documented, _ := reference(t)
	for _, tc := range []struct {
		name string
		typ  reflect.Type
	}{
		{"node configuration", reflect.TypeFor[config.Node]()},
		{"group specs", reflect.TypeFor[config.GroupsDoc]()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range yamlPaths(tc.typ, "") {
				if !slices.Contains(documented, p) {
					t.Errorf("key %s is not in a key table of %s", p, referenceFile)
				}
			}
		})
	}
	t.Run("no unknown keys", func(t *testing.T) {
		known := append(yamlPaths(reflect.TypeFor[config.Node](), ""), yamlPaths(reflect.TypeFor[config.GroupsDoc](), "")...)
		seen := map[string]bool{}
		for _, k := range documented {
			if !slices.Contains(known, k) {
				t.Errorf("%s documents key %s, which config.Node and config.GroupsDoc do not have", referenceFile, k)
			}
			if seen[k] {
				t.Errorf("%s documents key %s twice", referenceFile, k)
			}
			seen[k] = true
		}
	})
}

// The walk itself finds nested, listed and pointed-to keys, so that the
// test above cannot pass by finding nothing.
func TestYAMLPaths(t *testing.T) {
	type inner struct {
		URL  string            `yaml:"url"`
		Vals map[string]string `yaml:"values"`
	}
	type doc struct {
		Top   int      `yaml:"top"`
		Ptr   *inner   `yaml:"ptr"`
		List  []inner  `yaml:"list"`
		PList []*inner `yaml:"plist"`
		Plain []string `yaml:"plain"`
		Skip  string   `yaml:"-"`
	}
	want := []string{"top", "ptr", "ptr.url", "ptr.values", "list", "list[].url", "list[].values",
		"plist", "plist[].url", "plist[].values", "plain"}
	if diff := cmp.Diff(want, yamlPaths(reflect.TypeFor[doc](), "")); diff != "" {
		t.Errorf("yamlPaths (-want +got):\n%s", diff)
	}
	for _, p := range []string{"raft.heartbeat_timeout", "initial_voters[].gossip_addr"} {
		if !slices.Contains(yamlPaths(reflect.TypeFor[config.Node](), ""), p) {
			t.Errorf("node paths lack %s", p)
		}
	}
	for _, p := range []string{"groups[].sites[].probes[].fail_threshold", "groups[].actions.dns.records[].ttl", "groups[].actions.dns.tsig.secret_file"} {
		if !slices.Contains(yamlPaths(reflect.TypeFor[config.GroupsDoc](), ""), p) {
			t.Errorf("group paths lack %s", p)
		}
	}
}

// Every WITNESS_* variable that ApplyEnv reads is named in the reference.
func TestReferenceCoversEnvironment(t *testing.T) {
	_, quoted := reference(t)
	var asked []string
	n := config.Default()
	n.ApplyEnv(func(name string) string {
		asked = append(asked, name)
		return ""
	})
	if len(asked) == 0 {
		t.Fatal("ApplyEnv read no variables")
	}
	for _, name := range asked {
		if !quoted[name] {
			t.Errorf("environment variable %s is not named in %s", name, referenceFile)
		}
	}
}
