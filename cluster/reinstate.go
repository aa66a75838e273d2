package cluster

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/config"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Reinstating an old primary. After a move, the old site's database is a
// fenced primary on a timeline the new primary has left. The leader asks
// a witness at that site (ReinstateLocal, like DemoteLocal) to turn it
// into a streaming standby of the new primary, at the group's current
// token; the witness reads the group linearizably and runs the
// postgres.Reinstater on its own host. Each step comes back as a
// StepResult named "reinstate:<step>", which the leader records in Raft.
//
// With reinstate: manual an operator asks (witnessctl reinstate GROUP
// SITE); with reinstate: auto the leader does it by itself once the move's
// plan is done (promoted, and DNS settled when the group has DNS), as soon
// as a witness at the old site is alive, retrying with backoff.

// StepReinstatePrefix prefixes the step names of a reinstate.
const StepReinstatePrefix = "reinstate:"

// reinstateTimeout bounds one reinstate: a base backup of a large
// database takes a while.
const reinstateTimeout = 30 * time.Minute

// Auto reinstate retries: first after reinstateRetryMin, doubling up to
// reinstateRetryMax.
const (
	reinstateCheckEvery = time.Second
	reinstateRetryMin   = 5 * time.Second
	reinstateRetryMax   = 5 * time.Minute
)

// ErrReinstateRefused: the witness at the site refused to reinstate (a
// stale token, the group active there, a primary holding a higher
// token, no data_dir …).
var ErrReinstateRefused = errors.New("reinstate refused")

// Reinstate is the operator's RPC; see the proto.
func (s *adminServer) Reinstate(ctx context.Context, req *witnessv1.ReinstateRequest) (*witnessv1.ReinstateResponse, error) {
	if req.GetGroup() == "" || req.GetSite() == "" {
		return nil, status.Error(codes.InvalidArgument, "group and site are required")
	}
	if resp, handled, err := forward(ctx, s.n, req, witnessv1.AdminClient.Reinstate); handled {
		return resp, err
	}
	g, ok := s.n.fsm.Group(req.GetGroup())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "group %q not found", req.GetGroup())
	}
	if err := reinstatable(g, req.GetSite()); err != nil {
		return nil, err
	}
	steps, err := s.n.reinstate(ctx, g, req.GetSite(), "operator "+by(req.GetBy()), true)
	resp := &witnessv1.ReinstateResponse{Token: g.GetStatus().GetToken(), Steps: steps, Ok: err == nil}
	if err != nil {
		resp.Error = err.Error()
	}
	return resp, nil
}

// reinstatable checks what the leader can check before asking the site.
func reinstatable(g *witnessv1.Group, site string) error {
	st := g.GetStatus()
	known := false
	for _, s := range g.GetSpec().GetSites() {
		known = known || s.GetName() == site
	}
	switch {
	case !known:
		return status.Errorf(codes.InvalidArgument, "%q is not a site of group %q", site, g.GetSpec().GetName())
	case site == st.GetActiveSite():
		return status.Errorf(codes.FailedPrecondition, "group %q is active at %s: reinstate makes a standby of an old primary, not of the active site", g.GetSpec().GetName(), site)
	case st.GetPending() != nil:
		return status.Errorf(codes.FailedPrecondition, "group %q is in the middle of a switchover to %s", g.GetSpec().GetName(), st.GetPending().GetToSite())
	case actions.SiteNode(g, site).GetDsn() == "" || actions.SiteNode(g, site).GetDataDir() == "":
		return status.Errorf(codes.FailedPrecondition, "group %q has no database with a dsn and data_dir at site %s", g.GetSpec().GetName(), site)
	case actions.ReplicationDSN(actions.SiteNode(g, st.GetActiveSite())) == "":
		return status.Errorf(codes.FailedPrecondition, "group %q has no dsn for its active site %s to follow", g.GetSpec().GetName(), st.GetActiveSite())
	}
	return nil
}

