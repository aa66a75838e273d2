package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sitewitness/witness/cluster/clustertest"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// syncBuffer is a bytes.Buffer safe for the agent's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAgentRunsFromConfigFile starts `witnessd agent -config FILE` with a
// flag overriding the file, as an operator would, and asks it for its
// status through the admin API.
func TestAgentRunsFromConfigFile(t *testing.T) {
	dir := t.TempDir()
	raft, gossip, admin := clustertest.FreeAddr(t), clustertest.FreeAddr(t), clustertest.FreeAddr(t)
	conf := fmt.Sprintf(`cluster: agent-test
name: solo
site: east
data_dir: %s
raft_addr: %s
gossip_addr: %s
admin_addr: 127.0.0.1:1
metrics_addr: ""
initial_voters:
  - {name: solo, raft_addr: %q, gossip_addr: %q}
insecure: true
`, filepath.Join(dir, "data"), raft, gossip, raft, gossip)
	path := filepath.Join(dir, "witness.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	done := make(chan error, 1)
	go func() { done <- agent(ctx, []string{"-config", path, "-admin-addr", admin}, &logs) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v\n%s", err, logs.String())
		}
	}()

	conn, err := grpc.NewClient(admin, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := witnessv1.NewAdminClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		st, err := client.Status(cctx, &witnessv1.StatusRequest{})
		ccancel()
		if err == nil && st.GetLeader() == "solo" {
			if st.GetClusterId() == "" || st.GetNode() != "solo" {
				t.Errorf("status: %v", st)
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("agent ended early: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader on the flag's admin address %s: %v\n%s", admin, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "witness running") {
		t.Errorf("logs lack the start line:\n%s", logs.String())
	}
}

// A second signal during a shutdown that hangs stops waiting for it.
func TestSecondSignalStopsAHangingShutdown(t *testing.T) {
	var out syncBuffer
	log := newLogger(&out, "info")
	hang := make(chan struct{})
	defer close(hang)
	done := make(chan error, 1)
	go func() { done <- shutdown(log, func() error { <-hang; return nil }) }()
	// shutdown logs once it listens for the second signal.
	for !strings.Contains(out.String(), "shutting down") {
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "second signal (terminated)") {
			t.Errorf("shutdown = %v, want the second signal named", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a second SIGTERM did not end the shutdown")
	}
}
