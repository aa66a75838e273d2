package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/postgres"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// The leader's local layer of a fence: rather than fencing an old primary
// over SQL from afar, the leader asks a witness at the old site to demote
// the database there (stop it, leave it able to start only as a standby),
// as the witness would do itself on losing its lease. The witness reads
// the group linearizably and refuses a token older than the group's, so a
// deposed leader cannot demote a site that has since become active again.

// ErrDemoteRefused: the witness at the site refused to demote (a stale
// token, a group active there, no data_dir, …).
var ErrDemoteRefused = errors.New("demotion refused")

// DemoteLocal asks a witness at site to demote the group's database there
// (actions.SiteDemoter): this witness when it is at that site, else each
// live witness there that gossip knows, in turn, until one answers. A
// refusal is not asked again elsewhere: the others hold the same state.
func (n *Node) DemoteLocal(ctx context.Context, site string, req actions.DemoteRequest) (uint64, error) {
	preq := &witnessv1.DemoteLocalRequest{Group: req.Group, Token: req.Token, Mode: string(req.Mode), Leader: n.cfg.Name, Term: n.raft.CurrentTerm()}
	what := fmt.Sprintf("demote %s at %s (token %d)", req.Group, site, req.Token)
	if site == n.cfg.Site {
		resp, err := n.demoteLocal(ctx, preq)
		return resp.GetFinalLsn(), demoteOutcome(what, n.cfg.Name, err)
	}
	var resp *witnessv1.DemoteLocalResponse
	node, answered, err := n.askSiteWitnesses(ctx, site, func(c witnessv1.AdminClient) (err error) {
		resp, err = c.DemoteLocal(ctx, preq)
		return err
	})
	if !answered {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return resp.GetFinalLsn(), demoteOutcome(what, node, err)
}

func demoteOutcome(what, node string, err error) error {
	switch {
	case err == nil:
		return nil
	case status.Code(err) == codes.DeadlineExceeded, errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s on %s: no answer in time: %w", what, node, context.DeadlineExceeded)
	case status.Code(err) == codes.Canceled, errors.Is(err, context.Canceled):
		return fmt.Errorf("%s on %s: %w", what, node, context.Canceled)
	}
	st := status.Convert(err)
	return fmt.Errorf("%s on %s: %s: %s: %w", what, node, st.Code(), st.Message(), ErrDemoteRefused)
}

// DemoteLocal is internal: the leader asks this witness to demote its
// site's database of a group. See Node.demoteLocal.
func (s *adminServer) DemoteLocal(ctx context.Context, req *witnessv1.DemoteLocalRequest) (*witnessv1.DemoteLocalResponse, error) {
	return s.n.demoteLocal(ctx, req)
}

// demoteLocal serves DemoteLocal on the witness at the old site. After a
// linearizable read it refuses a token older (or newer) than the group's,
// a group that is active at this site outside the first phase of a
// switchover, and a group with no data_dir here. It answers once the
// database refuses connections and its processes are gone.
func (n *Node) demoteLocal(ctx context.Context, req *witnessv1.DemoteLocalRequest) (*witnessv1.DemoteLocalResponse, error) {
	mode := postgres.StopMode(req.GetMode())
	if req.GetGroup() == "" || req.GetToken() == 0 {
		return nil, status.Error(codes.InvalidArgument, "group and token are required")
	}
	if mode != postgres.StopFast && mode != postgres.StopImmediate {
		return nil, status.Errorf(codes.InvalidArgument, "mode %q: want fast or immediate", req.GetMode())
	}
	if err := n.checkLeaderCall(ctx, req.GetLeader(), req.GetTerm()); err != nil {
		return nil, err
	}
	// The read and the demotion, not beside a start of the database after
	// a given-up switchover (abortstart.go).
	n.localDB.Lock()
	defer n.localDB.Unlock()
	rctx, cancel := context.WithTimeout(ctx, 3*leaseRenewTimeout)
	err := n.readIndex(rctx)
	cancel()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "no linearizable read of the group: %v", err)
	}
	g, ok := n.fsm.Group(req.GetGroup())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "group %q not found", req.GetGroup())
	}
	st := g.GetStatus()
	switch {
	case req.GetToken() < st.GetToken():
		return nil, status.Errorf(codes.FailedPrecondition, "stale token %d: group %q is at token %d", req.GetToken(), req.GetGroup(), st.GetToken())
	case req.GetToken() > st.GetToken():
		return nil, status.Errorf(codes.FailedPrecondition, "token %d: group %q is at token %d after a linearizable read", req.GetToken(), req.GetGroup(), st.GetToken())
	case st.GetActiveSite() == n.cfg.Site && st.GetPending() == nil:
		return nil, status.Errorf(codes.FailedPrecondition, "group %q is active at this witness's site %s at token %d, with no switchover pending", req.GetGroup(), n.cfg.Site, st.GetToken())
	}
	dsn := localDSN(g, n.cfg.Site)
	if dsn == "" || actions.SiteNode(g, n.cfg.Site).GetDataDir() == "" {
		return nil, status.Errorf(codes.FailedPrecondition, "group %q has no database with a data_dir at site %s", req.GetGroup(), n.cfg.Site)
	}
	key := fmt.Sprintf("demote/%s/%d", req.GetGroup(), req.GetToken())
	if !n.hookRuns.start(key) {
		return nil, status.Errorf(codes.Aborted, "a demotion of %q at token %d is already running here", req.GetGroup(), req.GetToken())
	}
	defer n.hookRuns.done(key)
	log := n.log.With("group", req.GetGroup(), "token", req.GetToken(), "mode", mode, "asked_by", req.GetLeader())
	began := time.Now()
	db := n.localDatabase(g)
	stopped, err := db.Demote(ctx, st.GetToken(), mode)
	if err != nil {
		log.Error("demotion for the leader failed", keyErr, err)
		return nil, status.Errorf(codes.Internal, "demote: %v", err)
	}
	took := time.Since(began)
	var final uint64
	if mode == postgres.StopFast {
		// The shutdown checkpoint follows every commit the database
		// acknowledged: a switchover waits for its target to replay it.
		if final, err = db.FinalPosition(ctx); err != nil {
			log.Warn("final WAL position of the demoted database not read", keyErr, err)
		}
	}
	if stopped {
		log.Warn("demoted this site's database for the leader: stopped, it can start again only as a standby", "took", took, "final_lsn", postgres.FormatLSN(final))
	} else {
		log.Warn("this site's database is a standby that stays one: stamped with the token for the leader and left running", "took", took, "final_lsn", postgres.FormatLSN(final))
	}
	return &witnessv1.DemoteLocalResponse{Node: n.cfg.Name, Site: n.cfg.Site, DurationMs: took.Milliseconds(), FinalLsn: final}, nil
}
