package cluster

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// checkLeaderCall judges a call that only the current leader may make
// (RunHook, DemoteLocal, ReinstateLocal): claimed is the leader the request names, term
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

// askSiteWitnesses calls ask on each live witness at site that gossip
// knows, in turn, until one answers: with anything but Unavailable, which
// means it could not take the call now (no leader known, no linearizable
// read). It returns who answered and ask's error. When none answered,
// answered is false and the error, wrapping ErrNoSiteWitness, says what
// each one said.
func (n *Node) askSiteWitnesses(ctx context.Context, site string, ask func(witnessv1.AdminClient) error) (node string, answered bool, err error) {
	members, err := n.Members()
	if err != nil {
		return "", false, err
	}
	var tried []string
	for _, m := range members {
		if m.Site != site || !m.Alive || m.AdminAddr == "" {
			continue
		}
		c, err := n.client(m.AdminAddr)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", m.Name, err))
			continue
		}
		err = ask(c)
		if status.Code(err) == codes.Unavailable && ctx.Err() == nil {
			tried = append(tried, fmt.Sprintf("%s at %s: %s", m.Name, m.AdminAddr, status.Convert(err).Message()))
			continue
		}
		return m.Name, true, err
	}
	if len(tried) == 0 {
		return "", false, fmt.Errorf("%w (gossip sees none alive)", ErrNoSiteWitness)
	}
	return "", false, fmt.Errorf("no witness there answered: %s: %w", strings.Join(tried, "; "), ErrNoSiteWitness)
}
