package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fenceRecorder is a LocalFencer that records what it was asked.
type fenceRecorder struct {
	mu    sync.Mutex
	calls []string
	at    []time.Time
}

func (r *fenceRecorder) record(what, dsn, group string, token uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("%s %s %s@%d", what, dsn, group, token))
	r.at = append(r.at, time.Now())
	return nil
}

func (r *fenceRecorder) Fence(_ context.Context, dsn, group string, token uint64) error {
	return r.record("fence", dsn, group, token)
}

func (r *fenceRecorder) Unfence(_ context.Context, dsn, group string, token uint64) error {
	return r.record("unfence", dsn, group, token)
}

func (r *fenceRecorder) get() ([]string, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...), append([]time.Time(nil), r.at...)
}

func TestIsolatedActiveSiteFencesItselfAndLiftsItAfter(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	// Restart east with a recording fencer.
	tc.stop(0)
	rec := &fenceRecorder{}
	n, err := Start(context.Background(), Options{Config: tc.cfgs[0], Logger: testLogger(t), LocalFencer: rec})
	if err != nil {
		t.Fatal(err)
	}
	tc.nodes[0] = n
	_, leader := tc.leader()
	const fenceAfter = 1500 * time.Millisecond
	applyDoc(t, leader, fmt.Sprintf(`
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    policy: {failover_after: 1h, fence_after: %s, mode: observe}
    actions:
      postgres: {dsn: {east: "east-db", west: "west-db"}}
`, fenceAfter))
	eventually(t, "east to replicate the group", func() bool { _, ok := n.FSM().Group("app"); return ok })
	time.Sleep(2 * fenceAfter)
	if calls, _ := rec.get(); len(calls) != 0 {
		t.Fatalf("fenced while in contact: %v", calls)
	}

	// East loses the majority: the two other witnesses go away.
	lost := time.Now()
	tc.stop(1)
	tc.stop(2)
	eventually(t, "east to fence itself", func() bool { c, _ := rec.get(); return len(c) == 1 })
	calls, at := rec.get()
	if calls[0] != "fence east-db app@1" {
		t.Fatalf("calls %v", calls)
	}
	took := at[0].Sub(lost)
	t.Logf("majority lost to self-fence: %v (fence_after %v)", took, fenceAfter)
	if took < fenceAfter-leaseEvery {
		t.Errorf("fenced after %v, before fence_after %v", took, fenceAfter)
	}

	// The majority comes back and nothing failed over: the fence is lifted.
	tc.start(1)
	tc.start(2)
	eventually(t, "east to lift its fence", func() bool { c, _ := rec.get(); return len(c) == 2 })
	calls, _ = rec.get()
	if calls[1] != "unfence east-db app@1" {
		t.Fatalf("calls %v", calls)
	}
}
