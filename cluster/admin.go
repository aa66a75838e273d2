package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sitewitness/witness/config"
	"github.com/sitewitness/witness/fsm"
	"github.com/sitewitness/witness/policy"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// forwardedKey marks a request that a follower forwarded to the leader, so
// that it is never forwarded twice.
const forwardedKey = "witness-forwarded-by"

// leaderWait bounds how long a write waits for an election to finish.
const leaderWait = 5 * time.Second

func (n *Node) startAdmin() error {
	if n.opts.NoAdminListener {
		return nil
	}
	lis, err := net.Listen("tcp", n.cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", n.cfg.AdminAddr, err)
	}
	n.adminLis = lis
	sec, err := n.securityOptions()
	if err != nil {
		_ = lis.Close()
		return err
	}
	n.grpcSrv = grpc.NewServer(append(append(n.metrics.grpcServerOptions(), adminServerOptions()...), sec...)...)
	witnessv1.RegisterAdminServer(n.grpcSrv, &adminServer{n: n})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(witnessv1.Admin_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(n.grpcSrv, hs)
	reflection.Register(n.grpcSrv)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.grpcSrv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Error("admin server", keyErr, err)
		}
	}()
	return nil
}

// AdminAddr is the address the admin API listens on.
func (n *Node) AdminAddr() string {
	if n.adminLis == nil {
		return n.cfg.AdminAddr
	}
	return n.adminLis.Addr().String()
}

type adminServer struct {
	witnessv1.UnimplementedAdminServer
	n *Node
}

// forward sends a write to the leader when this node is not it. It returns
// handled=false when this node leads and should serve the call itself.
func forward[Req, Resp proto.Message](ctx context.Context, n *Node, req Req,
	call func(witnessv1.AdminClient, context.Context, Req, ...grpc.CallOption) (Resp, error)) (resp Resp, handled bool, err error) {
	if n.IsLeader() {
		return resp, false, nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedKey)) > 0 {
		name, admin := n.Leader()
		return resp, true, status.Error(codes.Unavailable, (&NotLeaderError{Leader: name, LeaderAdmin: admin}).Error()+"; retry")
	}
	wctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	var admin string
	for {
		var name string
		name, admin = n.Leader()
		if name == n.cfg.Name {
			return resp, false, nil
		}
		if admin != "" {
			break
		}
		select {
		case <-wctx.Done():
			return resp, true, status.Error(codes.Unavailable, "no leader is known: the cluster may have lost its majority")
		case <-time.After(20 * time.Millisecond):
		}
	}
	c, err := n.client(admin)
	if err != nil {
		return resp, true, status.Error(codes.Unavailable, err.Error())
	}
	ctx = n.forwardCaller(metadata.AppendToOutgoingContext(ctx, forwardedKey, n.cfg.Name))
	resp, err = call(c, ctx, req)
	return resp, true, err
}

// apply commits a command on this leader and maps refusals to gRPC codes.
func (s *adminServer) apply(ctx context.Context, cmd proto.Message) (fsm.Result, error) {
	res, err := s.n.Apply(ctx, cmd)
	if err != nil {
		return res, toStatus(err)
	}
	if res.Err != nil {
		return res, toStatus(res.Err)
	}
	return res, nil
}

// toStatus maps errors to gRPC status codes; callers read the code, never
// the text.
func toStatus(err error) error {
	var nl *NotLeaderError
	var ve config.Errors
	code := codes.Internal
	switch {
	case errors.As(err, &ve):
		br := &errdetails.BadRequest{}
		for _, e := range ve {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: e.Field, Description: e.Error()})
		}
		st := status.New(codes.InvalidArgument, "invalid group spec:\n"+ve.Error())
		if withDetails, derr := st.WithDetails(br); derr == nil {
			st = withDetails
		}
		return st.Err()
	case errors.Is(err, fsm.ErrStaleToken):
		code = codes.Aborted
	case errors.Is(err, fsm.ErrNoGroup):
		code = codes.NotFound
	case errors.Is(err, fsm.ErrUnknownSite), errors.Is(err, fsm.ErrInvalid), errors.Is(err, errInvalidRequest):
		code = codes.InvalidArgument
	case errors.Is(err, fsm.ErrSameSite), errors.Is(err, fsm.ErrActiveSiteRemoved), errors.Is(err, fsm.ErrPending), errors.Is(err, fsm.ErrNoPending),
		errors.Is(err, fsm.ErrDisarmed), errors.Is(err, fsm.ErrObserveOnly), errors.Is(err, fsm.ErrScheduled), errors.Is(err, fsm.ErrNotScheduled):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrNameClash):
		code = codes.AlreadyExists
	case errors.As(err, &nl), errors.Is(err, ErrClosed), errors.Is(err, ErrNoLeader):
		code = codes.Unavailable
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