// reinstate asks a witness at site to reinstate the group's database
// there and records the steps it ran in Raft (all of them when it
// succeeds or when record is set; else only the failed one). rule says
// who asked.
func (n *Node) reinstate(ctx context.Context, g *witnessv1.Group, site, rule string, record bool) ([]*witnessv1.StepResult, error) {
	name, token := g.GetSpec().GetName(), g.GetStatus().GetToken()
	preq := &witnessv1.ReinstateLocalRequest{Group: name, Token: token, Leader: n.cfg.Name, Term: n.raft.CurrentTerm()}
	what := fmt.Sprintf("reinstate %s at %s (token %d)", name, site, token)
	ctx, cancel := context.WithTimeout(ctx, reinstateTimeout)
	defer cancel()
	began := n.clock.Now()
	var resp *witnessv1.ReinstateLocalResponse
	var err error
	if site == n.cfg.Site {
		resp, err = n.reinstateLocal(ctx, preq)
	} else {
		resp, err = n.askSite(ctx, site, preq)
	}
	var steps []*witnessv1.StepResult
	if err != nil {
		err = fmt.Errorf("%s: %w", what, err)
		steps = []*witnessv1.StepResult{{Token: token, Step: StepReinstatePrefix + "ask", Error: err.Error(),
			StartedUnixNano: began.UnixNano(), DurationMs: n.clock.Now().Sub(began).Milliseconds(), Node: n.cfg.Name, Attempt: 1, Detail: "site " + site}}
	} else {
		steps = resp.GetSteps()
		if !resp.GetOk() {
			err = fmt.Errorf("%s on %s: %s", what, resp.GetNode(), resp.GetError())
		}
	}
	keep := steps
	if err != nil && !record && len(steps) > 0 {
		keep = steps[len(steps)-1:]
	}
	var recErr error
	for _, s := range keep {
		s.Rule = rule
		res, aerr := n.Apply(ctx, &witnessv1.RecordStepCommand{Group: name, Result: s})
		if aerr == nil {
			aerr = res.Err
		}
		if aerr != nil {
			n.log.Warn("record reinstate step", "group", name, "step", s.GetStep(), keyErr, aerr)
			recErr = errors.Join(recErr, fmt.Errorf("record %s: %w", s.GetStep(), aerr))
		}
	}
	if err == nil && recErr != nil {
		// Done, but not in the history: said, and for auto done again
		// (it finds the node streaming and records that).
		err = fmt.Errorf("%s done, but its steps were not all recorded: %w", what, recErr)
	}
	return steps, err
}

// askSite sends ReinstateLocal to each live witness at site in turn until
// one answers.
func (n *Node) askSite(ctx context.Context, site string, preq *witnessv1.ReinstateLocalRequest) (*witnessv1.ReinstateLocalResponse, error) {
	var resp *witnessv1.ReinstateLocalResponse
	node, answered, err := n.askSiteWitnesses(ctx, site, func(c witnessv1.AdminClient) (err error) {
		resp, err = c.ReinstateLocal(ctx, preq)
		return err
	})
	if answered && err != nil {
		st := status.Convert(err)
		return nil, fmt.Errorf("%s: %s: %s: %w", node, st.Code(), st.Message(), ErrReinstateRefused)
	}
	return resp, err
}

// ReinstateLocal is internal; see Node.reinstateLocal.
func (s *adminServer) ReinstateLocal(ctx context.Context, req *witnessv1.ReinstateLocalRequest) (*witnessv1.ReinstateLocalResponse, error) {
	return s.n.reinstateLocal(ctx, req)
}

