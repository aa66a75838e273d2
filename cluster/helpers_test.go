package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sitewitness/witness/cluster/clustertest"
	"github.com/sitewitness/witness/config"
)

// testCluster is an in-process cluster of witnesses on loopback.
type testCluster struct {
	t     *testing.T
	cfgs  []config.Node
	nodes []*Node
	// options, if set, adds to the Options node i starts with.
	options func(i int, o *Options)
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("WITNESS_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func nodeConfig(t *testing.T, name, site string) config.Node {
	c := config.Default()
	c.Name, c.Site = name, site
	c.DataDir = filepath.Join(t.TempDir(), name)
	c.RaftAddr, c.GossipAddr = clustertest.FreeAddr(t), clustertest.FreeAddr(t)
	c.AdminAddr = clustertest.FreeAddr(t)
	c.MetricsAddr = ""
	c.Raft.HeartbeatTimeout = config.Duration(150 * time.Millisecond)
	c.Raft.ElectionTimeout = config.Duration(150 * time.Millisecond)
	c.Raft.LeaderLeaseTimeout = config.Duration(100 * time.Millisecond)
	c.Gossip.ProbeInterval = config.Duration(100 * time.Millisecond)
	return c
}

func newTestCluster(t *testing.T, sites ...string) *testCluster {
	t.Helper()
	return newTestClusterWith(t, nil, sites...)
}

// newTestClusterWith starts a cluster whose node i starts with the Options
// that options sets, also when restarted.
func newTestClusterWith(t *testing.T, options func(i int, o *Options), sites ...string) *testCluster {
	t.Helper()
	checkLeaks(t)
	tc := &testCluster{t: t, options: options}
	var voters []config.Voter
	for i, site := range sites {
		c := nodeConfig(t, fmt.Sprintf("%s-%d", site, i+1), site)
		tc.cfgs = append(tc.cfgs, c)
		voters = append(voters, config.Voter{Name: c.Name, RaftAddr: c.RaftAddr, GossipAddr: c.GossipAddr})
	}
	for i := range tc.cfgs {
		tc.cfgs[i].InitialVoters = voters
	}
	tc.nodes = make([]*Node, len(sites))
	for i := range tc.cfgs {
		tc.start(i)
	}
	t.Cleanup(tc.closeAll)
	return tc
}

func (tc *testCluster) start(i int) {
	tc.t.Helper()
	o := Options{Config: tc.cfgs[i], Logger: testLogger(tc.t).With("test", tc.t.Name())}
	if tc.options != nil {
		tc.options(i, &o)
	}
	n, err := Start(context.Background(), o)
	if err != nil {
		tc.t.Fatalf("start %s: %v", tc.cfgs[i].Name, err)
	}
	tc.nodes[i] = n
	running.Store(n.Name(), n)
}

// running holds the nodes the tests' clusters run, by name (names differ
// between tests: each test's nodes have their own addresses and names are
// only reused within a test).
var running sync.Map

func (tc *testCluster) stop(i int) {
	if tc.nodes[i] != nil {
		running.CompareAndDelete(tc.nodes[i].Name(), tc.nodes[i])
		tc.nodes[i].Close()
		tc.nodes[i] = nil
	}
}

func (tc *testCluster) closeAll() {
	for i := range tc.nodes {
		tc.stop(i)
	}
}

// leader waits until exactly one running node leads and the others agree.
func (tc *testCluster) leader() (int, *Node) {
	tc.t.Helper()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		idx := -1
		agree := true
		for i, n := range tc.nodes {
			if n == nil {
				continue
			}
			if n.IsLeader() {
				if idx >= 0 {
					agree = false
				}
				idx = i
			}
		}
		if idx >= 0 && agree {
			for _, n := range tc.nodes {
				if n == nil {
					continue
				}
				if name, _ := n.Leader(); name != tc.nodes[idx].Name() {
					agree = false
				}
			}
			if agree {
				return idx, tc.nodes[idx]
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc.t.Fatalf("no single leader within %v", waitFor)
	return -1, nil
}

// follower returns a running node that does not lead.
func (tc *testCluster) follower() *Node {
	li, _ := tc.leader()
	for i, n := range tc.nodes {
		if n != nil && i != li {
			return n
		}
	}
	tc.t.Fatal("no follower")
	return nil
}

// waitFor bounds each wait of these tests. The waits end as soon as their
// condition holds; the bound only matters when it never does, and is
// generous because the package runs beside others under the race detector
// on a shared machine, where elections and probes are slow.
const waitFor = 30 * time.Second

// eventually polls cond until it holds or waitFor passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventuallyOr(t, what, cond, nil)
}

// eventuallyOr is eventually, and on a timeout adds what diag says (the
// state that explains why cond never held).
func eventuallyOr(t *testing.T, what string, cond func() bool, diag func() string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			if diag != nil {
				t.Fatalf("timed out waiting for %s\n%s", what, diag())
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// explainAll says, for each running witness, its Raft state and term and
// what its policy decides about group and why.
func explainAll(tc *testCluster, group string) string {
	var b strings.Builder
	for _, n := range tc.nodes {
		if n == nil {
			continue
		}
		leader, _ := n.Leader()
		fmt.Fprintf(&b, "%s: leader %q, raft %v", n.Name(), leader, n.raft.Stats()["term"])
		if e := n.explain(group); e != nil {
			fmt.Fprintf(&b, ", decides %s: %s", e.GetAction(), e.GetReason())
			for _, s := range e.GetSites() {
				for _, o := range s.GetObservers() {
					fmt.Fprintf(&b, "; %s seen %s by %s", s.GetSite(), o.GetState(), o.GetSite())
				}
			}
		}
		if g, ok := n.fsm.Group(group); ok {
			fmt.Fprintf(&b, "; active %s token %d", g.GetStatus().GetActiveSite(), g.GetStatus().GetToken())
		}
		b.WriteString("\n")
	}
	return b.String()
}

// checkLeaks fails the test if goroutines started during it are still
// running once its cleanups have run.
func checkLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if runtime.NumGoroutine() <= before {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var ours []string
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "sitewitness/witness") || strings.Contains(g, "hashicorp") {
				ours = append(ours, g)
			}
		}
		t.Errorf("%d goroutines leaked (before %d):\n%s", runtime.NumGoroutine()-before, before, strings.Join(ours, "\n\n"))
	})
}
