package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sitewitness/witness/cluster/clustertest"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

func TestPrepareStartWritesStandbySignalUnlessActive(t *testing.T) {
	addr := startNode(t)
	ctl(t, groupsDoc, "--addr", addr, "apply", "-f", "-")
	dir := t.TempDir()
	signal := filepath.Join(dir, "standby.signal")
	exists := func() bool { _, err := os.Stat(signal); return err == nil }

	// app is active at east: west's database starts as a standby.
	if out, errs, code := ctl(t, "", "--addr", addr, "prepare-start", "app", "west", "--data-dir", dir); code != 0 || !exists() {
		t.Fatalf("west: exit %d, standby.signal %v\n%s%s", code, exists(), out, errs)
	}
	// At the active site a standby.signal left by a demotion is removed.
	if out, errs, code := ctl(t, "", "--addr", addr, "prepare-start", "app", "east", "--data-dir", dir); code != 0 || exists() {
		t.Fatalf("east: exit %d, standby.signal %v\n%s%s", code, exists(), out, errs)
	}
	// No witness answers (the first address never does): the safe side.
	silent := clustertest.NewSilent(t).Addr()
	out, errs, code := ctl(t, "", "--addr", silent+","+clustertest.FreeAddr(t), "--timeout", "300ms", "prepare-start", "app", "east", "--data-dir", dir)
	if code != 0 || !exists() || !strings.Contains(errs, "starting as a standby") {
		t.Fatalf("no witness: exit %d, standby.signal %v\n%s%s", code, exists(), out, errs)
	}
	// A relative data directory is a usage error.
	if _, _, code := ctl(t, "", "--addr", addr, "prepare-start", "app", "east", "--data-dir", "data"); code != 2 {
		t.Errorf("relative --data-dir: exit %d, want 2", code)
	}
}

// TestActingNode: of a group with several nodes at its active site, only
// the node the token promoted (or, before any, the one with the site's
// data_dir) starts as a primary; a group with one node per site is as
// before.
func TestActingNode(t *testing.T) {
	nodes := []*witnessv1.PostgresNode{
		{Name: "east-1", Site: "east", DataDir: "/srv/east"},
		{Name: "west-a", Site: "west", DataDir: "/srv/west-a"},
		{Name: "west-b", Site: "west", DataDir: "/srv/west-b"},
	}
	group := func(active, node string, nodes []*witnessv1.PostgresNode) *witnessv1.Group {
		return &witnessv1.Group{
			Spec:   &witnessv1.GroupSpec{Actions: &witnessv1.Actions{Postgres: &witnessv1.PostgresAction{Nodes: nodes}}},
			Status: &witnessv1.GroupStatus{ActiveSite: active, ActiveNode: node},
		}
	}
	for _, tt := range []struct {
		name    string
		g       *witnessv1.Group
		dataDir string
		want    bool
	}{
		{"one node per site", group("west", "", nil), "/srv/anything", true},
		{"the promoted node", group("west", "west-b", nodes), "/srv/west-b", true},
		{"another node of the active site", group("west", "west-b", nodes), "/srv/west-a/", false},
		{"no node named yet: the one with the data_dir", group("east", "", nodes), "/srv/east", true},
		{"a directory of no node", group("west", "west-b", nodes), "/srv/other", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := actingNode(tt.g, tt.dataDir); got != tt.want {
				t.Errorf("actingNode(%s) = %v, want %v", tt.dataDir, got, tt.want)
			}
		})
	}
}
