package cluster

import (
	"bytes"
	"io"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// The leader's reconciler is woken by the state machine itself: after
// every applied command and restored snapshot, not after Raft's own
// entries, which change nothing.
func TestStateMachineWakesTheReconcilerOnChange(t *testing.T) {
	woken := 0
	r := &raftFSM{f: fsm.New(), changed: func() { woken++ }}
	entry, err := fsm.Encode(&witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{{Name: "app"}}})
	if err != nil {
		t.Fatal(err)
	}
	r.Apply(&raft.Log{Index: 1, Type: raft.LogNoop})
	r.Apply(&raft.Log{Index: 2, Type: raft.LogBarrier})
	if woken != 0 {
		t.Fatalf("woken %d times by entries that carry no command", woken)
	}
	r.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: entry})
	if woken != 1 {
		t.Fatalf("woken %d times after one command, want 1", woken)
	}
	b, err := fsm.MarshalSnapshot(r.f.State())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	if woken != 2 {
		t.Errorf("woken %d times after a restore, want 2", woken)
	}
}
