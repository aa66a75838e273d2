package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/sitewitness/witness/config"
	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

const twoGroups = `
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
  - name: db
    sites:
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:3"}]}
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:4"}]}
`

// applyAtLeader applies cmd on n, or, when n no longer led before it
// tried (an election on a loaded machine), on the running node that leads
// now. A command that n took and lost with its leadership may have been
// committed: it is tried again only when idempotent.
func applyAtLeader(t *testing.T, n *Node, cmd proto.Message, idempotent bool) (fsm.Result, error) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		res, err := n.Apply(context.Background(), cmd)
		_, before := err.(*NotLeaderError)
		var during *NotLeaderError
		retry := before || (idempotent && errors.As(err, &during))
		if !retry || time.Now().After(deadline) {
			return res, err
		}
		time.Sleep(20 * time.Millisecond)
		if name, _ := n.Leader(); name != "" {
			if l, ok := running.Load(name); ok {
				n = l.(*Node)
			}
		}
	}
}

func applyDoc(t *testing.T, n *Node, doc string) {
	t.Helper()
	// Validated against the test nodes' own Raft timers (nodeConfig).
	specs, err := config.ParseGroupsWith([]byte(doc), config.Timing{LeaderLease: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	res, err := applyAtLeader(t, n, &witnessv1.PutGroupsCommand{Specs: specs, AtUnixNano: 1, By: "test"}, true)
	if err != nil || res.Err != nil {
		t.Fatalf("apply: %v %v", err, res.Err)
	}
}

func switchover(t *testing.T, n *Node, group, to string) uint64 {
	t.Helper()
	g, ok := n.FSM().Group(group)
	if !ok {
		t.Fatalf("group %s missing", group)
	}
	res, err := applyAtLeader(t, n, &witnessv1.TransitionCommand{
		Moves: []*witnessv1.Move{{Group: group, ExpectedToken: g.GetStatus().GetToken(), ToSite: to}},
		Kind:  witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER, AtUnixNano: 2,
	}, false)
	if err != nil || res.Err != nil {
		t.Fatalf("switchover: %v %v", err, res.Err)
	}
	return res.Tokens[group]
}

// converged waits until every running node holds the same state as want.
func (tc *testCluster) converged(want *witnessv1.State) {
	tc.t.Helper()
	for _, n := range tc.nodes {
		if n == nil {
			continue
		}
		eventually(tc.t, n.Name()+" to converge", func() bool {
			return cmp.Diff(want, n.FSM().State(), protocmp.Transform()) == ""
		})
	}
}

func TestClusterSurvivesLeaderLossAndFullRestart(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	_, leader := tc.leader()
	applyDoc(t, leader, twoGroups)
	tok := switchover(t, leader, "app", "west")
	if tok != 3 {
		t.Fatalf("switchover token = %d, want 3", tok)
	}
	want := leader.FSM().State()
	tc.converged(want)

	// Kill the leader: another is elected, with the state intact, and it
	// takes writes.
	li, _ := tc.leader()
	tc.stop(li)
	_, leader = tc.leader()
	if diff := cmp.Diff(want, leader.FSM().State(), protocmp.Transform()); diff != "" {
		t.Fatalf("new leader's state (-want +got):\n%s", diff)
	}
	if tok := switchover(t, leader, "app", "east"); tok != 4 {
		t.Fatalf("token after re-election = %d, want 4", tok)
	}
	tc.start(li)
	want = leader.FSM().State()
	tc.converged(want)

	// Snapshot one node so that its restart goes through Restore, then
	// stop everything and start again from the data dirs.
	if err := tc.nodes[0].raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	tc.closeAll()
	for i := range tc.nodes {
		tc.start(i)
	}
	_, leader = tc.leader()
	tc.converged(want)
	g, _ := leader.FSM().Group("app")
	if g.GetStatus().GetToken() != 4 || g.GetStatus().GetActiveSite() != "east" {
		t.Fatalf("after restart app is %s/%d, want east/4", g.GetStatus().GetActiveSite(), g.GetStatus().GetToken())
	}
	// Tokens keep growing from where they were: never reused.
	if tok := switchover(t, leader, "db", "east"); tok != 5 {
		t.Fatalf("token after restart = %d, want 5", tok)
	}
}

func TestFollowerWriteIsNotLeaderError(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	_, leader := tc.leader()
	f := tc.follower()
	_, err := f.Apply(context.Background(), &witnessv1.DeleteGroupCommand{Name: "x"})
	var nl *NotLeaderError
	if !errors.As(err, &nl) {
		t.Fatalf("err = %v, want *NotLeaderError", err)
	}
	eventually(t, "leader's admin address via gossip", func() bool {
		name, admin := f.Leader()
		return name == leader.Name() && admin == leader.AdminAddr()
	})
}

func TestForeignDataDirRefused(t *testing.T) {
	checkLeaks(t)
	c := nodeConfig(t, "east-1", "east")
	c.InitialVoters = []config.Voter{{Name: c.Name, RaftAddr: c.RaftAddr, GossipAddr: c.GossipAddr}}
	n, err := Start(context.Background(), Options{Config: c, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()

	other := c
	other.Cluster = "prod"
	if _, err := Start(context.Background(), Options{Config: other, Logger: testLogger(t)}); !errors.Is(err, ErrForeignDataDir) {
		t.Errorf("another cluster's data_dir: err = %v, want ErrForeignDataDir", err)
	}
	renamed := c
	renamed.Name = "east-9"
	renamed.InitialVoters = []config.Voter{{Name: renamed.Name, RaftAddr: c.RaftAddr, GossipAddr: c.GossipAddr}}
	if _, err := Start(context.Background(), Options{Config: renamed, Logger: testLogger(t)}); !errors.Is(err, ErrForeignDataDir) {
		t.Errorf("another node's data_dir: err = %v, want ErrForeignDataDir", err)
	}
	// The rightful owner still starts.
	n, err = Start(context.Background(), Options{Config: c, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	n.Close()
}
