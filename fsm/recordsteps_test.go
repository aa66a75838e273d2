package fsm_test

import (
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

func stepOf(group string, token uint64, step string) *witnessv1.RecordStepCommand {
	return &witnessv1.RecordStepCommand{Group: group, Result: &witnessv1.StepResult{Token: token, Step: step, Ok: true}}
}

// stepNames is each group's recorded steps, "token/step".
func stepNames(f *fsm.FSM) map[string][]string {
	out := map[string][]string{}
	for _, g := range f.Groups() {
		for _, s := range g.GetStatus().GetSteps() {
			out[g.GetSpec().GetName()] = append(out[g.GetSpec().GetName()], fmt.Sprintf("%d/%s", s.GetToken(), s.GetStep()))
		}
	}
	return out
}

// TestRecordStepsRefusesPerGroup: the results of many groups in one entry
// are checked as one result is, group by group: a group whose result
// carries a stale token (or that is gone, or a nameless step) is refused
// with all of its results in the entry, and the other groups' results
// are recorded.
func TestRecordStepsRefusesPerGroup(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("a", "east", "west"), spec("b", "east", "west"), spec("c", "east", "west"), spec("d", "east", "west"))
	// a=1, b=2, c=3, d=4; b moves to token 5.
	if res := move(t, f, failover, &witnessv1.Move{Group: "b", ExpectedToken: 2, ToSite: "west"}); res.Err != nil {
		t.Fatal(res.Err)
	}
	res := mustApply(t, f, &witnessv1.RecordStepsCommand{Records: []*witnessv1.RecordStepCommand{
		stepOf("a", 1, "dns"),
		stepOf("b", 2, "dns"), // b's old token: a deposed plan's result
		stepOf("c", 3, "dns"),
		stepOf("c", 3, "settle"),
		stepOf("d", 4, "dns"),
		stepOf("d", 3, "settle"), // one stale result refuses every one of d's
		stepOf("gone", 9, "dns"),
		{Group: "a", Result: &witnessv1.StepResult{Token: 1}},
	}})
	if res.Err != nil {
		t.Fatalf("Err = %v, want the groups refused alone", res.Err)
	}
	for group, want := range map[string]error{"b": fsm.ErrStaleToken, "d": fsm.ErrStaleToken, "gone": fsm.ErrNoGroup, "a": fsm.ErrInvalid} {
		if !errors.Is(res.Refused[group], want) {
			t.Errorf("Refused[%s] = %v, want %v", group, res.Refused[group], want)
		}
	}
	if len(res.Refused) != 4 {
		t.Errorf("Refused = %v, want a, b, d and gone", res.Refused)
	}
	if diff := cmp.Diff(map[string][]string{"c": {"3/dns", "3/settle"}}, stepNames(f)); diff != "" {
		t.Errorf("recorded steps (-want +got):\n%s", diff)
	}

	// A group whose results all pass is recorded even next to refused
	// ones; when every group is refused, Err says so and nothing changes.
	res = mustApply(t, f, &witnessv1.RecordStepsCommand{Records: []*witnessv1.RecordStepCommand{stepOf("a", 1, "dns"), stepOf("b", 1, "dns")}})
	if res.Err != nil || !errors.Is(res.Refused["b"], fsm.ErrStaleToken) || res.Refused["a"] != nil {
		t.Errorf("a ok, b stale: Err %v, Refused %v", res.Err, res.Refused)
	}
	res = mustApply(t, f, &witnessv1.RecordStepsCommand{Records: []*witnessv1.RecordStepCommand{stepOf("b", 2, "dns"), stepOf("d", 3, "dns")}})
	if !errors.Is(res.Err, fsm.ErrStaleToken) || len(res.Refused) != 2 {
		t.Errorf("every group stale: Err %v, Refused %v", res.Err, res.Refused)
	}
	if res := mustApply(t, f, &witnessv1.RecordStepsCommand{}); !errors.Is(res.Err, fsm.ErrInvalid) {
		t.Errorf("no results: Err %v, want ErrInvalid", res.Err)
	}
	if diff := cmp.Diff(map[string][]string{"a": {"1/dns"}, "c": {"3/dns", "3/settle"}}, stepNames(f)); diff != "" {
		t.Errorf("recorded steps (-want +got):\n%s", diff)
	}
}

