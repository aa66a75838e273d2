package fsm_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

func spec(name string, sites ...string) *witnessv1.GroupSpec {
	s := &witnessv1.GroupSpec{Name: name}
	for _, site := range sites {
		s.Sites = append(s.Sites, &witnessv1.SiteSpec{Name: site})
	}
	return s
}

func mustApply(t *testing.T, f *fsm.FSM, cmd proto.Message) fsm.Result {
	t.Helper()
	entry, err := fsm.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return f.Apply(entry)
}

func put(t *testing.T, f *fsm.FSM, specs ...*witnessv1.GroupSpec) fsm.Result {
	t.Helper()
	return mustApply(t, f, &witnessv1.PutGroupsCommand{Specs: specs, AtUnixNano: 1})
}

func move(t *testing.T, f *fsm.FSM, kind witnessv1.TransitionKind, moves ...*witnessv1.Move) fsm.Result {
	t.Helper()
	return mustApply(t, f, &witnessv1.TransitionCommand{Moves: moves, Kind: kind, Reason: "test", AtUnixNano: 2})
}

const (
	switchover = witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER
	failover   = witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER
)

func status(t *testing.T, f *fsm.FSM, name string) (site string, token uint64) {
	t.Helper()
	g, ok := f.Group(name)
	if !ok {
		t.Fatalf("group %q missing", name)
	}
	return g.GetStatus().GetActiveSite(), g.GetStatus().GetToken()
}

func TestPutGroupsCreatesWithFirstSiteAndFreshToken(t *testing.T) {
	f := fsm.New()
	res := put(t, f, spec("app", "east", "west"), spec("db", "west", "east"))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if diff := cmp.Diff(map[string]uint64{"app": 1, "db": 2}, res.Tokens); diff != "" {
		t.Errorf("tokens (-want +got):\n%s", diff)
	}
	site, tok := status(t, f, "db")
	if site != "west" || tok != 2 {
		t.Errorf("db: got %s/%d, want west/2", site, tok)
	}
	// Re-applying the same spec changes nothing, not even the token.
	res = put(t, f, spec("app", "east", "west"))
	if res.Err != nil || len(res.Tokens) != 0 || f.LastToken() != 2 {
		t.Errorf("re-apply: err %v tokens %v last %d", res.Err, res.Tokens, f.LastToken())
	}
}

