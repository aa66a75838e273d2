package fsm_test

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

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

// TestNoEntryChangesWhatWasHandedOut: through every kind of entry, each
// several times over (counts that grow, positions that move on, steps
// past their bound), no message a reader was handed before an entry is
// different after it. An edit may share a message of the status it
// replaces only if no entry ever changes one in place.
func TestNoEntryChangesWhatWasHandedOut(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("app", "east", "west"), spec("db", "east", "west"))
	token := func() uint64 { _, tok := status(t, f, "app"); return tok }
	site := func() string { s, _ := status(t, f, "app"); return s }
	other := func() string {
		if site() == "east" {
			return "west"
		}
		return "east"
	}
	var lsn uint64 = 100
	steps := []struct {
		name string
		cmd  func() proto.Message
	}{
		{"a switchover", func() proto.Message {
			return &witnessv1.TransitionCommand{Kind: switchover, Reason: "test", Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: token(), ToSite: other(),
				FromPrimary: &witnessv1.PrimaryPosition{Site: site(), WalLsn: lsn, Timeline: 1}}}}
		}},
		{"a fence step", func() proto.Message {
			lsn += 10
			return &witnessv1.RecordStepCommand{Group: "app", Result: &witnessv1.StepResult{Token: token(), Step: "fence", Ok: true, WalLsn: lsn}}
		}},
		{"step results", func() proto.Message {
			return &witnessv1.RecordStepsCommand{Records: []*witnessv1.RecordStepCommand{
				{Group: "app", Result: &witnessv1.StepResult{Token: token(), Step: "dns", Ok: true}},
				{Group: "app", Result: &witnessv1.StepResult{Token: token(), Step: "settle", Ok: true}},
			}}
		}},
		{"a proposal", func() proto.Message {
			lsn += 10
			return &witnessv1.RecordProposalCommand{Group: "app", Proposal: &witnessv1.Proposal{Action: "failover", ExpectedToken: token(), ToSite: other(),
				FromPrimary: &witnessv1.PrimaryPosition{Site: site(), WalLsn: lsn, Timeline: 2}}}
		}},
		{"a proposal cleared", func() proto.Message {
			return &witnessv1.RecordProposalCommand{Group: "app", Proposal: &witnessv1.Proposal{}}
		}},
		{"a schedule", func() proto.Message {
			return &witnessv1.ScheduleSwitchoverCommand{Group: "app", Switchover: &witnessv1.ScheduledSwitchover{ToSite: other(), AtUnixNano: 99}}
		}},
		{"a schedule ended", func() proto.Message {
			return &witnessv1.ScheduleSwitchoverCommand{Group: "app", Outcome: "cancelled"}
		}},
		{"a prepare", func() proto.Message {
			return &witnessv1.TransitionCommand{Kind: switchover, Prepare: true, Reason: "test", Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: token(), ToSite: other()}}}
		}},
		{"an abort", func() proto.Message {
			return &witnessv1.TransitionCommand{Kind: switchover, Abort: true, Reason: "test", Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: token(), ToSite: site()}}}
		}},
		{"an operator's failover", func() proto.Message {
			return &witnessv1.TransitionCommand{Kind: failover, Operator: true, Reason: "test", Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: token(), ToSite: other()}}}
		}},
		{"a disarm", func() proto.Message { return &witnessv1.SetArmedCommand{Group: "app", Armed: false} }},
		{"an arm", func() proto.Message { return &witnessv1.SetArmedCommand{Group: "app", Armed: true} }},
		{"a mode", func() proto.Message { return &witnessv1.SetModeCommand{Group: "app", Mode: witnessv1.Mode_MODE_MANUAL} }},
		{"a spec", func() proto.Message {
			return &witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{spec("app", "east", "west", fmt.Sprintf("north%d", lsn))}}
		}},
	}
	for round := range 40 {
		for _, s := range steps {
			held := f.Groups()
			was := make([]*witnessv1.Group, len(held))
			for i, g := range held {
				was[i] = proto.Clone(g).(*witnessv1.Group)
			}
			if res := mustApply(t, f, s.cmd()); res.Err != nil {
				t.Fatalf("round %d, %s: %v", round, s.name, res.Err)
			}
			for i := range held {
				if !proto.Equal(held[i], was[i]) {
					t.Fatalf("round %d, %s changed a group handed out before it:\nwas %v\nnow %v", round, s.name, was[i], held[i])
				}
			}
		}
	}
	g, _ := f.Group("app")
	if n := len(g.GetStatus().GetSteps()); n != fsm.StepLimit {
		t.Errorf("%d steps kept, want the bound %d", n, fsm.StepLimit)
	}
	counts := 0
	for _, c := range g.GetStatus().GetTransitionCounts() {
		counts += int(c.GetCount())
	}
	if counts < 40*4 {
		t.Errorf("transition counts add up to %d, want at least %d", counts, 40*4)
	}
}

