package cluster

import (
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// raftFSM adapts fsm.FSM to raft.FSM.
type raftFSM struct {
	f *fsm.FSM
	// applied is the index of the last entry the state machine has
	// applied. Raft's own AppliedIndex moves when entries are handed to
	// the state machine's goroutine, before it has applied them, so a
	// read that must see an index waits for this one.
	applied atomic.Uint64
	// beforeApply is Options.beforeApply (tests only).
	beforeApply func(index uint64)
	// changed is called after each applied command and restored
	// snapshot: the leader's reconciler looks at the state again.
	changed func()
}

// Apply applies a committed command entry. fsm.FSM.Apply panics on an
// entry it cannot decode, which stops the node instead of diverging.
func (r *raftFSM) Apply(l *raft.Log) any {
	if r.beforeApply != nil {
		r.beforeApply(l.Index)
	}
	defer r.applied.Store(l.Index)
	if l.Type != raft.LogCommand {
		return nil
	}
	res := r.f.Apply(l.Data)
	if r.changed != nil {
		r.changed()
	}
	return res
}

func (r *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{state: r.f.State()}, nil
}

func (r *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	s, err := fsm.UnmarshalSnapshot(b)
	if err != nil {
		return err
	}
	if err := r.f.Restore(s); err != nil {
		return err
	}
	if r.changed != nil {
		r.changed()
	}
	return nil
}

// fsmSnapshot holds an immutable copy of the state; Persist encodes it off
// Raft's main loop.
type fsmSnapshot struct{ state *witnessv1.State }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	b, err := fsm.MarshalSnapshot(s.state)
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
