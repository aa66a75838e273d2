package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/postgres"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// fenceRecorder records what a witness asked of its site's databases;
// its database method is Options.LocalDatabase.
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

func (r *fenceRecorder) database(g *witnessv1.Group, site string) actions.Database {
	return r.db(g, site)
}

func (r *fenceRecorder) db(g *witnessv1.Group, site string) *recordedDB {
	return &recordedDB{r: r, group: g.GetSpec().GetName(), token: g.GetStatus().GetToken(), dsn: g.GetSpec().GetActions().GetPostgres().GetDsn()[site]}
}

// recordedDB is a database as fenceRecorder sees it: it records every
// change and reads as a running primary with no fence.
type recordedDB struct {
	r     *fenceRecorder
	group string
	token uint64 // the group's when opened
	dsn   string
}

func (d *recordedDB) Fence(_ context.Context, token uint64) error {
	return d.r.record("fence", d.dsn, d.group, token)
}

func (d *recordedDB) Unfence(_ context.Context, token uint64) error {
	return d.r.record("unfence", d.dsn, d.group, token)
}

func (d *recordedDB) Promote(_ context.Context, token uint64) error {
	return d.r.record("promote", d.dsn, d.group, token)
}

func (d *recordedDB) Demote(_ context.Context, token uint64, mode postgres.StopMode) (bool, error) {
	return true, d.r.record("demote "+string(mode), d.dsn, d.group, token)
}

func (*recordedDB) Position(context.Context) (uint64, bool, error)    { return 0, false, nil }
func (*recordedDB) Fenced(context.Context, uint64) (bool, error)      { return false, nil }
func (*recordedDB) FinalPosition(context.Context) (uint64, error)     { return 0, nil }
func (*recordedDB) StoppedPrimary(context.Context) (bool, error)      { return false, nil }
func (*recordedDB) StartStoppedStandby(context.Context) (bool, error) { return false, nil }

func (r *fenceRecorder) get() ([]string, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...), append([]time.Time(nil), r.at...)
}

func TestIsolatedActiveSiteFencesItselfAndLiftsItAfter(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	// Restart east with a recording database.
	tc.stop(0)
	rec := &fenceRecorder{}
	reg := prometheus.NewRegistry()
	n, err := Start(context.Background(), Options{Config: tc.cfgs[0], Logger: testLogger(t), LocalDatabase: rec.database, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	tc.nodes[0] = n
	_, leader := tc.leader()
	const fenceAfter = 1500 * time.Millisecond
	log := filepath.Join(t.TempDir(), "hooks.log")
	// app has a database and local_fence hooks, one of them broken; web
	// has only a hook, which is enough to be fenced.
	applyDoc(t, leader, fmt.Sprintf(`
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    policy: {failover_after: 1h, fence_after: %[1]s, mode: observe}
    actions:
      postgres: {dsn: {east: "host=east-db user=witness", west: "host=west-db user=witness"}, roles: [app]}
      hooks:
        - {name: stop-workers, step: local_fence, command: sh, args: [-c, '%[2]s%[3]s']}
        - {name: broken, step: local_fence, command: sh, args: [-c, 'exit 4']}
  - name: web
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    policy: {failover_after: 1h, fence_after: %[1]s, mode: observe}
    actions:
      hooks:
        - {name: stop-web, step: local_fence, command: sh, args: [-c, '%[2]s%[3]s']}
`, fenceAfter, hookLine, log))
	eventually(t, "east to replicate the groups", func() bool { return len(n.FSM().Groups()) == 2 })
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
	if calls[0] != "fence host=east-db user=witness app@1" {
		t.Fatalf("calls %v", calls)
	}
	took := at[0].Sub(lost)
	t.Logf("majority lost to self-fence: %v (fence_after %v)", took, fenceAfter)
	if took < fenceAfter-leaseEvery {
		t.Errorf("fenced after %v, before fence_after %v", took, fenceAfter)
	}
	// The hooks ran on east, beside the database fence; the broken one
	// is counted.
	broken := n.metrics.localFenceHookFailures.WithLabelValues("app", "broken")
	eventually(t, "the local_fence hooks", func() bool { return len(readLines(t, log)) == 2 && testutil.ToFloat64(broken) == 1 })
	wantHooks := []string{"app east-1 east local_fence 1 east>", "web east-1 east local_fence 2 east>"}
	if diff := cmp.Diff(wantHooks, sorted(readLines(t, log))); diff != "" {
		t.Errorf("local_fence hook runs: group node site step token from>to (-want +got):\n%s", diff)
	}
	if n, err := testutil.GatherAndCount(reg, "witness_local_fence_hook_failures_total"); err != nil || n != 1 {
		t.Errorf("witness_local_fence_hook_failures_total series: %d, %v", n, err)
	}

	// The majority comes back and nothing failed over: the fence is lifted.
	tc.start(1)
	tc.start(2)
	eventually(t, "east to lift its fence", func() bool { c, _ := rec.get(); return len(c) == 2 })
	calls, _ = rec.get()
	if calls[1] != "unfence host=east-db user=witness app@1" {
		t.Fatalf("calls %v", calls)
	}
	// Once per episode: not again while it lasted, nor when it ended.
	if diff := cmp.Diff(wantHooks, sorted(readLines(t, log))); diff != "" {
		t.Errorf("local_fence hook runs after the episode (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(broken); got != 1 {
		t.Errorf("broken hook failures counted: %v, want 1", got)
	}
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}
