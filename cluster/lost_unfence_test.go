package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sitewitness/witness/actions"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// lostAnswerFencer unfences, but while lost is set the answers are lost:
// the caller sees an error while the database takes writes again.
type lostAnswerFencer struct {
	*fenceRecorder
	lost atomic.Bool
}

func (f *lostAnswerFencer) database(g *witnessv1.Group, site string) actions.Database {
	return lostUnfenceDB{f.db(g, site), f}
}

type lostUnfenceDB struct {
	*recordedDB
	f *lostAnswerFencer
}

func (d lostUnfenceDB) Unfence(ctx context.Context, token uint64) error {
	err := d.recordedDB.Unfence(ctx, token)
	if err == nil && d.f.lost.Load() {
		return errors.New("unfence: answer lost")
	}
	return err
}

// A lift of the self-fence whose answer was lost may have lifted it: when
// the lease is lost again before a lift is confirmed, the witness fences
// again, rather than count the database fenced (the simulator's seed 747:
// two writable databases).
func TestSelfFenceAgainAfterALiftWhoseAnswerWasLost(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	tc.stop(0)
	rec := &lostAnswerFencer{fenceRecorder: &fenceRecorder{}}
	rec.lost.Store(true)
	n, err := Start(context.Background(), Options{Config: tc.cfgs[0], Logger: testLogger(t), LocalDatabase: rec.database, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	tc.nodes[0] = n
	_, leader := tc.leader()
	applyDoc(t, leader, fmt.Sprintf(`
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    policy: {failover_after: 1h, fence_after: %s, mode: observe}
    actions:
      postgres: {dsn: {east: "host=east-db user=witness", west: "host=west-db user=witness"}, roles: [app]}
`, 1500*time.Millisecond))
	eventually(t, "east to replicate the group", func() bool { return len(n.FSM().Groups()) == 1 })
	calls := func(what string) int {
		c, _ := rec.get()
		return len(slices.DeleteFunc(c, func(s string) bool { return !strings.HasPrefix(s, what+" ") }))
	}

	tc.stop(1)
	tc.stop(2)
	eventually(t, "east to fence itself", func() bool { return calls("fence") == 1 })
	tc.start(1)
	tc.start(2)
	// Every lift's answer is lost; then the lease is lost again.
	eventually(t, "east to try to lift its fence", func() bool { return calls("unfence") >= 1 })
	tc.stop(1)
	tc.stop(2)
	eventually(t, "east to fence itself again", func() bool { return calls("fence") == 2 })
}
