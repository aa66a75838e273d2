package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sitewitness/witness/cluster/clustertest"
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
