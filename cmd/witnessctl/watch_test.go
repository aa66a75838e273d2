package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sitewitness/witness/actions/actionstest"
	"github.com/sitewitness/witness/cluster"
	"github.com/sitewitness/witness/cluster/clustertest"
	"github.com/sitewitness/witness/config"
)

// lockedBuffer is a bytes.Buffer that a running command writes while the
// test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startSites runs a witness at each of east, west and tiebreak, with a
// recording runner for the steps, and returns them.
func startSites(t *testing.T) []*cluster.Node {
	t.Helper()
	var cfgs []config.Node
	var voters []config.Voter
	for _, site := range []string{"east", "west", "tiebreak"} {
		c := config.Default()
		c.Name, c.Site, c.DataDir = site+"-1", site, filepath.Join(t.TempDir(), site)
		c.RaftAddr, c.GossipAddr, c.AdminAddr, c.MetricsAddr = clustertest.FreeAddr(t), clustertest.FreeAddr(t), "127.0.0.1:0", ""
		c.Raft.HeartbeatTimeout, c.Raft.ElectionTimeout, c.Raft.LeaderLeaseTimeout = config.Duration(150*time.Millisecond), config.Duration(150*time.Millisecond), config.Duration(100*time.Millisecond)
		c.Gossip.ProbeInterval = config.Duration(100 * time.Millisecond)
		cfgs = append(cfgs, c)
		voters = append(voters, config.Voter{Name: c.Name, RaftAddr: c.RaftAddr, GossipAddr: c.GossipAddr})
	}
	runner := actionstest.NewRunner()
	var nodes []*cluster.Node
	for _, c := range cfgs {
		c.InitialVoters = voters
		n, err := cluster.Start(context.Background(), cluster.Options{Config: c, Runner: runner})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := nodes[2].WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return nodes
}

// site is a site's service that the test turns off.
func site(t *testing.T) (*httptest.Server, *atomic.Bool) {
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &down
}

// watchRun runs `witnessctl watch` until the test ends it, and returns its
// output and a channel that yields once it returned.
func watchRun(t *testing.T, args ...string) (*lockedBuffer, chan int) {
	out, errs, done := &lockedBuffer{}, &lockedBuffer{}, make(chan int, 1)
	go func() { done <- run(args, strings.NewReader(""), out, errs) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("witnessctl %s: stderr: %s", strings.Join(args, " "), errs.String())
		}
	})
	return out, done
}

