package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// A linearizable read at a follower ends only once the follower's state
// machine has applied the read index. Raft's own applied index moves when
// entries are handed to the state machine's goroutine, before they are
// applied: a read that waited for it could see the state from before an
// entry committed ahead of the read (a reconnected witness would lift its
// self-fence at the token before the failover).
func TestReadIndexWaitsForTheStateMachine(t *testing.T) {
	var (
		hold    atomic.Pointer[chan struct{}] // set: the node named held waits on it
		held    atomic.Int32                  // 1 + the index of the node held
		waiting = make(chan uint64, 1)
	)
	tc := newTestClusterWith(t, func(i int, o *Options) {
		o.beforeApply = func(index uint64) {
			if held.Load() != int32(i+1) {
				return
			}
			if c := hold.Load(); c != nil {
				select {
				case waiting <- index:
				default:
				}
				<-*c
			}
		}
	}, "east", "west", "tiebreak")
	li, leader := tc.leader()
	fi := (li + 1) % len(tc.nodes)
	f := tc.nodes[fi]
	applyDoc(t, leader, twoGroups)
	eventually(t, "the follower applies the first groups", func() bool {
		_, ok := f.FSM().Group("app")
		return ok
	})

	release := make(chan struct{})
	hold.Store(&release)
	held.Store(int32(fi + 1))
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	applyDoc(t, leader, `
groups:
  - name: later
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:5"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:6"}]}
`)
	var index uint64
	select {
	case index = <-waiting:
	case <-time.After(15 * time.Second):
		t.Fatal("the follower's state machine was never handed the new entry")
	}
	eventually(t, "Raft's applied index at the follower passing the held entry", func() bool {
		return f.raft.AppliedIndex() >= index
	})

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err := f.readIndex(ctx)
	cancel()
	if err == nil {
		_, seen := f.FSM().Group("later")
		t.Fatalf("read ended while the state machine still held entry %d (group later in the state: %v)", index, seen)
	}

	close(release)
	released = true
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.readIndex(ctx); err != nil {
		t.Fatalf("read after the entry was applied: %v", err)
	}
	if _, ok := f.FSM().Group("later"); !ok {
		t.Error("read ended but the state lacks the group committed before it")
	}
}

// Only commands reach the state machine: a new leader's no-op and barrier
// entries do not. A linearizable read whose index is such an entry ends
// once the state machine holds the last command before it, without
// waiting for a command that may not come.
func TestReadIndexAfterALeaderChangeWithNoNewCommand(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	li, leader := tc.leader()
	applyDoc(t, leader, twoGroups)
	tc.stop(li)
	_, leader = tc.leader() // a new leader, whose term begins with a no-op
	var f *Node
	for _, n := range tc.nodes {
		if n != nil && n != leader {
			f = n
		}
	}
	eventually(t, "the follower to hand the new leader's entries over", func() bool {
		return f.raft.AppliedIndex() >= leader.raft.CommitIndex()
	})
	if cmd := f.rfsm.applied.Load(); cmd >= leader.raft.CommitIndex() {
		t.Fatalf("the last command (%d) is at the commit index (%d): the new leader's entries are not what the read waits for", cmd, leader.raft.CommitIndex())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := f.readIndex(ctx); err != nil {
		t.Fatalf("read at a follower after a leader change with no command since: %v", err)
	}
}
