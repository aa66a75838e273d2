package cluster

import witnessv1 "github.com/sitewitness/witness/proto/witness/v1"

// Group returns one replicated group, read-only (actions.GroupReader): the
// reconciler's per-step reads do not walk every group.
func (n *Node) Group(name string) (*witnessv1.Group, bool) { return n.fsm.Group(name) }