// reinstateLocal serves ReinstateLocal on the witness at the old site: it
// refuses a leader's ask from an older term (checkLeaderCall); after a
// linearizable read it refuses another token than the group's and
// a group active at this site, then runs the Reinstater. A run that fails
// is not an RPC error: the response carries the steps and why.
func (n *Node) reinstateLocal(ctx context.Context, req *witnessv1.ReinstateLocalRequest) (*witnessv1.ReinstateLocalResponse, error) {
	if req.GetGroup() == "" || req.GetToken() == 0 {
		return nil, status.Error(codes.InvalidArgument, "group and token are required")
	}
	// A deposed leader's ask is refused by its term, before the read.
	if err := n.checkLeaderCall(ctx, req.GetLeader(), req.GetTerm()); err != nil {
		return nil, err
	}
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
	if req.GetToken() != st.GetToken() {
		return nil, status.Errorf(codes.FailedPrecondition, "token %d: group %q is at token %d after a linearizable read", req.GetToken(), req.GetGroup(), st.GetToken())
	}
	if err := reinstatable(g, n.cfg.Site); err != nil {
		return nil, err
	}
	key := fmt.Sprintf("reinstate/%s", req.GetGroup())
	if !n.hookRuns.start(key) {
		return nil, status.Errorf(codes.Aborted, "a reinstate of %q is already running here", req.GetGroup())
	}
	defer n.hookRuns.done(key)
	r, preq := reinstaterFor(g, n.cfg.Site)
	log := n.log.With("group", req.GetGroup(), "token", req.GetToken(), "asked_by", req.GetLeader())
	log.Warn("reinstating this site's database as a standby", "source", st.GetActiveSite())
	// Carried through when the leader goes away: a pg_rewind cut short
	// leaves the data directory unusable. The next ask finds it done.
	rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), reinstateTimeout)
	defer cancel()
	rep, err := r.Reinstate(rctx, preq)
	resp := &witnessv1.ReinstateLocalResponse{Node: n.cfg.Name, Site: n.cfg.Site, Ok: err == nil, Method: rep.Method}
	for _, s := range rep.Steps {
		res := &witnessv1.StepResult{Token: req.GetToken(), Step: StepReinstatePrefix + s.Name, Ok: s.Err == nil,
			StartedUnixNano: s.Started.UnixNano(), DurationMs: s.Duration.Milliseconds(), Node: n.cfg.Name, Attempt: 1,
			Detail: strings.TrimSpace(n.cfg.Site + ": " + s.Detail)}
		if s.Err != nil {
			res.Error = s.Err.Error()
		}
		resp.Steps = append(resp.Steps, res)
	}
	if err != nil {
		resp.Error = err.Error()
		log.Error("reinstate failed", keyErr, err)
	} else {
		log.Warn("reinstated this site's database as a standby", "method", rep.Method)
	}
	return resp, nil
}

var slotUnsafe = regexp.MustCompile(`[^a-z0-9_]`)

// reinstaterFor builds the Reinstater and its request for the group's
// node at site, following the active site.
func reinstaterFor(g *witnessv1.Group, site string) (*postgres.Reinstater, postgres.ReinstateRequest) {
	pg := g.GetSpec().GetActions().GetPostgres()
	active := g.GetStatus().GetActiveSite()
	source := actions.ReplicationDSN(actions.SiteNode(g, active))
	local := actions.SiteNode(g, site)
	r := &postgres.Reinstater{
		Demoter: postgres.Demoter{DataDir: local.GetDataDir(), PgCtl: pg.GetPgCtl(), Command: pg.GetDemoteCommand()},
		SaveDir: pg.GetSaveDir()[site],
	}
	if pg.GetPgCtl() != "" {
		r.BinDir = dirOf(pg.GetPgCtl())
	}
	return r, postgres.ReinstateRequest{
		Group: g.GetSpec().GetName(), Token: g.GetStatus().GetToken(),
		LocalDSN: local.GetDsn(), SourceDSN: source,
		Slot:            "witness_" + slotUnsafe.ReplaceAllString(strings.ToLower(site), "_"),
		ApplicationName: site,
	}
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i > 0 {
		return path[:i]
	}
	return "/"
}

// autoReinstate runs while this node leads: for each group with
// reinstate: auto whose last move's plan is done, it reinstates the old
// site once a witness there is alive, retrying with backoff.
func (n *Node) autoReinstate(ctx context.Context) {
	tries := map[string]*reinstateTry{} // by group/token/site
	t := n.clock.NewTimer(reinstateCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		for _, g := range n.fsm.Groups() {
			for _, site := range autoReinstateDue(g) {
				key := fmt.Sprintf("%s/%d/%s", g.GetSpec().GetName(), g.GetStatus().GetToken(), site)
				try := tries[key]
				if try == nil {
					try = &reinstateTry{}
					tries[key] = try
				}
				if n.clock.Now().Before(try.next) || !n.siteAlive(site) {
					continue
				}
				_, err := n.reinstate(ctx, g, site, "auto", false)
				if err == nil {
					continue
				}
				try.attempts++
				wait := min(reinstateRetryMin<<min(try.attempts-1, 10), reinstateRetryMax)
				try.next = n.clock.Now().Add(wait)
				n.log.Warn("auto reinstate failed; retrying", "group", g.GetSpec().GetName(), "site", site, "in", wait, keyErr, err)
			}
		}
		t.Reset(reinstateCheckEvery)
	}
}

type reinstateTry struct {
	attempts int
	next     time.Time
}