// BenchmarkStepOnAFullStatus is one step result recorded for a group that
// keeps as many steps and transitions as it may: the edit copies the
// status's fields and lists, not what they hold.
func BenchmarkStepOnAFullStatus(b *testing.B) {
	f := fsm.New()
	apply := func(cmd proto.Message) fsm.Result {
		entry, err := fsm.Encode(cmd)
		if err != nil {
			b.Fatal(err)
		}
		return f.Apply(entry)
	}
	apply(&witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{spec("app", "east", "west")}})
	to := []string{"west", "east"}
	var token uint64 = 1
	for i := range fsm.HistoryLimit {
		res := apply(&witnessv1.TransitionCommand{Kind: switchover, Reason: "bench", Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: token, ToSite: to[i%2]}}})
		token = res.Tokens["app"]
	}
	step, err := fsm.Encode(&witnessv1.RecordStepCommand{Group: "app", Result: &witnessv1.StepResult{Token: token, Step: "dns", Ok: true, Node: "west-1", Detail: "1 record switched"}})
	if err != nil {
		b.Fatal(err)
	}
	for range fsm.StepLimit {
		f.Apply(step)
	}
	b.ReportAllocs()
	for b.Loop() {
		f.Apply(step)
	}
}

// TestShallowCopiesEveryField: the copy an edit starts from keeps every
// field of the status, those added since shallow was written included:
// each field is set here by reflection, whatever it is.
func TestShallowCopiesEveryField(t *testing.T) {
	st := &witnessv1.GroupStatus{}
	m := st.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			l.Append(l.NewElement())
		case fd.Message() != nil:
			m.Mutable(fd)
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString(string(fd.Name())))
		case fd.Kind() == protoreflect.BoolKind:
			m.Set(fd, protoreflect.ValueOfBool(true))
		case fd.Kind() == protoreflect.EnumKind:
			m.Set(fd, protoreflect.ValueOfEnum(1))
		case fd.Kind() == protoreflect.Uint64Kind || fd.Kind() == protoreflect.Uint32Kind:
			m.Set(fd, protoreflect.ValueOf(reflectUint(fd.Kind(), uint64(fd.Number()))))
		case fd.Kind() == protoreflect.Int64Kind || fd.Kind() == protoreflect.Int32Kind:
			m.Set(fd, protoreflect.ValueOf(reflectInt(fd.Kind(), int64(fd.Number()))))
		default:
			t.Fatalf("field %s of kind %s: teach this test to set it", fd.Name(), fd.Kind())
		}
		if !m.Has(fd) {
			t.Fatalf("field %s was not set", fd.Name())
		}
	}
	m.SetUnknown(protoreflect.RawFields{0xf8, 0x07, 0x01}) // field 127, varint 1
	got := fsm.Shallow(st)
	if !proto.Equal(got, st) || string(got.ProtoReflect().GetUnknown()) != string(m.GetUnknown()) {
		t.Errorf("shallow lost a field:\nhad %v\ngot %v", st, got)
	}
	if len(got.GetSteps()) != 1 || &got.GetSteps()[0] == &st.GetSteps()[0] || got.GetSteps()[0] != st.GetSteps()[0] {
		t.Error("shallow shares the list of steps, or copies its elements")
	}
}

func reflectUint(k protoreflect.Kind, v uint64) any {
	if k == protoreflect.Uint32Kind {
		return uint32(v)
	}
	return v
}

func reflectInt(k protoreflect.Kind, v int64) any {
	if k == protoreflect.Int32Kind {
		return int32(v)
	}
	return v
}
