package witness_test

import (
	"errors"
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The import arrows of DESIGN.md: cmd → cluster → (policy, probes,
// actions) → fsm, nothing imports cmd or cluster from below, and the pure
// packages (fsm, policy) import no I/O. Each package of the module has a
// rule; the non-test imports of every package are checked against it.

const module = "github.com/sitewitness/witness"

// rule says what one package (or, ending in "/...", a tree) may import.
type rule struct {
	// internal lists the module packages it may import (relative to the
	// module, "/..." for a tree); "..." allows every one.
	internal []string
	// external, when not nil, lists the only non-standard packages it may
	// import (by path prefix).
	external []string
	// pure forbids the standard library's I/O, clock-free randomness and
	// logging packages.
	pure bool
}

// everything, as a list of internal packages.
var everything = []string{"..."}

// ioPackages are what a pure package must not import: I/O of any kind,
// randomness and logging. A prefix ending in "/" covers a tree.
var ioPackages = []string{
	"net", "net/", "os", "os/", "io/fs", "io/ioutil", "syscall", "database/", "log", "log/",
	"math/rand", "math/rand/", "crypto/rand", "runtime/cgo", "plugin", "unsafe",
}

// rules are DESIGN's package table; the longest matching key applies.
var rules = map[string]rule{
	// The admin API, generated; its gRPC stubs are its own business.
	"proto/witness/v1": {},
	// Replicated state: deterministic, no I/O.
	"fsm": {internal: []string{"proto/witness/v1"}, external: []string{"google.golang.org/protobuf/"}, pure: true},
	// The decision engine: pure.
	"policy": {internal: []string{"fsm", "proto/witness/v1"}, external: []string{"google.golang.org/protobuf/"}, pure: true},
	// Time for every decision: a leaf, below everything that decides.
	"clock": {internal: []string{}, external: []string{}},
	// Probes: stdlib, pgx, miekg/dns.
	"probes": {internal: []string{"clock"}, external: []string{"github.com/jackc/pgx/", "github.com/miekg/dns"}},
	// The reconciler and its targets.
	"actions/...": {internal: []string{"clock", "fsm", "proto/witness/v1", "actions/..."}},
	"config":      {internal: []string{"fsm", "proto/witness/v1"}},
	// One node; cluster/clustertest is its test helper.
	"cluster/...": {internal: []string{"clock", "fsm", "policy", "probes", "actions/...", "config", "proto/witness/v1", "cluster/..."}},
	// The admin CLI talks to the API only.
	"cmd/witnessctl":   {internal: []string{"proto/witness/v1", "cmd/internal/..."}},
	"cmd/internal/...": {internal: []string{"proto/witness/v1", "cmd/internal/..."}},
	"cmd/witnessd":     {internal: everything},
	// The simulator runs the cluster in one process.
	"integration/sim/...": {internal: []string{"clock", "cluster/...", "fsm", "policy", "probes", "actions/...", "config", "proto/witness/v1", "integration/sim/..."}},
	// The real-process tests drive the binaries, not the packages below
	// cmd; they may use the packages the binaries are made of.
	"integration/...": {internal: []string{"clock", "deploy", "actions/...", "fsm", "policy", "probes", "config", "proto/witness/v1", "integration/..."}},
	"deploy/...":      {},
}

func TestImportArrows(t *testing.T) {
	pkgs := modulePackages(t)
	if len(pkgs) < 10 {
		t.Fatalf("found only %d packages: %v", len(pkgs), pkgs)
	}
	for _, p := range checkImports(pkgs) {
		t.Error(p)
	}
}

// The check itself fails on each kind of broken arrow.
func TestImportArrowsCatchBreakage(t *testing.T) {
	fine := map[string][]string{
		"fsm":          {"fmt", module + "/proto/witness/v1", "google.golang.org/protobuf/proto"},
		"policy":       {"time", module + "/fsm"},
		"cluster":      {"github.com/hashicorp/raft", module + "/policy"},
		"cmd/witnessd": {module + "/cluster"},
	}
	if p := checkImports(fine); len(p) != 0 {
		t.Fatalf("a sound graph is refused: %v", p)
	}
	tests := []struct {
		name, pkg, imp string
	}{
		{"policy imports cluster", "policy", module + "/cluster"},
		{"actions imports cmd", "actions/dns", module + "/cmd/witnessd"},
		{"fsm imports policy", "fsm", module + "/policy"},
		{"policy imports net", "policy", "net"},
		{"fsm imports os/exec", "fsm", "os/exec"},
		{"policy imports raft", "policy", "github.com/hashicorp/raft"},
		{"fsm imports a database driver", "fsm", "github.com/jackc/pgx/v5"},
		{"policy imports memberlist", "policy", "github.com/hashicorp/memberlist"},
		{"fsm imports grpc", "fsm", "google.golang.org/grpc"},
		{"probes imports raft", "probes", "github.com/hashicorp/raft"},
		{"witnessctl imports cluster", "cmd/witnessctl", module + "/cluster"},
		{"a package with no rule", "newpkg", "fmt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broken := map[string][]string{tt.pkg: {tt.imp}}
			if p := checkImports(broken); len(p) == 0 {
				t.Errorf("%s importing %s passes", tt.pkg, tt.imp)
			}
		})
	}
}

// modulePackages lists the module's packages (relative to the module
// root) with the imports of their non-test files for this platform.
func modulePackages(t *testing.T) map[string][]string {
	t.Helper()
	pkgs := map[string][]string{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
			return filepath.SkipDir
		}
		if path != "." {
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
		}
		p, err := build.ImportDir(path, 0)
		if err != nil {
			if _, none := errors.AsType[*build.NoGoError](err); none {
				return nil
			}
			return err
		}
		if path == "." {
			return nil // this test's own package
		}
		pkgs[filepath.ToSlash(path)] = p.Imports
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// checkImports returns one problem per import that breaks a rule, and one
// per package that has none.
func checkImports(pkgs map[string][]string) []string {
	var problems []string
	names := make([]string, 0, len(pkgs))
	for p := range pkgs {
		names = append(names, p)
	}
	slices.Sort(names)
	for _, pkg := range names {
		r, ok := ruleFor(pkg)
		if !ok {
			problems = append(problems, pkg+": no import rule; add one to imports_test.go as DESIGN.md places the package")
			continue
		}
		for _, imp := range pkgs[pkg] {
			if why := r.refuses(pkg, imp); why != "" {
				problems = append(problems, pkg+" imports "+imp+": "+why)
			}
		}
	}
	return problems
}

// ruleFor is the rule of the longest key that matches pkg.
func ruleFor(pkg string) (rule, bool) {
	best, found := "", false
	for k := range rules {
		if matches(k, pkg) && len(k) >= len(best) {
			best, found = k, true
		}
	}
	return rules[best], found
}

// matches reports whether pattern ("a/b" or "a/b/...") covers pkg.
func matches(pattern, pkg string) bool {
	if pattern == "..." {
		return true
	}
	if tree, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == tree || strings.HasPrefix(pkg, tree+"/")
	}
	return pkg == pattern
}

func (r rule) refuses(pkg, imp string) string {
	if rel, ok := strings.CutPrefix(imp, module+"/"); ok {
		if !slices.ContainsFunc(r.internal, func(p string) bool { return matches(p, rel) }) {
			return "against DESIGN's arrows (cmd → cluster → policy, probes, actions → fsm)"
		}
		return ""
	}
	first, _, _ := strings.Cut(imp, "/")
	if !strings.Contains(first, ".") { // the standard library
		if r.pure && slices.ContainsFunc(ioPackages, func(p string) bool {
			return imp == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(imp, p))
		}) {
			return pkg + " is pure: no I/O, randomness or logging"
		}
		return ""
	}
	if r.external != nil && !slices.ContainsFunc(r.external, func(p string) bool { return strings.HasPrefix(imp, p) }) {
		return "not among the outside packages DESIGN allows here"
	}
	return ""
}