func (n *Node) nowNano() int64 { return n.clock.Now().UnixNano() }

func memberProto(m Member) *witnessv1.Member {
	return &witnessv1.Member{Name: m.Name, Site: m.Site, Address: m.RaftAddr, Voter: m.Voter, Alive: m.Alive, Leader: m.Leader, AdminAddress: m.AdminAddr, GossipAddress: m.GossipAddr}
}

func sortMembers(ms []Member) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
}

func (s *adminServer) Status(ctx context.Context, _ *witnessv1.StatusRequest) (*witnessv1.StatusResponse, error) {
	n := s.n
	members, err := n.Members()
	if err != nil {
		return nil, toStatus(err)
	}
	leader, _ := n.Leader()
	resp := &witnessv1.StatusResponse{
		ClusterId: n.ClusterID(), Node: n.cfg.Name, Leader: leader,
		Groups: redactGroups(n.fsm.Groups()), AppliedIndex: n.raft.AppliedIndex(), LastToken: n.fsm.LastToken(),
	}
	for _, m := range members {
		resp.Members = append(resp.Members, memberProto(m))
	}
	return resp, nil
}

func (s *adminServer) ApplyGroups(ctx context.Context, req *witnessv1.ApplyGroupsRequest) (*witnessv1.ApplyGroupsResponse, error) {
	specs, err := config.ParseGroupsWith(req.GetDocument(), s.n.cfg.Timing())
	if err != nil {
		return nil, toStatus(err)
	}
	var existing []*witnessv1.GroupSpec
	for _, g := range s.n.fsm.Groups() {
		existing = append(existing, g.GetSpec())
	}
	if err := config.CheckOwnership(existing, specs); err != nil {
		return nil, toStatus(err)
	}
	// Secrets that a failover would read are read now, on the witness that
	// applies, not first in the middle of a failover.
	if err := config.CheckLocalFiles(specs); err != nil {
		return nil, toStatus(err)
	}
	changes := make([]*witnessv1.GroupChange, len(specs))
	for i, spec := range specs {
		c := &witnessv1.GroupChange{Name: spec.GetName(), Change: witnessv1.ChangeKind_CHANGE_KIND_CREATE}
		if g, ok := s.n.fsm.Group(spec.GetName()); ok {
			c.Change = witnessv1.ChangeKind_CHANGE_KIND_UPDATE
			if proto.Equal(g.GetSpec(), spec) {
				c.Change = witnessv1.ChangeKind_CHANGE_KIND_UNCHANGED
			}
			active := g.GetStatus().GetActiveSite()
			found := false
			for _, site := range spec.GetSites() {
				found = found || site.GetName() == active
			}
			if !found {
				return nil, toStatus(fmt.Errorf("group %q is active at %q, which the update removes; switch it over first: %w", spec.GetName(), active, fsm.ErrActiveSiteRemoved))
			}
		}
		changes[i] = c
	}
	if req.GetDryRun() {
		return &witnessv1.ApplyGroupsResponse{Changes: changes, Warnings: rewindWarnings(ctx, specs)}, nil
	}
	if resp, handled, err := forward(ctx, s.n, req, witnessv1.AdminClient.ApplyGroups); handled {
		return resp, err
	}
	// A new group starts where its database is the primary, never
	// blindly at its first site.
	starts, err := s.n.groupStarts(ctx, specs, req.GetActiveSites())
	if err != nil {
		return nil, toStatus(err)
	}
	if _, err := s.apply(ctx, &witnessv1.PutGroupsCommand{Specs: specs, AtUnixNano: s.n.nowNano(), By: s.n.caller(ctx, req.GetBy()), Starts: starts}); err != nil {
		return nil, err
	}
	return &witnessv1.ApplyGroupsResponse{Changes: changes, Applied: true, Warnings: rewindWarnings(ctx, specs)}, nil
}