func TestCommandsRefused(t *testing.T) {
	tests := []struct {
		name string
		cmd  proto.Message
		want error
	}{
		{"stale token", &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 0, ToSite: "west"}}, Kind: switchover}, fsm.ErrStaleToken},
		{"future token", &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 9, ToSite: "west"}}, Kind: switchover}, fsm.ErrStaleToken},
		{"unknown group", &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "nope", ExpectedToken: 1, ToSite: "west"}}, Kind: switchover}, fsm.ErrNoGroup},
		{"unknown site", &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "north"}}, Kind: switchover}, fsm.ErrUnknownSite},
		{"same site", &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "east"}}, Kind: switchover}, fsm.ErrSameSite},
		{"no moves", &witnessv1.TransitionCommand{Kind: switchover}, fsm.ErrInvalid},
		{"group twice", &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "west"}, {Group: "app", ExpectedToken: 1, ToSite: "west"}}, Kind: switchover}, fsm.ErrInvalid},
		{"one stale move refuses all", &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "db", ExpectedToken: 2, ToSite: "east"}, {Group: "app", ExpectedToken: 7, ToSite: "west"}}, Kind: switchover}, fsm.ErrStaleToken},
		{"active site removed", &witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{spec("app", "west")}}, fsm.ErrActiveSiteRemoved},
		{"no sites", &witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{spec("x")}}, fsm.ErrInvalid},
		{"site twice", &witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{spec("x", "east", "east")}}, fsm.ErrInvalid},
		{"delete unknown", &witnessv1.DeleteGroupCommand{Name: "nope"}, fsm.ErrNoGroup},
		{"mode unspecified", &witnessv1.SetModeCommand{Group: "app"}, fsm.ErrInvalid},
		{"old site down without a reason", &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "west"}}, Kind: failover, Operator: true, OldSiteDown: true}, fsm.ErrInvalid},
		{"forced without a reason", &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "west"}}, Kind: failover, Operator: true, Forced: true}, fsm.ErrInvalid},
		{"forced not by an operator", &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "west"}}, Kind: failover, Forced: true, Reason: "r"}, fsm.ErrInvalid},
		{"old site down not by an operator", &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "west"}}, Kind: failover, OldSiteDown: true, Reason: "r"}, fsm.ErrInvalid},
		{"operator switchover flag", &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "west"}}, Kind: switchover, Operator: true}, fsm.ErrInvalid},
		{"operator failover to the active site", &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "east"}}, Kind: failover, Operator: true}, fsm.ErrSameSite},
		{"step of old token", &witnessv1.RecordStepCommand{Group: "app", Result: &witnessv1.StepResult{Token: 0, Step: "dns", Ok: true}}, fsm.ErrStaleToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fsm.New()
			put(t, f, spec("app", "east", "west"), spec("db", "west", "east"))
			before := f.State()
			res := mustApply(t, f, tt.cmd)
			if !errors.Is(res.Err, tt.want) {
				t.Fatalf("err = %v, want %v", res.Err, tt.want)
			}
			if diff := cmp.Diff(before, f.State(), protocmp.Transform()); diff != "" {
				t.Errorf("a refused command changed the state (-before +after):\n%s", diff)
			}
		})
	}
}

func TestCASOnlyOneOfTwoRacingTransitionsWins(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("app", "east", "west", "tiebreak"))
	_, tok := status(t, f, "app")
	// Two leaders' decisions, both made while token tok was current.
	a := move(t, f, failover, &witnessv1.Move{Group: "app", ExpectedToken: tok, ToSite: "west"})
	b := move(t, f, switchover, &witnessv1.Move{Group: "app", ExpectedToken: tok, ToSite: "tiebreak"})
	if a.Err != nil {
		t.Fatalf("first: %v", a.Err)
	}
	if !errors.Is(b.Err, fsm.ErrStaleToken) {
		t.Fatalf("second: err = %v, want ErrStaleToken", b.Err)
	}
	site, newTok := status(t, f, "app")
	if site != "west" || newTok != tok+1 {
		t.Errorf("got %s/%d, want west/%d", site, newTok, tok+1)
	}
}

