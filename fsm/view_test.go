package fsm_test

import (
	"fmt"
	"testing"

	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// TestViewsDoNotChange: what Group, Groups and State handed out stays as it
// was when a later entry changes the group: readers share the held values
// instead of copying them, so the FSM must never edit one in place.
func TestViewsDoNotChange(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("app", "east", "west"), spec("db", "east", "west"))
	g, _ := f.Group("app")
	all := f.Groups()
	state := f.State()

	res := move(t, f, failover, &witnessv1.Move{Group: "app", ExpectedToken: 1, ToSite: "west"})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	mustApply(t, f, &witnessv1.RecordStepCommand{Group: "app", Result: &witnessv1.StepResult{Token: res.Tokens["app"], Step: "dns", Ok: true}})
	mustApply(t, f, &witnessv1.SetArmedCommand{Group: "app", Armed: true})
	mustApply(t, f, &witnessv1.SetModeCommand{Group: "app", Mode: witnessv1.Mode_MODE_MANUAL})
	mustApply(t, f, &witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{spec("app", "east", "west", "north")}})
	mustApply(t, f, &witnessv1.DeleteGroupCommand{Name: "db"})

	for what, view := range map[string]*witnessv1.Group{"Group": g, "Groups": all[0], "State": state.GetGroups()[0]} {
		st := view.GetStatus()
		if st.GetActiveSite() != "east" || st.GetToken() != 1 || len(st.GetSteps()) != 0 || len(st.GetHistory()) != 1 ||
			st.GetMode() != witnessv1.Mode_MODE_AUTO || len(view.GetSpec().GetSites()) != 2 {
			t.Errorf("%s view changed after later entries: %v", what, view)
		}
	}
	if len(all) != 2 || len(state.GetGroups()) != 2 {
		t.Errorf("views lost a group deleted later: %d groups, state %d", len(all), len(state.GetGroups()))
	}
	now, _ := f.Group("app")
	if st := now.GetStatus(); st.GetActiveSite() != "west" || len(st.GetSteps()) != 1 || st.GetMode() != witnessv1.Mode_MODE_MANUAL || len(now.GetSpec().GetSites()) != 3 {
		t.Errorf("the held group does not show the entries: %v", now)
	}
	if got := f.Groups(); len(got) != 1 || got[0].GetSpec().GetName() != "app" {
		t.Errorf("Groups after the delete: %v", got)
	}
}

// TestEditsShareTheSpec: an entry that changes a group's status (a step
// result, a transition) copies the status alone; the spec, which no entry
// changes in place, stays the one held, and the status read before stays
// as it was.
func TestEditsShareTheSpec(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("app", "east", "west"))
	before, _ := f.Group("app")
	res := move(t, f, failover, &witnessv1.Move{Group: "app", ExpectedToken: 1, ToSite: "west"})
	mustApply(t, f, &witnessv1.RecordStepCommand{Group: "app", Result: &witnessv1.StepResult{Token: res.Tokens["app"], Step: "dns", Ok: true}})
	after, _ := f.Group("app")
	if after.GetSpec() != before.GetSpec() {
		t.Error("a status change copied the spec")
	}
	if after.GetStatus() == before.GetStatus() || before.GetStatus().GetActiveSite() != "east" || len(before.GetStatus().GetSteps()) != 0 {
		t.Errorf("the status read before changed: %v", before.GetStatus())
	}
	if after.GetStatus().GetActiveSite() != "west" || len(after.GetStatus().GetSteps()) != 1 || after.GetSpecVersion() != before.GetSpecVersion() {
		t.Errorf("the held group does not show the entries: %v", after)
	}
}

// BenchmarkGroups is one read of every group of a large state, as the
// leader's evaluation and the reconciler's tick make.
func BenchmarkGroups(b *testing.B) {
	f := fsm.New()
	cmd := &witnessv1.PutGroupsCommand{}
	for i := range 10000 {
		s := &witnessv1.GroupSpec{Name: fmt.Sprintf("svc-%05d", i), Sites: []*witnessv1.SiteSpec{{Name: "east"}, {Name: "west"}}}
		cmd.Specs = append(cmd.Specs, s)
	}
	entry, err := fsm.Encode(cmd)
	if err != nil {
		b.Fatal(err)
	}
	f.Apply(entry)
	step, _ := fsm.Encode(&witnessv1.RecordStepCommand{Group: "svc-00000", Result: &witnessv1.StepResult{Token: 1, Step: "dns", Ok: true}})
	for b.Loop() {
		f.Apply(step) // a step recorded between two reads
		if len(f.Groups()) != 10000 {
			b.Fatal("groups missing")
		}
	}
}
