package fsm

import (
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

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

// editable is a copy of g whose status may be changed: the status is
// copied, the spec shared. No command changes a spec in place (an apply
// replaces it whole), so a step result of each of 10,000 groups copies
// 10,000 statuses, not the specs besides.
func editable(g *witnessv1.Group) *witnessv1.Group {
	out := &witnessv1.Group{Spec: g.GetSpec(), SpecVersion: g.GetSpecVersion()}
	if st := g.GetStatus(); st != nil {
		out.Status = proto.Clone(st).(*witnessv1.GroupStatus)
	}
	out.ProtoReflect().SetUnknown(g.ProtoReflect().GetUnknown())
	return out
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
