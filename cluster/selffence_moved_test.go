package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sitewitness/witness/actions/actionstest"
	"github.com/sitewitness/witness/config"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// cutPeers is the admin API of the other witnesses as one witness
// reaches it. While cut, nothing answers: the witness loses its lease
// while Raft, which has its own transport, still replicates to it. Each
// linearizable read asked through it that gets its index runs afterRead.
type cutPeers struct {
	Peers
	cut       atomic.Bool
	afterRead func()
}

func (p *cutPeers) Client(addr string) (witnessv1.AdminClient, error) {
	if p.cut.Load() {
		return nil, errors.New("cut off")
	}
	c, err := p.Peers.Client(addr)
	if err != nil {
		return nil, err
	}
	return readHook{AdminClient: c, after: p.afterRead}, nil
}

type readHook struct {
	witnessv1.AdminClient
	after func()
}

func (r readHook) ReadIndex(ctx context.Context, req *witnessv1.ReadIndexRequest, opts ...grpc.CallOption) (*witnessv1.ReadIndexResponse, error) {
	resp, err := r.AdminClient.ReadIndex(ctx, req, opts...)
	if err == nil {
		r.after()
	}
	return resp, err
}

// A witness fenced its site while the group was active there; while it
// was cut off, the group moved away. When the lease returns, the
// linearizable read of the lift shows the move (errMovedOn): the fence
// is not lifted, and the standby the fence may have stopped is started
// again as a standby, as on the path of a group not known active here.
func TestSelfFenceEndedByAMoveStartsTheStandbyAgain(t *testing.T) {
	f := &standbyFencer{fenceRecorder: &fenceRecorder{}}
	plaintext := func() grpc.DialOption { return grpc.WithTransportCredentials(insecure.NewCredentials()) }
	var (
		holding atomic.Bool // east's state machine waits for release
		release = make(chan struct{})
		once    sync.Once // release is closed once, by a read of east's that got its index
	)
	peers := &cutPeers{Peers: newGRPCPeers(plaintext), afterRead: func() { once.Do(func() { close(release) }) }}
	tc := newTestClusterWith(t, func(i int, o *Options) {
		o.Runner = actionstest.NewRunner()
		if i != 0 {
			return
		}
		o.LocalDatabase, o.Peers = f.database, peers
		o.beforeApply = func(uint64) {
			if holding.Load() {
				<-release
			}
		}
		// Slow to call an election, east stays a follower: its
		// linearizable reads go through its peers.
		o.Config.Raft.HeartbeatTimeout = config.Duration(5 * time.Second)
		o.Config.Raft.ElectionTimeout = config.Duration(5 * time.Second)
	}, "east", "west", "tiebreak")
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the nodes close
	li, leader := tc.leader()
	if li == 0 {
		t.Fatal("east leads: its linearizable reads would not go through its peers")
	}
	applyDoc(t, leader, observedAtEast)
	eventually(t, "east to replicate the group", func() bool { _, ok := tc.nodes[0].FSM().Group("app"); return ok })

	peers.cut.Store(true)
	eventually(t, "east to fence itself", func() bool { return fencedCall(f.fenceRecorder, "fence host=east-db user=witness app@1") })
	// East hears of the move only through the read of the lift.
	holding.Store(true)
	var moved uint64 // the token of the move
	eventually(t, "the group to move to west", func() bool {
		_, leader := tc.leader()
		resp, err := dial(t, leader.AdminAddr()).Failover(ctx(t), &witnessv1.FailoverRequest{Group: "app", ToSite: "west", OldSiteDown: true, Reason: "east cut off", By: "test"})
		if err == nil {
			moved = resp.GetToken()
			return true
		}
		// A leader change may lose the answer of a move that committed.
		g, _ := leader.FSM().Group("app")
		moved = g.GetStatus().GetToken()
		return g.GetStatus().GetActiveSite() == "west"
	})
	if g, _ := tc.nodes[0].FSM().Group("app"); g.GetStatus().GetToken() == moved {
		t.Fatal("east applied the move before its lease returned")
	}
	if n := f.starts.Load(); n != 0 {
		t.Fatalf("started the standby %d times while the lease is lost", n)
	}

	peers.cut.Store(false)
	eventually(t, "east to start its standby again once the read shows the move", func() bool { return f.starts.Load() > 0 })
	// Started by the lift that saw the move, not after some later fence
	// of the group as one active elsewhere; and not unfenced.
	calls, _ := f.get()
	want := []string{"fence host=east-db user=witness app@1", fmt.Sprintf("start host=east-db user=witness app@%d", moved)}
	if diff := cmp.Diff(want, calls[:min(len(calls), 2)]); diff != "" {
		t.Errorf("east's first calls (-want +got):\n%s", diff)
	}
}
