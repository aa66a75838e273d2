package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/cluster"
	"github.com/sitewitness/witness/cluster/clustertest"
	"github.com/sitewitness/witness/config"
)

// startNode runs a one-witness cluster and returns its admin address.
func startNode(t *testing.T) string {
	t.Helper()
	c := config.Default()
	c.Name, c.Site, c.DataDir = "east-1", "east", filepath.Join(t.TempDir(), "d")
	c.RaftAddr, c.GossipAddr, c.AdminAddr, c.MetricsAddr = clustertest.FreeAddr(t), clustertest.FreeAddr(t), "127.0.0.1:0", ""
	c.Raft.HeartbeatTimeout, c.Raft.ElectionTimeout, c.Raft.LeaderLeaseTimeout = config.Duration(100*time.Millisecond), config.Duration(100*time.Millisecond), config.Duration(50*time.Millisecond)
	c.InitialVoters = []config.Voter{{Name: c.Name, RaftAddr: c.RaftAddr, GossipAddr: c.GossipAddr}}
	n, err := cluster.Start(context.Background(), cluster.Options{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return n.AdminAddr()
}

func ctl(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

const groupsDoc = `
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
`

func TestStatusJSONContract(t *testing.T) {
	addr := startNode(t)
	if out, errs, code := ctl(t, groupsDoc, "--addr", addr, "apply", "-f", "-"); code != 0 {
		t.Fatalf("apply: exit %d: %s %s", code, out, errs)
	}
	out, errs, code := ctl(t, "", "--addr", addr, "status", "-o", "json")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errs)
	}
	// Decode generically: the field names and JSON types are the contract.
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status output is not one JSON object: %v\n%s", err, out)
	}
	members := st["members"].([]any)
	groups := st["groups"].([]any)
	got := map[string]any{
		"leader": st["leader"],
		"member": pick(members[0].(map[string]any), "name", "site", "voter", "alive"),
		"group":  pick(groups[0].(map[string]any), "name", "active_site", "token", "mode", "armed"),
	}
	want := map[string]any{
		"leader": "east-1",
		"member": map[string]any{"name": "east-1", "site": "east", "voter": true, "alive": true},
		"group":  map[string]any{"name": "app", "active_site": "east", "token": float64(1), "mode": "auto", "armed": true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status JSON (-want +got):\n%s", diff)
	}
	if _, ok := members[0].(map[string]any)["address"].(string); !ok {
		t.Errorf("member address missing: %v", members[0])
	}
}

func pick(m map[string]any, keys ...string) map[string]any {
	out := map[string]any{}
	for _, k := range keys {
		out[k] = m[k]
	}
	return out
}

func TestCommandsAndExitCodes(t *testing.T) {
	addr := startNode(t)
	ctl(t, groupsDoc, "--addr", addr, "apply", "-f", "-")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		// West's probe fails: it is no switchover target.
		{"switchover to a site not seen working", []string{"switchover", "app", "west"}, 1, ""},
		{"failover without a reason", []string{"failover", "app", "west"}, 2, ""},
		{"failover unconfirmed without a terminal", []string{"failover", "app", "west", "--reason", "drill"}, 1, ""},
		{"failover", []string{"failover", "app", "west", "--reason", "drill", "--yes"}, 0, "east -> west at token 2"},
		{"stale token", []string{"switchover", "app", "east", "--token", "1"}, 1, ""},
		{"group detail", []string{"group", "app"}, 0, "active at west, token 2"},
		{"disarm", []string{"disarm", "app"}, 0, "disarmed"},
		{"mode", []string{"mode", "app", "observe"}, 0, "mode observe"},
		{"bad mode", []string{"mode", "app", "sometimes"}, 2, ""},
		// A disarmed group in observe mode still takes an operator's failover.
		{"old site down needs a reason", []string{"failover", "app", "east", "--old-site-down"}, 2, ""},
		{"failover to the active site", []string{"failover", "app", "west", "--reason", "r", "--yes"}, 1, ""},
		{"failover to a site not of the group", []string{"failover", "app", "north", "--reason", "r", "--yes"}, 1, ""},
		{"failover attesting the old site down", []string{"failover", "app", "east", "--old-site-down", "--reason", "west flooded", "--yes"}, 0, "west -> east at token 3 (old site attested down)"},
		{"history shows the attestation", []string{"group", "app"}, 0, "failover (old site attested down)"},
		{"switchover scheduled", []string{"switchover", "app", "west", "--at", "+1h", "--reason", "window"}, 0, "scheduled for"},
		{"group shows the schedule", []string{"group", "app"}, 0, "switchover to west scheduled for"},
		{"a second schedule", []string{"switchover", "app", "west", "--at", "+2h"}, 1, ""},
		{"a time that has passed", []string{"switchover", "app", "west", "--at", "2020-01-01T00:00:00Z"}, 2, ""},
		{"a time that is not one", []string{"switchover", "app", "west", "--at", "tomorrow"}, 2, ""},
		{"cancel with a site", []string{"switchover", "--cancel", "app", "west"}, 2, ""},
		{"cancel", []string{"switchover", "--cancel", "app", "--reason", "freeze"}, 0, "cancelled"},
		{"group shows the cancel", []string{"group", "app"}, 0, "cancelled by"},
		{"cancel with nothing scheduled", []string{"switchover", "--cancel", "app"}, 1, ""},
		{"unknown group", []string{"group", "nope"}, 1, ""},
		{"missing argument", []string{"group"}, 2, ""},
		{"unknown command", []string{"frobnicate"}, 2, ""},
		{"members", []string{"members"}, 0, "east-1"},
		{"dry run", []string{"apply", "-f", "-", "--dry-run"}, 0, "unchanged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errs, code := ctl(t, groupsDoc, append([]string{"--addr", addr}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errs)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("stdout %q lacks %q", out, tt.wantOut)
			}
			if tt.wantCode != 0 && errs == "" {
				t.Error("failure without a message on stderr")
			}
		})
	}
}