// `witnessctl watch` through a whole failover: the verdicts turn, the
// decision waits, the failover commits, the group is disarmed, the steps
// run; in that order, as text and as JSON lines.
func TestWatchThroughAFailover(t *testing.T) {
	nodes := startSites(t)
	east, eastDown := site(t)
	west, _ := site(t)
	keyFile := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(keyFile, []byte("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`
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
`, east.URL, west.URL, keyFile)
	tiebreak, westNode := nodes[2].AdminAddr(), nodes[1].AdminAddr()
	// Right after the election a forwarded write may find no leader yet,
	// and the tiebreaker's replica may apply the group a moment later.
	deadline := time.Now().Add(10 * time.Second)
	for applied := false; ; {
		if !applied {
			_, _, code := ctl(t, doc, "--addr", tiebreak, "apply", "-f", "-")
			applied = code == 0
		}
		if _, _, code := ctl(t, "", "--addr", tiebreak, "group", "app"); applied && code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("group app not applied at the tiebreaker")
		}
		time.Sleep(50 * time.Millisecond)
	}
	text, textDone := watchRun(t, "--addr", tiebreak, "watch", "app")
	js, jsDone := watchRun(t, "--addr", westNode, "watch", "-o", "json")
	waitOutput(t, text, "app observation: east seen from west: healthy")
	waitOutput(t, js, `"kind":"decision"`)

	eastDown.Store(true)
	waitOutput(t, text, "app step: settle, token 2")
	// The JSON layout puts the token before the step's name; the settle
	// of token 1 at the start must not end the wait.
	waitOutput(t, js, `{"token":2,"step":"settle"`)
	nodes[2].Close()
	nodes[1].Close()
	<-textDone
	<-jsDone

	lines := strings.Split(strings.TrimSpace(text.String()), "\n")
	// What any witness's view shows in this order; which observer site's
	// verdict reaches the watched witness first, and whether its own
	// evaluation passes through "waiting" before the leader commits,
	// depends on gossip's timing.
	before := []string{
		"app decision: healthy: ",
		"app observation: east seen from .*: healthy",
		"app observation: east seen from .*: failing",
		"app transition: failover east -> west, token 2, by ",
	}
	// After the commit, the decision and the steps come in either order.
	for _, after := range [][]string{
		{"app decision: disarmed: disarmed after failover at token 2"},
		{"app step: dns, token 2, attempt 1, ", "app step: settle, token 2, attempt 1, "},
	} {
		want := append(slices.Clone(before), after...)
		i := 0
		for _, l := range lines {
			if i < len(want) && inOrder(l, want[i]) {
				i++
			}
		}
		if i < len(want) {
			t.Errorf("watch lines miss %q (in this order: %q); got:\n%s", want[i], want, text.String())
		}
	}
	for _, l := range lines {
		if _, err := time.Parse("2006-01-02T15:04:05.000Z", strings.Fields(l)[0]); err != nil {
			t.Errorf("line without a timestamp: %q", l)
		}
	}

	var kinds []string
	for _, l := range strings.Split(strings.TrimSpace(js.String()), "\n") {
		var e watchJSON
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("json line %q: %v", l, err)
		}
		if e.Node != "west-1" || e.Group != "app" || e.At.IsZero() {
			t.Errorf("json event without node, group or time: %q", l)
		}
		switch {
		case e.Kind == "transition" && e.Transition.Kind == "failover" && e.Transition.From == "east" && e.Transition.To == "west":
			kinds = append(kinds, "failover")
		case e.Kind == "step" && e.Step.Step == "settle" && e.Step.OK && e.Step.Token == 2:
			kinds = append(kinds, "settled")
		}
	}
	if strings.Join(kinds, ",") != "failover,settled" {
		t.Errorf("json transition and settle events: %v, want failover then settled; got:\n%s", kinds, js.String())
	}
}

func waitOutput(t *testing.T, b *lockedBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in:\n%s", s, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// `witnessctl history` lists transitions newest first with their steps.
func TestHistory(t *testing.T) {
	addr := startNode(t)
	if out, errs, code := ctl(t, groupsDoc, "--addr", addr, "apply", "-f", "-"); code != 0 {
		t.Fatalf("apply: exit %d: %s %s", code, out, errs)
	}
	// One witness sees no site healthy by a majority, so the move is an
	// operator's failover.
	if out, errs, code := ctl(t, "", "--addr", addr, "failover", "app", "west", "--reason", "test move", "--yes"); code != 0 {
		t.Fatalf("failover: exit %d: %s %s", code, out, errs)
	}
	out, errs, code := ctl(t, "", "--addr", addr, "history", "app", "-o", "json")
	if code != 0 {
		t.Fatalf("history: exit %d: %s", code, errs)
	}
	var hs []historyJSON
	if err := json.Unmarshal([]byte(out), &hs); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var got []string
	for _, h := range hs {
		got = append(got, fmt.Sprintf("%d %s %s->%s %s", h.Token, h.Kind, h.From, h.To, h.Reason))
	}
	if len(hs) < 2 || hs[0].Kind != "failover" || hs[len(hs)-1].Kind != "initial" || hs[0].Token <= hs[len(hs)-1].Token || !strings.Contains(hs[0].Reason, "test move") {
		t.Errorf("history, newest first: %q", got)
	}
	text, _, _ := ctl(t, "", "--addr", addr, "history", "app")
	if !strings.Contains(text, "failover") || !strings.Contains(text, "reason: test move") {
		t.Errorf("history text:\n%s", text)
	}
}

// inOrder reports whether line holds the parts of want, split at ".*", in
// that order.
func inOrder(line, want string) bool {
	for _, part := range strings.Split(want, ".*") {
		i := strings.Index(line, part)
		if i < 0 {
			return false
		}
		line = line[i+len(part):]
	}
	return true
}