// by names who asked, for the audit history.
func by(given string) string {
	if given != "" {
		return given
	}
	return "operator"
}

func (s *adminServer) ListGroups(ctx context.Context, _ *witnessv1.ListGroupsRequest) (*witnessv1.ListGroupsResponse, error) {
	return &witnessv1.ListGroupsResponse{Groups: redactGroups(s.n.fsm.Groups())}, nil
}

func (s *adminServer) GetGroup(ctx context.Context, req *witnessv1.GetGroupRequest) (*witnessv1.GetGroupResponse, error) {
	if req.GetLinearizable() {
		rctx, cancel := context.WithTimeout(ctx, leaderWait)
		err := s.n.readIndex(rctx)
		cancel()
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "no linearizable read: %v", err)
		}
	}
	g, ok := s.n.fsm.Group(req.GetName())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "group %q not found", req.GetName())
	}
	return &witnessv1.GetGroupResponse{Group: redactGroup(g), Explanation: s.n.explain(req.GetName())}, nil
}

func (s *adminServer) DeleteGroup(ctx context.Context, req *witnessv1.DeleteGroupRequest) (*witnessv1.DeleteGroupResponse, error) {
	if resp, handled, err := forward(ctx, s.n, req, witnessv1.AdminClient.DeleteGroup); handled {
		return resp, err
	}
	if _, err := s.apply(ctx, &witnessv1.DeleteGroupCommand{Name: req.GetName(), AtUnixNano: s.n.nowNano(), By: s.n.caller(ctx, req.GetBy())}); err != nil {
		return nil, err
	}
	return &witnessv1.DeleteGroupResponse{}, nil
}

func (s *adminServer) Switchover(ctx context.Context, req *witnessv1.SwitchoverRequest) (*witnessv1.SwitchoverResponse, error) {
	if req.GetGroup() == "" || req.GetToSite() == "" {
		return nil, status.Error(codes.InvalidArgument, "group and to_site are required")
	}
	if resp, handled, err := forward(ctx, s.n, req, witnessv1.AdminClient.Switchover); handled {
		return resp, err
	}
	g, ok := s.n.fsm.Group(req.GetGroup())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "group %q not found", req.GetGroup())
	}
	if at := req.GetAtUnixNano(); at > s.n.nowNano() {
		return s.n.scheduleSwitchover(ctx, g, req)
	}
	if exp := req.GetExpectedToken(); exp == 0 || exp == g.GetStatus().GetToken() {
		// (A stale token is refused by the FSM as Aborted, first.)
		if err := s.n.checkTarget(g, req.GetToSite()); err != nil {
			return nil, err
		}
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "switchover asked by operator"
	}
	res, err := s.apply(ctx, &witnessv1.TransitionCommand{
		Moves: []*witnessv1.Move{{Group: req.GetGroup(), ExpectedToken: req.GetExpectedToken(), ToSite: req.GetToSite(),
			FromPrimary: s.n.primaryAt(req.GetGroup(), s.n.clock.Now()), ToNode: s.n.targetNode(req.GetGroup(), req.GetToSite(), policy.JudgePlanned)}},
		Kind:   witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER,
		Reason: reason, AtUnixNano: s.n.nowNano(), By: s.n.caller(ctx, req.GetBy()),
		// Two phases: the group stays at its site while the leader fences
		// it at this new token; the move commits once the fence holds.
		Prepare: true,
	})
	if err != nil {
		return nil, err
	}
	return &witnessv1.SwitchoverResponse{Token: res.Tokens[req.GetGroup()], FromSite: g.GetStatus().GetActiveSite()}, nil
}