func TestBadSpecShowsEveryFieldPath(t *testing.T) {
	addr := startNode(t)
	bad := "groups:\n  - name: app\n    sites:\n      - {name: east, probes: [{kind: ping}]}\n      - {name: north}\n"
	_, errs, code := ctl(t, bad, "--addr", addr, "apply", "-f", "-")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, path := range []string{"groups[0].sites[0].probes[0].kind", "groups[0].sites[1].probes"} {
		if !strings.Contains(errs, path) {
			t.Errorf("stderr lacks %s:\n%s", path, errs)
		}
	}
}

// On a terminal, failover names what it does and asks for the group's
// name; anything else changes nothing.
func TestFailoverAsksForConfirmation(t *testing.T) {
	addr := startNode(t)
	ctl(t, groupsDoc, "--addr", addr, "apply", "-f", "-")
	stdinIsTerminal = func(io.Reader) bool { return true }
	t.Cleanup(func() { stdinIsTerminal = isTerminal })

	_, errs, code := ctl(t, "no\n", "--addr", addr, "failover", "app", "west", "--reason", "drill", "--force")
	if code != 1 || !strings.Contains(errs, "Failover of app from east to west") || !strings.Contains(errs, "--force: the data-loss guard is overridden") {
		t.Fatalf("declined: exit %d, stderr %q", code, errs)
	}
	if out, _, _ := ctl(t, "", "--addr", addr, "group", "app"); !strings.Contains(out, "active at east, token 1") {
		t.Fatalf("a declined failover moved the group:\n%s", out)
	}
	out, errs, code := ctl(t, "app\n", "--addr", addr, "failover", "app", "west", "--reason", "drill", "--force", "--wait", "0")
	if code != 0 || !strings.Contains(out, "east -> west at token 2") {
		t.Fatalf("confirmed: exit %d\nstdout %s\nstderr %s", code, out, errs)
	}
}
