package actions

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// fsmLeader applies commands to a real state machine and counts the
// entries; gate, if set, holds every Apply until it is closed, and
// applying is told of every Apply that waits there.
type fsmLeader struct {
	f        *fsm.FSM
	gate     chan struct{}
	applying chan struct{}
	mu       sync.Mutex
	entries  []fsm.Type
}

func (l *fsmLeader) Groups() []*witnessv1.Group { return l.f.Groups() }
func (l *fsmLeader) VerifyLeader() error        { return nil }
func (l *fsmLeader) SiteLeaseExpired(context.Context, string, *witnessv1.GroupSpec) error {
	return errors.New("not asked here")
}

func (l *fsmLeader) Apply(_ context.Context, cmd proto.Message) (fsm.Result, error) {
	if l.gate != nil {
		l.applying <- struct{}{}
		<-l.gate
	}
	b, err := fsm.Encode(cmd)
	if err != nil {
		return fsm.Result{}, err
	}
	l.mu.Lock()
	l.entries = append(l.entries, fsm.Type(b[0]))
	l.mu.Unlock()
	return l.f.Apply(b), nil
}

func threeGroups(t *testing.T) *fsm.FSM {
	t.Helper()
	f := fsm.New()
	cmd := &witnessv1.PutGroupsCommand{}
	for _, name := range []string{"a", "b", "c"} {
		cmd.Specs = append(cmd.Specs, &witnessv1.GroupSpec{Name: name, Sites: []*witnessv1.SiteSpec{{Name: "east"}, {Name: "west"}}})
	}
	b, _ := fsm.Encode(cmd)
	if res := f.Apply(b); res.Err != nil { // a=1, b=2, c=3
		t.Fatal(res.Err)
	}
	return f
}

// TestStepLogRefusesAStaleResultAlone: results handed in while an entry
// is being committed go out together in the next one; a result carrying
// a stale token is refused to its own step, and the others of its entry
// are recorded.
func TestStepLogRefusesAStaleResultAlone(t *testing.T) {
	l := &fsmLeader{f: threeGroups(t), gate: make(chan struct{}), applying: make(chan struct{}, 2)}
	s := newStepLog(l)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() { defer wg.Done(); s.run(ctx) }()

	errs := map[string]chan error{"a": make(chan error, 1), "b": make(chan error, 1), "c": make(chan error, 1)}
	send := func(group string, token uint64) {
		go func() {
			errs[group] <- s.record(ctx, group, &witnessv1.StepResult{Token: token, Step: StepDNS, Ok: true})
		}()
	}
	send("a", 1) // goes out at once, and is held at the gate
	<-l.applying
	send("b", 1) // stale: b's token is 2
	send("c", 3)
	for {
		s.mu.Lock()
		queued := len(s.queue)
		s.mu.Unlock()
		if queued == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(l.gate)
	<-l.applying
	if err := <-errs["a"]; err != nil {
		t.Errorf("a: %v", err)
	}
	if err := <-errs["b"]; !errors.Is(err, fsm.ErrStaleToken) {
		t.Errorf("b (stale token): %v, want ErrStaleToken", err)
	}
	if err := <-errs["c"]; err != nil {
		t.Errorf("c, in b's entry: %v", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if want := []fsm.Type{fsm.TypeRecordStep, fsm.TypeRecordSteps}; !slicesEqual(l.entries, want) {
		t.Errorf("entries %v, want %v", l.entries, want)
	}
	for name, want := range map[string]int{"a": 1, "b": 0, "c": 1} {
		if g, _ := l.f.Group(name); len(g.GetStatus().GetSteps()) != want {
			t.Errorf("%s: %d results recorded, want %d", name, len(g.GetStatus().GetSteps()), want)
		}
	}
}

func slicesEqual(a, b []fsm.Type) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestStepLogRecordsNothingAfterLeadershipEnds: a result still queued
// when leadership ends is not recorded, and its step is told so.
func TestStepLogRecordsNothingAfterLeadershipEnds(t *testing.T) {
	l := &fsmLeader{f: threeGroups(t)}
	s := newStepLog(l)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // leadership ended before the log's loop looked
	done := make(chan error, 1)
	s.mu.Lock()
	s.queue = append(s.queue, &pendingStep{rec: &witnessv1.RecordStepCommand{Group: "a", Result: &witnessv1.StepResult{Token: 1, Step: StepDNS, Ok: true}}, done: done})
	s.mu.Unlock()
	s.wake <- struct{}{}
	s.run(ctx)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("queued result: %v, want the end of leadership", err)
	}
	if len(l.entries) != 0 {
		t.Errorf("entries applied after leadership ended: %v", l.entries)
	}
}

// TestLeaderCheckShared: steps that ask while a check is under way share
// it and count from when it began; a check that has ended, or that began
// longer ago than fresh, is not shared.
func TestLeaderCheckShared(t *testing.T) {
	var c leaderCheck
	base := time.Unix(1000, 0)
	var mu sync.Mutex
	now := base
	clockNow := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	release := make(chan struct{})
	checks := 0
	verify := func() error { mu.Lock(); checks++; mu.Unlock(); <-release; return nil }

	type out struct{ began time.Time }
	results := make(chan out, 3)
	go func() { b, _ := c.verify(verify, clockNow, 100*time.Millisecond); results <- out{b} }()
	// checksBegun waits until n checks have begun.
	checksBegun := func(n int) {
		for {
			mu.Lock()
			got := checks
			mu.Unlock()
			if got >= n {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	checksBegun(1) // the first check is under way
	advance(50 * time.Millisecond)
	go func() { b, _ := c.verify(verify, clockNow, 100*time.Millisecond); results <- out{b} }() // joins
	time.Sleep(10 * time.Millisecond)
	mu.Lock()
	if checks != 1 {
		t.Errorf("a step asking during a check began %d checks, want it to join the one under way", checks)
	}
	mu.Unlock()
	advance(100 * time.Millisecond) // the check under way is 150ms old now
	go func() { b, _ := c.verify(verify, clockNow, 100*time.Millisecond); results <- out{b} }()
	checksBegun(2)
	close(release)
	var began []time.Time
	for range 3 {
		began = append(began, (<-results).began)
	}
	joined := 0
	for _, b := range began {
		if b.Equal(base) {
			joined++
		}
	}
	if joined != 2 {
		t.Errorf("checks began at %v: want two steps counting from the shared check's start %v, one from its own", began, base)
	}
	if b, _ := c.verify(verify, clockNow, 100*time.Millisecond); !b.Equal(clockNow()) || checks != 3 {
		t.Errorf("a step asking after every check ended: began %v (now %v), checks %d; want a check of its own", b, clockNow(), checks)
	}
}