// Failover moves a group to another site at once, for an operator whose
// active site is lost. See the Failover RPC.
func (s *adminServer) Failover(ctx context.Context, req *witnessv1.FailoverRequest) (*witnessv1.FailoverResponse, error) {
	if req.GetGroup() == "" || req.GetToSite() == "" {
		return nil, status.Error(codes.InvalidArgument, "group and to_site are required")
	}
	if req.GetOldSiteDown() && req.GetReason() == "" {
		return nil, status.Error(codes.InvalidArgument, "old_site_down needs a reason: say how you know the old site is down")
	}
	if req.GetReason() == "" {
		return nil, status.Error(codes.InvalidArgument, "a failover needs a reason, for the group's history")
	}
	if resp, handled, err := forward(ctx, s.n, req, witnessv1.AdminClient.Failover); handled {
		return resp, err
	}
	g, ok := s.n.fsm.Group(req.GetGroup())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "group %q not found", req.GetGroup())
	}
	st := g.GetStatus()
	if err := s.n.checkSite(g, req.GetToSite()); err != nil {
		return nil, err
	}
	switch {
	case st.GetPending() != nil:
		return nil, status.Errorf(codes.FailedPrecondition, "group %q is in the middle of a switchover to %s: wait for it to move or abort", req.GetGroup(), st.GetPending().GetToSite())
	}
	expected := req.GetExpectedToken()
	if expected == 0 {
		expected = st.GetToken()
	}
	reason := req.GetReason()
	// The data-loss guard, as for a switchover: the old site is fenced
	// before the new one is promoted, so a standby still streaming from it
	// may take over. --force overrides it, and the override is recorded
	// with what the guard said.
	guard := ""
	if ok, why := s.n.eligible(req.GetGroup(), req.GetToSite(), policy.JudgeGuard); !ok {
		if !req.GetForce() {
			return nil, status.Errorf(codes.FailedPrecondition, "%s is not eligible: %s (force overrides the data-loss guard)", req.GetToSite(), why)
		}
		guard = why
	}
	res, err := s.apply(ctx, &witnessv1.TransitionCommand{
		Moves: []*witnessv1.Move{{Group: req.GetGroup(), ExpectedToken: expected, ToSite: req.GetToSite(),
			FromPrimary: s.n.primaryAt(req.GetGroup(), s.n.clock.Now()), ToNode: s.n.targetNode(req.GetGroup(), req.GetToSite(), policy.JudgeGuard)}},
		Kind:   witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER,
		Reason: reason, AtUnixNano: s.n.nowNano(), By: s.n.caller(ctx, req.GetBy()),
		Operator: true, OldSiteDown: req.GetOldSiteDown(),
		Forced: guard != "", Guard: guard,
	})
	if err != nil {
		return nil, err
	}
	if guard != "" {
		s.n.log.Warn("operator failover overrides the data-loss guard", "group", req.GetGroup(), "from", st.GetActiveSite(), "to", req.GetToSite(),
			"token", res.Tokens[req.GetGroup()], "by", by(req.GetBy()), "reason", reason, "guard", guard)
	}
	if req.GetOldSiteDown() {
		s.n.log.Warn("operator failover: the old site is attested down", "group", req.GetGroup(), "from", st.GetActiveSite(), "to", req.GetToSite(),
			"token", res.Tokens[req.GetGroup()], "by", s.n.caller(ctx, req.GetBy()), "reason", reason)
	}
	return &witnessv1.FailoverResponse{Token: res.Tokens[req.GetGroup()], FromSite: st.GetActiveSite()}, nil
}

func (s *adminServer) SetMode(ctx context.Context, req *witnessv1.SetModeRequest) (*witnessv1.SetModeResponse, error) {
	if resp, handled, err := forward(ctx, s.n, req, witnessv1.AdminClient.SetMode); handled {
		return resp, err
	}
	if _, err := s.apply(ctx, &witnessv1.SetModeCommand{Group: req.GetGroup(), Mode: req.GetMode(), AtUnixNano: s.n.nowNano(), By: s.n.caller(ctx, req.GetBy())}); err != nil {
		return nil, err
	}
	return &witnessv1.SetModeResponse{}, nil
}

