package probes

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sitewitness/witness/clock"
)

// countingListener accepts and closes connections, counting them.
func countingListener(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	})
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return l.Addr().String(), &n
}

// accepted is the count of a countingListener once its accept loop has
// caught up: a check ends when the client's connect completes, which can
// be before the server's Accept returns. It waits for a first connection
// (up to 5 s), then until the count has not moved for 100 ms.
func accepted(n *atomic.Int64) int64 {
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	for last := int64(-1); last != n.Load(); {
		last = n.Load()
		time.Sleep(100 * time.Millisecond)
	}
	return n.Load()
}

func tcpTarget(group, site, addr string, threshold int) Target {
	return Target{Group: group, Site: site, Spec: Spec{Kind: KindTCP, FailThreshold: threshold, TCP: &TCPSpec{Address: addr}}}
}

// TestSharedProbeRunsOnce: many groups naming the same probe (thresholds
// aside) get one Checker, and checks asked of it together connect once;
// a probe of another address is its own.
func TestSharedProbeRunsOnce(t *testing.T) {
	addr, accepts := countingListener(t)
	other, otherAccepts := countingListener(t)
	s := &Shared{Clock: clock.NewFake(time.Unix(0, 0))}
	var in []Target
	for i := range 200 {
		in = append(in, tcpTarget(fmt.Sprintf("g%03d", i), "east", addr, 1+i%3))
	}
	in = append(in, tcpTarget("lone", "east", other, 3))
	ts, err := s.Targets(in)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 {
		t.Fatalf("%d distinct probes, want 2", s.Len())
	}
	if ts[0].Checker != ts[199].Checker || ts[0].Checker == ts[200].Checker {
		t.Fatal("identical specs do not share a Checker, or different ones do")
	}
	var wg sync.WaitGroup
	results := make([]Result, len(ts))
	for i, tg := range ts {
		wg.Go(func() { results[i] = tg.Checker.Check(context.Background()) })
	}
	wg.Wait()
	for i, r := range results {
		if !r.OK {
			t.Fatalf("target %d: %+v", i, r)
		}
	}
	if got := accepted(accepts); got != 1 {
		t.Errorf("200 groups' checks of one probe connected %d times, want once", got)
	}
	if got := accepted(otherAccepts); got != 1 {
		t.Errorf("the other probe connected %d times, want once", got)
	}

	// A probe no target names any more is forgotten.
	if _, err := s.Targets(in[:1]); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 1 {
		t.Errorf("%d probes kept, want 1", s.Len())
	}
}

// TestSharedTargetsStartTogether: the scheduler gives targets that share a
// Checker the same moment of their interval, also when they are added
// later, so that one check feeds them all.
func TestSharedTargetsStartTogether(t *testing.T) {
	addr, _ := countingListener(t)
	other, _ := countingListener(t)
	sh := &Shared{}
	s := NewScheduler(Config{Clock: clock.NewFake(time.Unix(0, 0))})
	var in []Target
	for i := range 50 {
		in = append(in, tcpTarget(fmt.Sprintf("g%03d", i), "east", addr, 3), tcpTarget(fmt.Sprintf("g%03d", i), "west", other, 3))
	}
	for _, n := range []int{40, 100} { // 20 groups, then 50
		ts, err := sh.Targets(in[:n])
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SetTargets(ts); err != nil {
			t.Fatal(err)
		}
	}
	phases := map[string]map[float64]bool{"east": {}, "west": {}}
	s.mu.Lock()
	for _, e := range s.entries {
		phases[e.key.site][e.phase] = true
	}
	s.mu.Unlock()
	if len(phases["east"]) != 1 || len(phases["west"]) != 1 {
		t.Errorf("phases of the shared targets: %v, want one per probe", phases)
	}
}