func TestFailoverDisarmsAndRefusesPingPong(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("app", "east", "west"))
	if r := move(t, f, failover, &witnessv1.Move{Group: "app", ExpectedToken: 1, ToSite: "west"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	g, _ := f.Group("app")
	if g.GetStatus().GetArmed() || g.GetStatus().GetDisarmedAtToken() != 2 {
		t.Fatalf("after failover: armed %v disarmed at %d, want false, 2", g.GetStatus().GetArmed(), g.GetStatus().GetDisarmedAtToken())
	}
	r := move(t, f, failover, &witnessv1.Move{Group: "app", ExpectedToken: 2, ToSite: "east"})
	if !errors.Is(r.Err, fsm.ErrDisarmed) {
		t.Fatalf("second failover: err = %v, want ErrDisarmed", r.Err)
	}
	// An operator's switchover is still allowed, and re-arming allows the
	// policy again.
	mustApply(t, f, &witnessv1.SetArmedCommand{Group: "app", Armed: true})
	if r := move(t, f, failover, &witnessv1.Move{Group: "app", ExpectedToken: 2, ToSite: "east"}); r.Err != nil {
		t.Fatalf("failover after re-arm: %v", r.Err)
	}
	mustApply(t, f, &witnessv1.SetModeCommand{Group: "app", Mode: witnessv1.Mode_MODE_OBSERVE})
	mustApply(t, f, &witnessv1.SetArmedCommand{Group: "app", Armed: true})
	if r := move(t, f, failover, &witnessv1.Move{Group: "app", ExpectedToken: 3, ToSite: "west"}); !errors.Is(r.Err, fsm.ErrObserveOnly) {
		t.Fatalf("failover in observe mode: err = %v, want ErrObserveOnly", r.Err)
	}
}

// An operator's failover is allowed while the group is disarmed or in
// observe mode, leaves arming as it is, records who attested the old site
// down and why, and is refused while a switchover is pending.
func TestOperatorFailover(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("app", "east", "west"))
	mustApply(t, f, &witnessv1.SetArmedCommand{Group: "app", Armed: false})
	mustApply(t, f, &witnessv1.SetModeCommand{Group: "app", Mode: witnessv1.Mode_MODE_OBSERVE})
	r := mustApply(t, f, &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "west"}},
		Kind: failover, Operator: true, OldSiteDown: true, Reason: "east flooded, power off confirmed by facilities", By: "alice", AtUnixNano: 5,
		Forced: true, Guard: "west received 0/3A000000, primary east last seen at 0/3B4A0000: 21.6 MB behind, max_lag 16 MB"})
	if r.Err != nil {
		t.Fatalf("operator failover of a disarmed group in observe mode: %v", r.Err)
	}
	g, _ := f.Group("app")
	want := &witnessv1.Transition{Token: 2, FromSite: "east", ToSite: "west", Kind: failover, Reason: "east flooded, power off confirmed by facilities",
		AtUnixNano: 5, By: "alice", OldSiteDown: true,
		Forced: true, Guard: "west received 0/3A000000, primary east last seen at 0/3B4A0000: 21.6 MB behind, max_lag 16 MB"}
	h := g.GetStatus().GetHistory()
	if diff := cmp.Diff(want, h[len(h)-1], protocmp.Transform()); diff != "" {
		t.Errorf("recorded transition (-want +got):\n%s", diff)
	}
	if g.GetStatus().GetArmed() || g.GetStatus().GetDisarmedAtToken() != 1 {
		t.Errorf("arming changed: armed %v disarmed at %d", g.GetStatus().GetArmed(), g.GetStatus().GetDisarmedAtToken())
	}
	// A pending switchover refuses an operator's failover.
	mustApply(t, f, &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 2, ToSite: "east"}}, Kind: switchover, Prepare: true, Reason: "back"})
	r = mustApply(t, f, &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 3, ToSite: "east"}}, Kind: failover, Operator: true})
	if !errors.Is(r.Err, fsm.ErrPending) {
		t.Errorf("operator failover during a switchover: err = %v, want ErrPending", r.Err)
	}
}

func TestSiteTransitionMovesSeveralGroupsInOneEntry(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("a", "east", "west"), spec("b", "east", "west"), spec("c", "west", "east"), spec("d", "east", "tiebreak"))
	// Every group active at east, in one entry.
	var moves []*witnessv1.Move
	for _, g := range f.Groups() {
		if g.GetStatus().GetActiveSite() == "east" {
			to := g.GetSpec().GetSites()[1].GetName()
			moves = append(moves, &witnessv1.Move{Group: g.GetSpec().GetName(), ExpectedToken: g.GetStatus().GetToken(), ToSite: to})
		}
	}
	res := move(t, f, failover, moves...)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if diff := cmp.Diff(map[string]uint64{"a": 5, "b": 6, "d": 7}, res.Tokens); diff != "" {
		t.Errorf("tokens (-want +got):\n%s", diff)
	}
	got := map[string]string{}
	for _, g := range f.Groups() {
		got[g.GetSpec().GetName()] = g.GetStatus().GetActiveSite()
	}
	if diff := cmp.Diff(map[string]string{"a": "west", "b": "west", "c": "west", "d": "tiebreak"}, got); diff != "" {
		t.Errorf("active sites (-want +got):\n%s", diff)
	}
}