func (s *adminServer) SetArmed(ctx context.Context, req *witnessv1.SetArmedRequest) (*witnessv1.SetArmedResponse, error) {
	if resp, handled, err := forward(ctx, s.n, req, witnessv1.AdminClient.SetArmed); handled {
		return resp, err
	}
	if _, err := s.apply(ctx, &witnessv1.SetArmedCommand{Group: req.GetGroup(), Armed: req.GetArmed(), AtUnixNano: s.n.nowNano(), By: s.n.caller(ctx, req.GetBy())}); err != nil {
		return nil, err
	}
	return &witnessv1.SetArmedResponse{}, nil
}

func (s *adminServer) AddMember(ctx context.Context, req *witnessv1.AddMemberRequest) (*witnessv1.AddMemberResponse, error) {
	if req.GetName() == "" || req.GetRaftAddress() == "" {
		return nil, status.Error(codes.InvalidArgument, "name and raft_address are required")
	}
	if id := req.GetClusterId(); id != "" && id != s.n.ClusterID() {
		return nil, status.Errorf(codes.FailedPrecondition, "node %q belongs to cluster %s, this is %s", req.GetName(), id, s.n.ClusterID())
	}
	if resp, handled, err := forward(ctx, s.n, req, witnessv1.AdminClient.AddMember); handled {
		return resp, err
	}
	if err := s.n.addVoter(req.GetName(), req.GetRaftAddress()); err != nil {
		return nil, toStatus(err)
	}
	members, err := s.n.Members()
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &witnessv1.AddMemberResponse{ClusterId: s.n.ClusterID()}
	for _, m := range members {
		resp.Members = append(resp.Members, memberProto(m))
	}
	return resp, nil
}

func (s *adminServer) RemoveMember(ctx context.Context, req *witnessv1.RemoveMemberRequest) (*witnessv1.RemoveMemberResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	for range 2 {
		if resp, handled, err := forward(ctx, s.n, req, witnessv1.AdminClient.RemoveMember); handled {
			return resp, err
		}
		err := s.n.removeServer(req.GetName())
		var nl *NotLeaderError
		if errors.As(err, &nl) {
			// The leader removes itself: it handed leadership over, so the
			// new leader carries the removal out.
			wctx, cancel := context.WithTimeout(ctx, leaderWait)
			_, werr := s.n.WaitLeader(wctx)
			cancel()
			if werr != nil {
				return nil, toStatus(werr)
			}
			continue
		}
		if err != nil {
			return nil, toStatus(err)
		}
		return &witnessv1.RemoveMemberResponse{}, nil
	}
	return nil, status.Error(codes.Unavailable, "leadership moved while removing the member; retry")
}

// RunHook is internal: the leader asks this witness to run a hook at its
// site. See Node.runHook.
func (s *adminServer) RunHook(ctx context.Context, req *witnessv1.RunHookRequest) (*witnessv1.RunHookResponse, error) {
	return s.n.runHook(ctx, req)
}

// isPermanent reports whether a join error will not go away by retrying.
func isPermanent(err error) bool {
	switch status.Code(err) {
	case codes.AlreadyExists, codes.FailedPrecondition, codes.InvalidArgument, codes.PermissionDenied:
		return true
	}
	return false
}

// checkTarget refuses a move of g to site that is not a site of g, is its
// active site, or is not eligible by the policy as this witness sees it
// now, as for a switchover (whose target may still stream).
func (n *Node) checkTarget(g *witnessv1.Group, site string) error {
	if err := n.checkSite(g, site); err != nil {
		return err
	}
	if ok, why := n.eligible(g.GetSpec().GetName(), site, policy.JudgePlanned); !ok {
		return status.Errorf(codes.FailedPrecondition, "%s is not eligible: %s", site, why)
	}
	return nil
}
