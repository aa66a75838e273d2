package fsm

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// stepFence is the reconciler's fence step, whose result may carry the
// fenced primary's final position.
const stepFence = "fence"

// positionAhead reports whether p is further than q: a higher timeline,
// or the same timeline and a higher position. A timeline of 0 is unknown:
// then the positions alone compare.
func positionAhead(p, q *witnessv1.PrimaryPosition) bool {
	if q.GetWalLsn() == 0 {
		return p.GetWalLsn() != 0
	}
	if p.GetTimeline() != q.GetTimeline() && p.GetTimeline() != 0 && q.GetTimeline() != 0 {
		return p.GetTimeline() > q.GetTimeline()
	}
	return p.GetWalLsn() > q.GetWalLsn()
}

// notePrimary keeps p in st.Primaries when it is further than the
// position held for its site. A position without a timeline takes the
// held one's: the fence of a switchover reads the final position alone,
// after its prepare recorded the timeline.
func notePrimary(st *witnessv1.GroupStatus, p *witnessv1.PrimaryPosition) {
	if p.GetSite() == "" || p.GetWalLsn() == 0 {
		return
	}
	i, found := slices.BinarySearchFunc(st.GetPrimaries(), p.GetSite(), func(h *witnessv1.PrimaryPosition, site string) int {
		return strings.Compare(h.GetSite(), site)
	})
	if found && !positionAhead(p, st.Primaries[i]) {
		return
	}
	p = proto.Clone(p).(*witnessv1.PrimaryPosition)
	if found {
		if p.Timeline == 0 {
			p.Timeline = st.Primaries[i].GetTimeline()
		}
		st.Primaries[i] = p
		return
	}
	st.Primaries = slices.Insert(st.Primaries, i, p)
}

// fencedPosition is the position a successful fence step r confirmed:
// the final position of the primary at the site its token moved from.
func fencedPosition(st *witnessv1.GroupStatus, r *witnessv1.StepResult) *witnessv1.PrimaryPosition {
	if r.GetStep() != stepFence || !r.GetOk() || r.GetWalLsn() == 0 {
		return nil
	}
	for _, t := range slices.Backward(st.GetHistory()) {
		if t.GetToken() == r.GetToken() {
			return &witnessv1.PrimaryPosition{Site: t.GetFromSite(), WalLsn: r.GetWalLsn(), AtUnixNano: r.GetStartedUnixNano()}
		}
	}
	return nil
}

// checkNode refuses a move that names a node not of its target site.
func checkNode(spec *witnessv1.GroupSpec, m *witnessv1.Move) error {
	if m.GetToNode() == "" {
		return nil
	}
	for _, n := range spec.GetActions().GetPostgres().GetNodes() {
		if n.GetName() == m.GetToNode() {
			if n.GetSite() != m.GetToSite() {
				return fmt.Errorf("transition %q to node %q: the node is at %q, not %q: %w", m.GetGroup(), m.GetToNode(), n.GetSite(), m.GetToSite(), ErrInvalid)
			}
			return nil
		}
	}
	return fmt.Errorf("transition %q to node %q: no such node: %w", m.GetGroup(), m.GetToNode(), ErrInvalid)
}

// moveNode is the node a move promotes: the one it names, else the one
// its switchover's prepare chose.
func moveNode(st *witnessv1.GroupStatus, m *witnessv1.Move) string {
	if n := m.GetToNode(); n != "" {
		return n
	}
	if p := st.GetPending(); p != nil && p.GetToSite() == m.GetToSite() {
		return p.GetToNode()
	}
	return ""
}