// autoReinstateDue lists the sites of the group to reinstate now: with
// reinstate auto, once the current token's transition is a move whose plan
// is done, its old site first, then every other site with a database
// that is not the active one (their standbys follow the new primary),
// each until a reinstate at this token has made it stream.
func autoReinstateDue(g *witnessv1.Group) []string {
	pg := g.GetSpec().GetActions().GetPostgres()
	st := g.GetStatus()
	if pg.GetReinstate() != config.ReinstateAuto || st.GetPending() != nil || len(st.GetHistory()) == 0 {
		return nil
	}
	last := st.GetHistory()[len(st.GetHistory())-1]
	if last.GetToken() != st.GetToken() || last.GetPhase() != "" || last.GetFromSite() == "" || last.GetFromSite() == st.GetActiveSite() {
		return nil
	}
	done := "promote"
	if g.GetSpec().GetActions().GetDns() != nil {
		done = "settle"
	}
	if !stepDone(st, done) || !planSettled(st) {
		return nil
	}
	sites := []string{last.GetFromSite()}
	for _, s := range g.GetSpec().GetSites() {
		if s.GetName() != last.GetFromSite() {
			sites = append(sites, s.GetName())
		}
	}
	var due []string
	for _, site := range sites {
		if pg.GetDataDir()[site] == "" || reinstatable(g, site) != nil || reinstatedAt(st, site) {
			continue
		}
		due = append(due, site)
	}
	return due
}

// planSettled: each of the move's fence, promote, DNS and settle steps at
// the current token last ended well. A fence still being retried (the old site just came back)
// goes first: it would stop a database being reinstated.
func planSettled(st *witnessv1.GroupStatus) bool {
	last := map[string]bool{}
	for _, s := range st.GetSteps() {
		switch s.GetStep() {
		case "fence", "promote", "dns", "settle":
		default:
			continue
		}
		if s.GetToken() == st.GetToken() {
			last[s.GetStep()] = s.GetOk()
		}
	}
	for _, ok := range last {
		if !ok {
			return false
		}
	}
	return true
}

func stepDone(st *witnessv1.GroupStatus, step string) bool {
	for _, s := range st.GetSteps() {
		if s.GetToken() == st.GetToken() && s.GetStep() == step && s.GetOk() {
			return true
		}
	}
	return false
}

// reinstatedAt says whether a reinstate at the current token made
// site's node stream from the active site (or found it streaming).
func reinstatedAt(st *witnessv1.GroupStatus, site string) bool {
	for _, s := range st.GetSteps() {
		if s.GetToken() != st.GetToken() || !s.GetOk() || !strings.HasPrefix(s.GetDetail(), site+":") {
			continue
		}
		switch s.GetStep() {
		case StepReinstatePrefix + "stream", StepReinstatePrefix + "repoint":
			return true
		case StepReinstatePrefix + "check":
			if strings.Contains(s.GetDetail(), "already a streaming standby") {
				return true
			}
		}
	}
	return false
}

// siteAlive says whether gossip sees a witness of site alive.
func (n *Node) siteAlive(site string) bool {
	members, err := n.Members()
	if err != nil {
		return false
	}
	for _, m := range members {
		if m.Site == site && m.Alive {
			return true
		}
	}
	return false
}

// rewindCheckTimeout bounds the check of one database at apply.
const rewindCheckTimeout = 3 * time.Second

// rewindWarnings checks, for each group with a data_dir (which reinstate
// needs), each site's database as a future pg_rewind target and source:
// wal_log_hints or checksums, full_page_writes, the role's grants. Said
// at apply, while there is time to fix them, not during an outage.
func rewindWarnings(ctx context.Context, specs []*witnessv1.GroupSpec) []string {
	var out []string
	for _, spec := range specs {
		pg := spec.GetActions().GetPostgres()
		if len(pg.GetDataDir()) == 0 {
			continue
		}
		for _, site := range spec.GetSites() {
			name := site.GetName()
			field, dsn := "dsn", pg.GetDsn()[name]
			if r := pg.GetReplicationDsn()[name]; r != "" {
				field, dsn = "replication_dsn", r
			}
			if dsn == "" {
				continue
			}
			where := fmt.Sprintf("group %s: actions.postgres.%s.%s", spec.GetName(), field, name)
			cctx, cancel := context.WithTimeout(ctx, rewindCheckTimeout)
			problems, err := postgres.CheckRewind(cctx, dsn)
			cancel()
			if err != nil {
				out = append(out, fmt.Sprintf("%s: could not check it for a later reinstate: %v", where, err))
				continue
			}
			for _, p := range problems {
				out = append(out, where+": "+p)
			}
		}
	}
	return out
}
