package fsm_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// FuzzDecode: any bytes either decode to a command that encodes again, or
// return an error; never a panic.
func FuzzDecode(f *testing.F) {
	for _, cmd := range []proto.Message{
		&witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{spec("app", "east", "west")}},
		&witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: 1, ToSite: "west"}}},
		&witnessv1.RecordStepCommand{Group: "app", Result: &witnessv1.StepResult{Token: 1, Step: "dns"}},
		&witnessv1.RecordStepsCommand{Records: []*witnessv1.RecordStepCommand{{Group: "app", Result: &witnessv1.StepResult{Token: 1, Step: "dns"}}}},
	} {
		b, err := fsm.Encode(cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, cmd, err := fsm.Decode(b)
		if err != nil {
			return
		}
		again, err := fsm.Encode(cmd)
		if err != nil {
			t.Fatalf("decoded %s does not encode: %v", typ, err)
		}
		if again[0] != byte(typ) {
			t.Fatalf("type %d re-encoded as %d", typ, again[0])
		}
		// Applying a decodable command never panics, whatever its content.
		f := fsm.New()
		f.Apply(again)
	})
}

// FuzzSnapshot: any bytes either restore into a state that snapshots again
// identically, or are refused; never a panic.
func FuzzSnapshot(f *testing.F) {
	st := fsm.New()
	put := &witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{spec("app", "east", "west")}}
	e, _ := fsm.Encode(put)
	st.Apply(e)
	b, err := fsm.MarshalSnapshot(st.State())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("WSNP\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := fsm.UnmarshalSnapshot(b)
		if err != nil {
			return
		}
		r := fsm.New()
		if err := r.Restore(s); err != nil {
			return
		}
		again, err := fsm.MarshalSnapshot(r.State())
		if err != nil {
			t.Fatal(err)
		}
		s2, err := fsm.UnmarshalSnapshot(again)
		if err != nil || !proto.Equal(r.State(), s2) {
			t.Fatalf("restored state does not round-trip: %v", err)
		}
	})
}
