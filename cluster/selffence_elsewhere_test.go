package cluster

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/sitewitness/witness/actions"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// fencedCall reports whether rec was asked to fence call.
func fencedCall(rec *fenceRecorder, call string) bool {
	calls, _ := rec.get()
	return slices.Contains(calls, call)
}

// observedAtEast is group app active at east, observed only (nothing
// fails it over), whose east witness fences itself a second after it
// loses its lease.
const observedAtEast = `
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    policy: {failover_after: 1h, fence_after: 1s, mode: observe}
    actions:
      postgres: {dsn: {east: "host=east-db user=witness", west: "host=west-db user=witness"}, roles: [app]}
`

const elsewhereDoc = `
groups:
  - name: app
    sites:
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
    policy: {failover_after: 1h, fence_after: 1s, mode: observe}
    actions:
      postgres: {dsn: {east: "host=east-db user=witness", west: "host=west-db user=witness"}, roles: [app]}
`

// A witness cut off from the voters fences its site's database also for a
// group that its replica says is active elsewhere: its site may have
// become active without it hearing of it (a promotion whose answer was
// lost), and the leader may then promote another site by the lease rule.
// (The fence stamps a standby and fences a primary; it never promotes.)
func TestLeaseLossFencesASiteNotKnownActive(t *testing.T) {
	rec := &fenceRecorder{}
	fencedElsewhere(t, rec, rec.database)
}

// fencedElsewhere starts a cluster whose east witness opens its
// databases with open (recording in rec), applies elsewhereDoc, cuts east
// off (the other witnesses stop) and waits for east to fence its
// database of the group active at west.
func fencedElsewhere(t *testing.T, rec *fenceRecorder, open LocalDatabase) *testCluster {
	t.Helper()
	tc := newTestClusterWith(t, func(i int, o *Options) {
		if i == 0 {
			o.LocalDatabase = open
		}
	}, "east", "west", "tiebreak")
	_, leader := tc.leader()
	applyDoc(t, leader, elsewhereDoc)
	eventually(t, "east to replicate the group active at west", func() bool {
		g, ok := tc.nodes[0].FSM().Group("app")
		return ok && g.GetStatus().GetActiveSite() == "west"
	})
	if calls, _ := rec.get(); len(calls) != 0 {
		t.Fatalf("fenced while in contact: %v", calls)
	}
	tc.stop(1)
	tc.stop(2)
	eventually(t, "east to fence its database of a group active elsewhere", func() bool {
		return fencedCall(rec, "fence host=east-db user=witness app@1")
	})
	return tc
}

// A witness restarted while cut off fences its site's database from the
// record it keeps in data_dir, whatever its replica says: hashicorp/raft
// applies the log past the last snapshot only once a leader tells it the
// commit index, so the replica of a restarted witness alone is empty.
func TestRestartedWitnessFencesFromItsRecord(t *testing.T) {
	rec := &fenceRecorder{}
	tc := newTestClusterWith(t, func(i int, o *Options) {
		if i == 1 {
			o.LocalDatabase = rec.database
		}
	}, "east", "west", "tiebreak")
	_, leader := tc.leader()
	applyDoc(t, leader, elsewhereDoc)
	record := filepath.Join(tc.cfgs[1].DataDir, localGroupsFile)
	eventually(t, "west to record the group", func() bool {
		l, err := loadLocalGroups(tc.cfgs[1].DataDir, "west")
		return err == nil && len(l.groups()) == 1
	})
	tc.closeAll()
	if _, err := os.Stat(record); err != nil {
		t.Fatal(err)
	}
	tc.start(1)
	if n := len(tc.nodes[1].FSM().Groups()); n != 0 {
		t.Logf("the restarted replica holds %d groups", n)
	}
	eventually(t, "the restarted witness to fence its database from its record", func() bool {
		return fencedCall(rec, "fence host=west-db user=witness app@1")
	})
}

// standbyFencer is a fenceRecorder whose fence stopped a standby (as a
// self-fence does that cannot tell it from a primary under load): it
// records and counts the starts of that standby.
type standbyFencer struct {
	*fenceRecorder
	starts atomic.Int32
}

func (f *standbyFencer) database(g *witnessv1.Group, site string) actions.Database {
	return standbyDB{f.db(g, site), f}
}

type standbyDB struct {
	*recordedDB
	f *standbyFencer
}

func (d standbyDB) StartStoppedStandby(context.Context) (bool, error) {
	d.f.starts.Add(1)
	return true, d.r.record("start", d.dsn, d.group, d.token)
}

// When the lease returns, a self-fence of a group active elsewhere ends
// and the standby it may have stopped is started again as a standby:
// nothing else would start it, and a move here could not promote it.
func TestSelfFenceElsewhereStartsTheStandbyAgain(t *testing.T) {
	f := &standbyFencer{fenceRecorder: &fenceRecorder{}}
	tc := fencedElsewhere(t, f.fenceRecorder, f.database)
	if n := f.starts.Load(); n != 0 {
		t.Fatalf("started the standby %d times while the lease is lost", n)
	}
	tc.start(1)
	tc.start(2)
	eventually(t, "east to start its standby again once the lease is back", func() bool { return f.starts.Load() > 0 })
}
