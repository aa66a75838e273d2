//go:build integration

// Package integration runs Witness's failure scenarios against real
// processes in network namespaces (see package harness). Run with
// `make integration` as root after `make deps`. A failed scenario prints
// the processes' logs and keeps its directory; WITNESS_HARNESS_KEEP=1
// keeps it for passing ones too.
package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sitewitness/witness/integration/harness"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// bin holds witnessd, built once for every scenario.
var bin string

// patience bounds each wait of a scenario for what Witness should do. It
// is generous because the suite must pass on a loaded machine: it only
// bounds how long a broken run takes to fail. A scenario that measures
// how fast something happened checks that apart from its wait.
const patience = 2 * time.Minute

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "integration: the scenarios make network namespaces and need root")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "witness-integration-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = dir
	code := func() int {
		defer os.RemoveAll(dir)
		if err := harness.Build(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		code := m.Run()
		// Every scenario closed its environment: nothing may be left.
		if left, err := harness.Leftovers(); err != nil || len(left) > 0 {
			fmt.Fprintf(os.Stderr, "integration: left behind after the scenarios: %v %v\n", left, err)
			code = 1
		}
		return code
	}()
	os.Exit(code)
}

// start builds an environment for t and tears it down at the end; when t
// failed, the processes' logs are printed and the directory kept.
func start(t *testing.T, opts harness.Options) *harness.Env {
	t.Helper()
	opts.Bin = bin
	opts.Logf = t.Logf
	env, err := harness.Start(opts)
	if err != nil {
		t.Fatalf("start the environment: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", env.Logs(6000))
		}
		if t.Failed() || os.Getenv("WITNESS_HARNESS_KEEP") != "" {
			t.Logf("environment kept in %s", env.KeepDir())
		}
		if err := env.Close(); err != nil {
			t.Errorf("close the environment: %v", err)
		}
	})
	return env
}

// checkInvariants fails t for every violated invariant: the DNS fence
// token never went down and DNS always answered its fence's site; no token
// was accepted by two databases, and (strict) no database accepted a write
// stamped lower after another accepted one stamped higher; at most
// maxTransitions transitions after token after.
func checkInvariants(t *testing.T, env *harness.Env, after uint64, maxTransitions int, strict bool) {
	t.Helper()
	for _, v := range env.DNS.Check() {
		t.Errorf("invariant: %s", v)
	}
	for _, v := range env.Writes.Check() {
		if strict || strings.Contains(v, "at both") {
			t.Errorf("invariant: %s", v)
		} else {
			t.Logf("measured: %s", v)
		}
	}
	g, err := env.Group()
	if err != nil {
		t.Errorf("read the group: %v", err)
		return
	}
	if ts := harness.Transitions(g, after); len(ts) > maxTransitions {
		t.Errorf("invariant: %d transitions after token %d, want at most %d: %v", len(ts), after, maxTransitions, ts)
	}
}

// group reads the group or fails t.
func group(t *testing.T, env *harness.Env) *witnessv1.Group {
	t.Helper()
	g, err := env.Group()
	if err != nil {
		t.Fatalf("read the group: %v", err)
	}
	return g
}

// must fails t on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }
