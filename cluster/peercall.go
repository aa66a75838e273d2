package cluster

import (
	"context"

	"google.golang.org/grpc/codes"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// checkLeaderCall judges a call that only the current leader may make
// (RunHook, DemoteLocal): claimed is the leader the request names, term
// the Raft term it says it leads in.
//
// With TLS, the caller's certificate must be that of the witness claimed:
// another witness, or a client, cannot speak for the leader (authorization
// already kept out every certificate but this cluster's witnesses). Then
// the term decides, not this witness's view of who leads, which may be
// stale: a term older than this witness's is a deposed leader's and is
// refused; a newer one is a leader this witness has not heard of yet and
// is believed; in the same term, Raft allows only one leader, so a
// witness that knows it refuses any other. The token carried in the
// request is judged by the caller (groupAtToken, demoteLocal). A request
// without a term (a witness of an older version) is judged by this
// witness's view, as before.
func (n *Node) checkLeaderCall(ctx context.Context, claimed string, term uint64) error {
	if _, remote := grpcpeer.FromContext(ctx); remote && n.tls != nil {
		id := callerIdentity(ctx)
		if name, ok := witnessName(n.cfg.Cluster, id); !ok || name != claimed {
			return status.Errorf(codes.PermissionDenied, "%q asks in the name of leader %q", id, claimed)
		}
	}
	cur := n.raft.CurrentTerm()
	leader, _ := n.Leader()
	switch {
	case term == 0 && leader == "":
		return status.Error(codes.Unavailable, "this witness knows no leader")
	case term == 0 && leader != claimed:
		return status.Errorf(codes.FailedPrecondition, "asked by %q, but the leader is %q", claimed, leader)
	case term == 0:
		return nil
	case term < cur:
		return status.Errorf(codes.FailedPrecondition, "asked by %q in term %d, but this witness is in term %d: a deposed leader", claimed, term, cur)
	case term == cur && leader != "" && leader != claimed:
		return status.Errorf(codes.FailedPrecondition, "asked by %q in term %d, whose leader is %q", claimed, term, leader)
	}
	return nil
}
