package cluster

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sitewitness/witness/config"
)

// A leader whose first barriers fail goes on trying until one succeeds,
// then runs what a leader runs.
func TestLeaderRetriesAFailedBarrier(t *testing.T) {
	var mu sync.Mutex
	calls := map[int]int{} // node -> barriers asked
	led := make(chan string, 8)
	tc := newTestClusterWith(t, func(i int, o *Options) {
		o.barrier = func(time.Duration) error {
			mu.Lock()
			defer mu.Unlock()
			calls[i]++
			if calls[i] <= 2 {
				return errors.New("barrier timed out")
			}
			return nil
		}
		o.OnLeader = func(ctx context.Context, n *Node) {
			select {
			case led <- n.Name():
			default:
			}
			<-ctx.Done()
		}
	}, "east", "west", "tiebreak")
	select {
	case name := <-led:
		i := slices.IndexFunc(tc.cfgs, func(c config.Node) bool { return c.Name == name })
		mu.Lock()
		defer mu.Unlock()
		if calls[i] < 3 {
			t.Errorf("%s led after %d barriers, want 3 at least (two failed)", name, calls[i])
		}
	case <-time.After(15 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no leader ran its leader loop after failed barriers (barriers asked per node: %v)", calls)
	}
}

// awaitBarrier backs off from barrierRetryMin, doubling up to
// barrierRetryMax, until a barrier succeeds; it stops when ctx ends.
func TestAwaitBarrierBacksOff(t *testing.T) {
	discard := slog.New(slog.DiscardHandler)
	fired := func() <-chan time.Time {
		c := make(chan time.Time, 1)
		c <- time.Time{}
		return c
	}
	t.Run("until a barrier succeeds", func(t *testing.T) {
		var waits []time.Duration
		calls := 0
		ok := awaitBarrier(context.Background(), func() error {
			calls++
			if calls <= 8 {
				return errors.New("barrier timed out")
			}
			return nil
		}, func(d time.Duration) <-chan time.Time { waits = append(waits, d); return fired() }, discard)
		if !ok || calls != 9 {
			t.Fatalf("awaitBarrier = %v after %d barriers, want true after 9", ok, calls)
		}
		ms := time.Millisecond
		want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5 * time.Second, 5 * time.Second}
		if !slices.Equal(waits, want) {
			t.Errorf("waits %v, want %v", waits, want)
		}
	})
	t.Run("until leadership ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		ok := awaitBarrier(ctx, func() error { calls++; return errors.New("leadership lost") },
			func(time.Duration) <-chan time.Time {
				if calls == 3 {
					cancel() // leadership ends while the leader waits
					return nil
				}
				return fired()
			}, discard)
		if ok || calls != 3 {
			t.Errorf("awaitBarrier = %v after %d barriers, want false after 3", ok, calls)
		}
	})
}

// unanswered is a Raft future that is never answered until released, as
// hashicorp/raft leaves a verification its loop took no more at shutdown.
type unanswered struct{ release chan struct{} }

func (u unanswered) Error() error  { <-u.release; return errors.New("released") }
func (u unanswered) Index() uint64 { return 0 }

// A verification of leadership that Raft never answers ends when the node
// closes, and does not keep Close, or the leader's work waiting on it,
// waiting for good.
func TestVerifyLeaderEndsWhenTheNodeCloses(t *testing.T) {
	stuck := unanswered{release: make(chan struct{})}
	tc := newTestClusterWith(t, func(i int, o *Options) {
		o.verifyLeader = func() raft.Future { return stuck }
	}, "east")
	t.Cleanup(func() { close(stuck.release) })
	_, n := tc.leader()
	verified := make(chan error, 1)
	go func() { verified <- n.VerifyLeader() }()
	select {
	case err := <-verified:
		t.Fatalf("VerifyLeader returned before anything answered it: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	closed := make(chan struct{})
	go func() { tc.stop(0); close(closed) }()
	select {
	case err := <-verified:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("VerifyLeader at close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("VerifyLeader still waits 5s after Close began")
	}
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("Close still runs 15s after it began")
	}
}
