package fsm

import (
	"slices"
	"sort"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Read-only views. A group the FSM holds is never changed once readers can
// see it: Apply edits a copy of the one group a command touches (edit) and
// swaps it in. So Group, Groups and State hand out the held values
// themselves, without copying every group for every read: the leader's
// evaluation, the reconciler and the admin API read a state of 10,000
// groups for the price of a slice. Callers must not modify what they get.

// edit returns the group to change under f.mu: a copy of the held one,
// already swapped in, so views handed out before do not change.
func (f *FSM) edit(name string) (*witnessv1.Group, bool) {
	g, ok := f.groups[name]
	if !ok {
		return nil, false
	}
	g = editable(g)
	f.groups[name] = g
	if v := f.sorted; v != nil {
		// g takes the old one's place (a copy of pointers, not a sort),
		// in a new view if this one was lent to readers: the edits of
		// one entry of many groups, and of entries no one read between,
		// share one copy.
		if f.sortedLent {
			v = slices.Clone(v)
			f.sorted, f.sortedLent = v, false
		}
		i := sort.Search(len(v), func(i int) bool { return v[i].GetSpec().GetName() >= name })
		v[i] = g
	}
	return g, true
}

// editable is a copy of g whose status may be changed. The spec is
// shared: no command changes a spec in place (an apply replaces it whole).
// The status is a new message with new lists, whose elements (step
// results, transitions, counts, positions) and sub-messages are the held
// ones: no command changes one of those in place either, it replaces it
// (TestNoEntryChangesWhatWasHandedOut). So a step result of each of
// 10,000 groups copies 10,000 statuses' fields and lists of pointers, not
// every step and transition they keep.
func editable(g *witnessv1.Group) *witnessv1.Group {
	out := &witnessv1.Group{Spec: g.GetSpec(), SpecVersion: g.GetSpecVersion()}
	if st := g.GetStatus(); st != nil {
		out.Status = shallow(st)
	}
	out.ProtoReflect().SetUnknown(g.ProtoReflect().GetUnknown())
	return out
}

// shallow is a copy of st that shares its sub-messages and the elements of
// its lists, not the lists themselves: appending to or setting an element
// of a list of the copy leaves st's as they were. Each list has room for
// one more, what an entry adds. Every field is named here: a field added
// to GroupStatus must be added too (TestShallowCopiesEveryField).
func shallow(st *witnessv1.GroupStatus) *witnessv1.GroupStatus {
	out := &witnessv1.GroupStatus{
		ActiveSite:       st.ActiveSite,
		Token:            st.Token,
		Mode:             st.Mode,
		Armed:            st.Armed,
		DisarmedAtToken:  st.DisarmedAtToken,
		UpdatedUnixNano:  st.UpdatedUnixNano,
		History:          roomForOne(st.History),
		Steps:            roomForOne(st.Steps),
		Proposal:         st.Proposal,
		Pending:          st.Pending,
		TransitionCounts: roomForOne(st.TransitionCounts),
		Scheduled:        st.Scheduled,
		LastScheduled:    st.LastScheduled,
		Primaries:        roomForOne(st.Primaries),
		ActiveNode:       st.ActiveNode,
	}
	out.ProtoReflect().SetUnknown(st.ProtoReflect().GetUnknown())
	return out
}

// roomForOne is a copy of s with room to append one more; nil stays nil.
func roomForOne[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append(make([]T, 0, len(s)+1), s...)
}

// put holds a new group under its name and drops the sorted view.
func (f *FSM) put(g *witnessv1.Group) {
	f.groups[g.GetSpec().GetName()] = g
	f.sorted, f.sortedLent = nil, false
}

// view is every held group sorted by name, built once per change; callers
// hold f.mu (for reading or writing).
func (f *FSM) view() []*witnessv1.Group {
	if v := f.sorted; v != nil {
		return v
	}
	out := make([]*witnessv1.Group, 0, len(f.groups))
	for _, g := range f.groups {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetSpec().GetName() < out[j].GetSpec().GetName() })
	return out
}
