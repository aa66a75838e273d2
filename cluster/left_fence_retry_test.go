package cluster

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sitewitness/witness/actions"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// flakyLeftFence is a fenceRecorder whose database does not answer the
// first looks, then shows a self-fence that an earlier run left.
type flakyLeftFence struct {
	fenceRecorder
	mu    sync.Mutex
	fails int // looks still to fail
	looks int
}

func (f *flakyLeftFence) database(g *witnessv1.Group, site string) actions.Database {
	return flakyDB{f.db(g, site), f}
}

type flakyDB struct {
	*recordedDB
	f *flakyLeftFence
}

func (d flakyDB) Fenced(context.Context, uint64) (bool, error) {
	f := d.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.looks++
	if f.fails > 0 {
		f.fails--
		return false, errors.New("connection refused")
	}
	return true, nil
}

// A restarted witness whose first look at a fence its earlier run left
// fails looks again, and lifts the fence by the usual rule: the site is
// not left fenced for good because its database was slow to answer.
func TestLeftFenceLookedAtAgainAfterAnError(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	tc.stop(0)
	f := &flakyLeftFence{fails: 2}
	n, err := Start(context.Background(), Options{Config: tc.cfgs[0], Logger: testLogger(t), LocalDatabase: f.database, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	tc.nodes[0] = n
	_, leader := tc.leader()
	applyDoc(t, leader, `
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    policy: {failover_after: 1h, fence_after: 2s, mode: observe}
    actions:
      postgres: {dsn: {east: "host=east-db user=witness", west: "host=west-db user=witness"}, roles: [app]}
`)
	eventually(t, "the fence left by the earlier run to be lifted", func() bool {
		calls, _ := f.get()
		for _, c := range calls {
			if c == "unfence host=east-db user=witness app@1" {
				return true
			}
		}
		return false
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.looks < 3 {
		t.Errorf("looked %d times, want at least 3 (two failed)", f.looks)
	}
}

// lostAnswerFence is a fenceRecorder whose fences take effect but whose
// answers are lost: the witness cannot tell that its fence holds.
type lostAnswerFence struct{ fenceRecorder }

func (f *lostAnswerFence) database(g *witnessv1.Group, site string) actions.Database {
	return lostFenceDB{f.db(g, site)}
}

type lostFenceDB struct{ *recordedDB }

func (d lostFenceDB) Fence(ctx context.Context, token uint64) error {
	_ = d.recordedDB.Fence(ctx, token)
	return errors.New("answer lost")
}

// A self-fence whose answer was lost may hold all the same: when the
// lease is renewed, it is lifted by the usual rule rather than forgotten,
// so the site is not left fenced with nothing failed over.
func TestSelfFenceWithALostAnswerIsLifted(t *testing.T) {
	f := &lostAnswerFence{}
	tc := newTestClusterWith(t, func(i int, o *Options) {
		if i == 0 {
			o.LocalDatabase = f.database
		}
	}, "east", "west", "tiebreak")
	_, leader := tc.leader()
	applyDoc(t, leader, observedAtEast)
	eventually(t, "east to replicate the group", func() bool { _, ok := tc.nodes[0].FSM().Group("app"); return ok })
	tc.stop(1)
	tc.stop(2)
	eventually(t, "east to fence itself", func() bool { return fencedCall(&f.fenceRecorder, "fence host=east-db user=witness app@1") })
	tc.start(1)
	tc.start(2)
	eventually(t, "the fence whose answer was lost to be lifted", func() bool {
		return fencedCall(&f.fenceRecorder, "unfence host=east-db user=witness app@1")
	})
}