func TestTokenMonotonicAcrossTransitionsDeletesAndSnapshots(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("app", "east", "west"))
	sites := []string{"west", "east"}
	var last uint64 = 1
	for i := range 200 {
		if i%50 == 25 {
			// Snapshot and restore into a fresh replica midway.
			b, err := fsm.MarshalSnapshot(f.State())
			if err != nil {
				t.Fatal(err)
			}
			s, err := fsm.UnmarshalSnapshot(b)
			if err != nil {
				t.Fatal(err)
			}
			f = fsm.New()
			if err := f.Restore(s); err != nil {
				t.Fatal(err)
			}
		}
		if i%70 == 69 {
			// Deleting and re-creating the group never reuses a token.
			mustApply(t, f, &witnessv1.DeleteGroupCommand{Name: "app"})
			res := put(t, f, spec("app", "east", "west"))
			if res.Tokens["app"] <= last {
				t.Fatalf("re-created group got token %d, not above %d", res.Tokens["app"], last)
			}
			last = res.Tokens["app"]
			continue
		}
		site, tok := status(t, f, "app")
		to := sites[0]
		if site == to {
			to = sites[1]
		}
		res := move(t, f, switchover, &witnessv1.Move{Group: "app", ExpectedToken: tok, ToSite: to})
		if res.Err != nil {
			t.Fatalf("step %d: %v", i, res.Err)
		}
		if got := res.Tokens["app"]; got <= last {
			t.Fatalf("step %d: token %d not above %d", i, got, last)
		}
		last = res.Tokens["app"]
	}
	g, _ := f.Group("app")
	if n := len(g.GetStatus().GetHistory()); n > fsm.HistoryLimit {
		t.Errorf("history holds %d transitions, limit %d", n, fsm.HistoryLimit)
	}
}

func TestRecordStepBounded(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("app", "east", "west"))
	for i := range fsm.StepLimit + 10 {
		r := mustApply(t, f, &witnessv1.RecordStepCommand{Group: "app", Result: &witnessv1.StepResult{Token: 1, Step: fmt.Sprintf("s%d", i), Ok: true}})
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	g, _ := f.Group("app")
	steps := g.GetStatus().GetSteps()
	if len(steps) != fsm.StepLimit || steps[len(steps)-1].GetStep() != fmt.Sprintf("s%d", fsm.StepLimit+9) {
		t.Errorf("kept %d steps ending with %q", len(steps), steps[len(steps)-1].GetStep())
	}
}

func TestSnapshotRoundTripAndCorruption(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("app", "east", "west"), spec("db", "west", "east"))
	move(t, f, switchover, &witnessv1.Move{Group: "app", ExpectedToken: 1, ToSite: "west"})
	b, err := fsm.MarshalSnapshot(f.State())
	if err != nil {
		t.Fatal(err)
	}
	s, err := fsm.UnmarshalSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f.State(), s, protocmp.Transform()); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for name, mutate := range map[string]func([]byte) []byte{
		"truncated":   func(b []byte) []byte { return b[:len(b)-3] },
		"bit flipped": func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
		"bad magic":   func(b []byte) []byte { b[0] = 'X'; return b },
		"empty":       func([]byte) []byte { return nil },
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := fsm.UnmarshalSnapshot(mutate(append([]byte(nil), b...))); !errors.Is(err, fsm.ErrCorruptSnapshot) {
				t.Errorf("err = %v, want ErrCorruptSnapshot", err)
			}
		})
	}
}

func TestApplyPanicsOnUndecodableEntry(t *testing.T) {
	for name, entry := range map[string][]byte{
		"empty":        nil,
		"unknown type": {99, 1, 2},
		"bad payload":  {byte(fsm.TypeTransition), 0xff, 0xff, 0xff},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("Apply did not panic")
				}
			}()
			fsm.New().Apply(entry)
		})
	}
}