// TestRecordStepsKeepsViews: the groups a batch of results changes are
// new values, as with one result: views handed out before stay as they
// were, and one read after shows every result of the batch.
func TestRecordStepsKeepsViews(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("a", "east", "west"), spec("b", "east", "west"), spec("c", "east", "west"))
	before := f.Groups()
	mustApply(t, f, &witnessv1.RecordStepsCommand{Records: []*witnessv1.RecordStepCommand{stepOf("a", 1, "dns"), stepOf("c", 3, "dns")}})
	mustApply(t, f, stepOf("b", 2, "dns")) // no read between the two entries
	for _, g := range before {
		if len(g.GetStatus().GetSteps()) != 0 {
			t.Errorf("a view taken before changed: %v", g)
		}
	}
	if diff := cmp.Diff(map[string][]string{"a": {"1/dns"}, "b": {"2/dns"}, "c": {"3/dns"}}, stepNames(f)); diff != "" {
		t.Errorf("recorded steps (-want +got):\n%s", diff)
	}
	if len(before) != 3 {
		t.Errorf("a view taken before lost groups: %d", len(before))
	}
}

// TestRecordStepsCopiesTheViewOnce: recording the results of 2,000 groups
// of a state of 10,000 in one entry copies the sorted view of every
// group once, not once per group: 2,000 copies of 10,000 pointers would
// allocate 160 MB.
func TestRecordStepsCopiesTheViewOnce(t *testing.T) {
	f := fsm.New()
	cmd := &witnessv1.PutGroupsCommand{}
	for i := range 10000 {
		cmd.Specs = append(cmd.Specs, spec(fmt.Sprintf("svc-%05d", i), "east", "west"))
	}
	mustApply(t, f, cmd)
	if len(f.Groups()) != 10000 { // the view is built and lent
		t.Fatal("groups missing")
	}
	batch := &witnessv1.RecordStepsCommand{}
	for i := range 2000 {
		batch.Records = append(batch.Records, stepOf(fmt.Sprintf("svc-%05d", i*5), uint64(i*5+1), "dns"))
	}
	entry, err := fsm.Encode(batch)
	if err != nil {
		t.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	res := f.Apply(entry)
	runtime.ReadMemStats(&m1)
	if res.Err != nil || len(res.Refused) != 0 {
		t.Fatalf("batch refused: %v %v", res.Err, res.Refused)
	}
	if got := m1.TotalAlloc - m0.TotalAlloc; got > 40<<20 {
		t.Errorf("applying 2,000 results allocated %d MiB, want well under the 160 MB of a view copied per group", got>>20)
	}
	if g, _ := f.Group("svc-09995"); len(g.GetStatus().GetSteps()) != 1 {
		t.Errorf("last group of the batch not recorded: %v", g.GetStatus())
	}
	if gs := f.Groups(); len(gs[9995].GetStatus().GetSteps()) != 1 || len(gs[9996].GetStatus().GetSteps()) != 0 {
		t.Errorf("the sorted view does not show the batch: %v / %v", gs[9995].GetStatus(), gs[9996].GetStatus())
	}
}

// TestSpecGeneration: the generation of the specs moves with every entry
// that creates, changes or deletes a group and with a restore, and not
// with step results, transitions or other status changes, so what is
// built from specs alone is not rebuilt for those.
func TestSpecGeneration(t *testing.T) {
	f := fsm.New()
	gen := f.SpecGeneration()
	moved := func(what string, want bool) {
		t.Helper()
		now := f.SpecGeneration()
		if (now != gen) != want {
			t.Errorf("%s: generation %d → %d, want moved %v", what, gen, now, want)
		}
		gen = now
	}
	put(t, f, spec("a", "east", "west"), spec("b", "east", "west"))
	moved("groups created", true)
	put(t, f, spec("a", "east", "west"), spec("b", "east", "west"))
	moved("the same specs again", false)
	mustApply(t, f, stepOf("a", 1, "dns"))
	mustApply(t, f, &witnessv1.RecordStepsCommand{Records: []*witnessv1.RecordStepCommand{stepOf("a", 1, "settle"), stepOf("b", 2, "dns")}})
	move(t, f, failover, &witnessv1.Move{Group: "a", ExpectedToken: 1, ToSite: "west"})
	mustApply(t, f, &witnessv1.SetArmedCommand{Group: "a", Armed: true})
	moved("step results, a transition, arming", false)
	put(t, f, spec("a", "east", "west", "north"))
	moved("a spec changed", true)
	mustApply(t, f, &witnessv1.DeleteGroupCommand{Name: "b"})
	moved("a group deleted", true)
	if err := f.Restore(f.State()); err != nil {
		t.Fatal(err)
	}
	moved("a restore", true)
}
