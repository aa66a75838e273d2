package actions_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/actionstest"
	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// countingRunner records how many DNS steps run at once.
type countingRunner struct {
	*actionstest.Runner
	mu       sync.Mutex
	now, max int
	done     map[string]bool
}

func (c *countingRunner) SwitchDNS(ctx context.Context, g *witnessv1.Group) error {
	c.mu.Lock()
	c.now++
	c.max = max(c.max, c.now)
	c.mu.Unlock()
	time.Sleep(time.Millisecond) // let the others start, if they may
	c.mu.Lock()
	c.now--
	c.done[g.GetSpec().GetName()] = true
	c.mu.Unlock()
	return nil
}

// TestReconcilerWorkersBounded: a reconciler with many groups to act on
// runs at most Workers of them at once, and still gets to every one.
func TestReconcilerWorkersBounded(t *testing.T) {
	const n, workers = 200, 8
	l := &actionstest.Leader{FSM: fsm.New()}
	var specs []*witnessv1.GroupSpec
	for i := range n {
		specs = append(specs, &witnessv1.GroupSpec{Name: fmt.Sprintf("g%03d", i), Sites: []*witnessv1.SiteSpec{{Name: "east"}, {Name: "west"}},
			Actions: &witnessv1.Actions{Dns: &witnessv1.DNSAction{Records: []*witnessv1.DNSRecord{{Name: "x.example.test.", Type: "A"}}}}})
	}
	if res, err := l.Apply(context.Background(), &witnessv1.PutGroupsCommand{Specs: specs}); err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	r := &countingRunner{Runner: actionstest.NewRunner(), done: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	rec := &actions.Reconciler{Leader: l, Runner: r, Node: "n1", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Tick: 10 * time.Millisecond, Workers: workers}
	done := make(chan struct{})
	go func() { rec.Run(ctx); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.mu.Lock()
		all := len(r.done) == n
		r.mu.Unlock()
		if all || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.done) != n {
		t.Fatalf("%d of %d groups switched", len(r.done), n)
	}
	if r.max > workers {
		t.Errorf("%d DNS steps ran at once, want at most %d", r.max, workers)
	}
}
