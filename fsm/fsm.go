package fsm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Errors returned in Result.Err when a command is refused. A refused command
// changes nothing.
var (
	// ErrStaleToken: the command expected a token that is no longer the
	// group's current token (someone else changed it first).
	ErrStaleToken = errors.New("stale token")
	// ErrNoGroup: the command names a group that does not exist.
	ErrNoGroup = errors.New("no such group")
	// ErrUnknownSite: the target site is not one of the group's sites.
	ErrUnknownSite = errors.New("not a site of the group")
	// ErrSameSite: the group is already active at the target site.
	ErrSameSite = errors.New("already active at that site")
	// ErrActiveSiteRemoved: an update removes the site that is active now.
	ErrActiveSiteRemoved = errors.New("update removes the active site")
	// ErrDisarmed: an automatic failover of a group that is disarmed.
	ErrDisarmed = errors.New("group is disarmed")
	// ErrObserveOnly: an automatic failover of a group in observe mode.
	ErrObserveOnly = errors.New("group is in observe mode")
	// ErrNoPending: a switchover abort or completion for a group with no
	// switchover pending, or a completion to another site than the pending
	// one.
	ErrNoPending = errors.New("no such switchover pending")
	// ErrPending: a switchover is already pending for the group.
	ErrPending = errors.New("a switchover is already pending")
	// ErrScheduled: a switchover is already scheduled for the group.
	ErrScheduled = errors.New("a switchover is already scheduled")
	// ErrNotScheduled: no switchover is scheduled for the group.
	ErrNotScheduled = errors.New("no switchover is scheduled")
	// ErrInvalid: a command that is malformed (empty name, no sites, a
	// group named twice); the API refuses these before they reach the log.
	ErrInvalid = errors.New("invalid command")

	// ErrUnknownType: an entry whose type byte is not known.
	ErrUnknownType = errors.New("unknown entry type")
	// ErrEmptyEntry: an entry with no bytes.
	ErrEmptyEntry = errors.New("empty entry")
	// ErrCorruptSnapshot: a snapshot whose framing or checksum is wrong.
	ErrCorruptSnapshot = errors.New("corrupt snapshot")
)

// Bounds of what a group keeps.
const (
	HistoryLimit = 32 // transitions kept per group
	StepLimit    = 64 // step results kept per group
)

// Result is what Apply returns for one entry.
type Result struct {
	// Tokens maps each group a command created or moved to its new token.
	Tokens map[string]uint64
	// Err is nil when the command was applied; otherwise it wraps one of
	// the errors above and nothing changed.
	Err error
	// Refused maps each group whose move an automatic failover refused
	// alone to why, or whose step results a RecordStepsCommand refused;
	// the command's other groups were changed.
	Refused map[string]error
}

// FSM holds the replicated state. It is safe for concurrent use: Apply and
// Restore are called by one goroutine (Raft's), reads by any.
type FSM struct {
	mu        sync.RWMutex
	lastToken uint64
	groups    map[string]*witnessv1.Group // never changed once held: see view.go
	// sorted is every group sorted by name, or nil after a change; it is
	// rebuilt by the first read, under the read lock, so sortedMu guards it.
	sorted []*witnessv1.Group
	// sortedLent is set once sorted has been handed to a reader: the
	// next edit copies it rather than changing it in place.
	sortedLent bool
	sortedMu   sync.Mutex
	// specs counts the entries and restores that changed a group's spec
	// or the set of groups (SpecGeneration); it is this replica's, not
	// replicated state.
	specs uint64
}

// New returns an empty state machine.
func New() *FSM {
	return &FSM{groups: make(map[string]*witnessv1.Group)}
}

// Apply decodes and applies one committed entry. It panics when the entry
// cannot be decoded: a replica that cannot read the log must stop rather
// than diverge from the others.
func (f *FSM) Apply(entry []byte) Result {
	t, cmd, err := Decode(entry)
	if err != nil {
		panic(fmt.Sprintf("fsm: committed entry cannot be applied: %v", err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch c := cmd.(type) {
	case *witnessv1.PutGroupsCommand:
		return f.putGroups(c)
	case *witnessv1.DeleteGroupCommand:
		return f.deleteGroup(c)
	case *witnessv1.TransitionCommand:
		return f.transition(c)
	case *witnessv1.SetModeCommand:
		return f.setMode(c)
	case *witnessv1.SetArmedCommand:
		return f.setArmed(c)
	case *witnessv1.RecordStepCommand:
		return f.recordStep(c)
	case *witnessv1.RecordStepsCommand:
		return f.recordSteps(c)
	case *witnessv1.RecordProposalCommand:
		return f.recordProposal(c)
	case *witnessv1.ScheduleSwitchoverCommand:
		return f.schedule(c)
	}
	panic(fmt.Sprintf("fsm: entry %s has no handler", t))
}

func refuse(format string, args ...any) Result {
	return Result{Err: fmt.Errorf(format, args...)}
}

func siteIndex(spec *witnessv1.GroupSpec, site string) int {
	return slices.IndexFunc(spec.GetSites(), func(s *witnessv1.SiteSpec) bool { return s.GetName() == site })
}

func checkSpec(spec *witnessv1.GroupSpec) error {
	if spec.GetName() == "" {
		return fmt.Errorf("group without a name: %w", ErrInvalid)
	}
	if len(spec.GetSites()) == 0 {
		return fmt.Errorf("group %q has no sites: %w", spec.GetName(), ErrInvalid)
	}
	seen := make(map[string]bool, len(spec.GetSites()))
	for _, s := range spec.GetSites() {
		if s.GetName() == "" || seen[s.GetName()] {
			return fmt.Errorf("group %q: site %q empty or named twice: %w", spec.GetName(), s.GetName(), ErrInvalid)
		}
		seen[s.GetName()] = true
	}
	return nil
}

func specMode(spec *witnessv1.GroupSpec) witnessv1.Mode {
	if m := spec.GetPolicy().GetMode(); m != witnessv1.Mode_MODE_UNSPECIFIED {
		return m
	}
	return witnessv1.Mode_MODE_AUTO
}

func (f *FSM) putGroups(c *witnessv1.PutGroupsCommand) Result {
	names := make(map[string]bool, len(c.GetSpecs()))
	for _, spec := range c.GetSpecs() {
		if err := checkSpec(spec); err != nil {
			return Result{Err: err}
		}
		if names[spec.GetName()] {
			return refuse("group %q named twice: %w", spec.GetName(), ErrInvalid)
		}
		names[spec.GetName()] = true
		if g, ok := f.groups[spec.GetName()]; ok && siteIndex(spec, g.GetStatus().GetActiveSite()) < 0 {
			return refuse("group %q: active site %q: %w", spec.GetName(), g.GetStatus().GetActiveSite(), ErrActiveSiteRemoved)
		}
		if st, ok := c.GetStarts()[spec.GetName()]; ok && st.GetSite() != "" && siteIndex(spec, st.GetSite()) < 0 {
			return refuse("group %q starts at %q: %w", spec.GetName(), st.GetSite(), ErrUnknownSite)
		}
	}
	res := Result{Tokens: make(map[string]uint64)}
	for _, spec := range c.GetSpecs() {
		spec = proto.Clone(spec).(*witnessv1.GroupSpec)
		g, ok := f.groups[spec.GetName()]
		if ok && proto.Equal(g.GetSpec(), spec) {
			continue
		}
		f.specs++
		if !ok {
			f.lastToken++
			site, mode, phase, reason := spec.GetSites()[0].GetName(), specMode(spec), "", "group created"
			if st, ok := c.GetStarts()[spec.GetName()]; ok {
				reason = "group created: " + st.GetReason()
				if st.GetSite() != "" {
					site = st.GetSite()
				} else {
					mode, phase = witnessv1.Mode_MODE_OBSERVE, PhaseUnresolved
				}
			}
			g = &witnessv1.Group{
				Spec:        spec,
				SpecVersion: 1,
				Status: &witnessv1.GroupStatus{
					ActiveSite:      site,
					Token:           f.lastToken,
					Mode:            mode,
					Armed:           true,
					UpdatedUnixNano: c.GetAtUnixNano(),
					History: []*witnessv1.Transition{{
						Token:      f.lastToken,
						ToSite:     site,
						Kind:       witnessv1.TransitionKind_TRANSITION_KIND_INITIAL,
						Reason:     reason,
						AtUnixNano: c.GetAtUnixNano(),
						By:         c.GetBy(),
						Phase:      phase,
					}},
				},
			}
			countTransition(g.Status, g.Status.History[0])
			f.put(g)
			res.Tokens[spec.GetName()] = f.lastToken
			continue
		}
		g, _ = f.edit(spec.GetName())
		if specMode(g.GetSpec()) != specMode(spec) {
			g.Status.Mode = specMode(spec)
		}
		g.Spec = spec
		g.SpecVersion++
		g.Status.UpdatedUnixNano = c.GetAtUnixNano()
	}
	return res
}

func (f *FSM) deleteGroup(c *witnessv1.DeleteGroupCommand) Result {
	if _, ok := f.groups[c.GetName()]; !ok {
		return refuse("delete %q: %w", c.GetName(), ErrNoGroup)
	}
	delete(f.groups, c.GetName())
	f.sorted, f.sortedLent = nil, false
	f.specs++
	return Result{}
}

// checkMove says why move m of c is refused, or nil; seen holds the
// groups of c's moves checked before.
func (f *FSM) checkMove(c *witnessv1.TransitionCommand, m *witnessv1.Move, seen map[string]bool) error {
	failover := c.GetKind() == witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER
	if seen[m.GetGroup()] {
		return fmt.Errorf("transition names group %q twice: %w", m.GetGroup(), ErrInvalid)
	}
	seen[m.GetGroup()] = true
	g, ok := f.groups[m.GetGroup()]
	if !ok {
		return fmt.Errorf("transition %q: %w", m.GetGroup(), ErrNoGroup)
	}
	st := g.GetStatus()
	if m.GetExpectedToken() != st.GetToken() {
		return fmt.Errorf("transition %q: expected token %d, current token is %d: %w", m.GetGroup(), m.GetExpectedToken(), st.GetToken(), ErrStaleToken)
	}
	if siteIndex(g.GetSpec(), m.GetToSite()) < 0 {
		return fmt.Errorf("transition %q to %q: %w", m.GetGroup(), m.GetToSite(), ErrUnknownSite)
	}
	if err := checkNode(g.GetSpec(), m); err != nil {
		return err
	}
	pending := st.GetPending()
	switch {
	case c.GetAbort():
		if pending == nil {
			return fmt.Errorf("abort switchover of %q: %w", m.GetGroup(), ErrNoPending)
		}
		if m.GetToSite() != st.GetActiveSite() {
			return fmt.Errorf("abort switchover of %q to %q: an abort stays at %q: %w", m.GetGroup(), m.GetToSite(), st.GetActiveSite(), ErrInvalid)
		}
		return nil
	case m.GetToSite() == st.GetActiveSite():
		return fmt.Errorf("transition %q to %q: %w", m.GetGroup(), m.GetToSite(), ErrSameSite)
	case c.GetPrepare() && pending != nil:
		return fmt.Errorf("switchover of %q to %q: %w (to %q)", m.GetGroup(), m.GetToSite(), ErrPending, pending.GetToSite())
	case !c.GetPrepare() && !failover && pending != nil && pending.GetToSite() != m.GetToSite():
		return fmt.Errorf("move %q to %q: %w (pending to %q)", m.GetGroup(), m.GetToSite(), ErrNoPending, pending.GetToSite())
	}
	if c.GetOperator() && pending != nil {
		return fmt.Errorf("failover of %q: %w (to %q): let it end first", m.GetGroup(), ErrPending, pending.GetToSite())
	}
	if failover && !c.GetOperator() {
		if !st.GetArmed() {
			return fmt.Errorf("failover %q: %w since token %d", m.GetGroup(), ErrDisarmed, st.GetDisarmedAtToken())
		}
		if st.GetMode() == witnessv1.Mode_MODE_OBSERVE {
			return fmt.Errorf("failover %q: %w", m.GetGroup(), ErrObserveOnly)
		}
	}
	return nil
}

// Phases recorded in Transition.phase: of a switchover, and of a group
// created without a known primary.
const (
	PhasePrepare = "prepare"
	PhaseAbort   = "abort"
	// PhaseUnresolved: the group was created with no site known to hold
	// its primary; it starts in observe mode and nothing acts on it until
	// an operator moves it.
	PhaseUnresolved = "unresolved"
)

// transition moves groups, or runs a phase of a two-phase switchover:
// prepare (a new token, the group stays while its site is fenced, the move
// pending), abort (a new token at the same site, the pending move given
// up). A move of a group with a switchover pending must go to the pending
// site, unless it is a failover, which replaces the switchover.
func (f *FSM) transition(c *witnessv1.TransitionCommand) Result {
	if len(c.GetMoves()) == 0 {
		return refuse("transition without moves: %w", ErrInvalid)
	}
	if c.GetPrepare() && c.GetAbort() {
		return refuse("transition both prepares and aborts: %w", ErrInvalid)
	}
	failover := c.GetKind() == witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER
	if failover && (c.GetPrepare() || c.GetAbort()) {
		return refuse("a failover has no phases: %w", ErrInvalid)
	}
	if (c.GetOperator() || c.GetOldSiteDown()) && !failover {
		return refuse("only a failover is marked as an operator's: %w", ErrInvalid)
	}
	if c.GetOldSiteDown() && (!c.GetOperator() || c.GetReason() == "") {
		return refuse("old site down is an operator's attestation, with a reason: %w", ErrInvalid)
	}
	if c.GetForced() && (!c.GetOperator() || c.GetReason() == "") {
		return refuse("overriding the data-loss guard is an operator's, with a reason: %w", ErrInvalid)
	}
	// An automatic failover of a site carries many groups: each move is
	// checked on its own, and a stale or ineligible one is refused alone.
	// Every other command moves all of its groups or none.
	alone := failover && !c.GetOperator()
	seen := make(map[string]bool, len(c.GetMoves()))
	moves := c.GetMoves()
	var refused map[string]error
	for _, m := range c.GetMoves() {
		err := f.checkMove(c, m, seen)
		if err == nil {
			continue
		}
		if !alone {
			return Result{Err: err}
		}
		if refused == nil {
			refused = map[string]error{}
		}
		if _, dup := refused[m.GetGroup()]; !dup {
			refused[m.GetGroup()] = err
		}
	}
	if refused != nil {
		moves = slices.DeleteFunc(slices.Clone(c.GetMoves()), func(m *witnessv1.Move) bool { _, no := refused[m.GetGroup()]; return no })
	}
	if len(moves) == 0 {
		var errs []error
		for _, m := range c.GetMoves() {
			if err, ok := refused[m.GetGroup()]; ok {
				errs = append(errs, err)
				delete(refused, m.GetGroup())
			}
		}
		return Result{Err: errors.Join(errs...)}
	}
	res := Result{Tokens: make(map[string]uint64, len(moves)), Refused: refused}
	for _, m := range moves {
		f.lastToken++
		g, _ := f.edit(m.GetGroup())
		st := g.Status
		t := &witnessv1.Transition{
			Token:       f.lastToken,
			FromSite:    st.GetActiveSite(),
			ToSite:      m.GetToSite(),
			Kind:        c.GetKind(),
			Reason:      c.GetReason(),
			AtUnixNano:  c.GetAtUnixNano(),
			By:          c.GetBy(),
			OldSiteDown: c.GetOldSiteDown(),
			Forced:      c.GetForced(),
			Guard:       c.GetGuard(),
		}
		switch {
		case c.GetPrepare():
			t.ToSite, t.Phase = st.GetActiveSite(), PhasePrepare
			st.Pending = &witnessv1.PendingSwitchover{ToSite: m.GetToSite(), Reason: c.GetReason(), By: c.GetBy(), AtUnixNano: c.GetAtUnixNano(), ToNode: m.GetToNode()}
			t.FromNode, t.ToNode = st.GetActiveNode(), st.GetActiveNode()
		case c.GetAbort():
			t.Phase = PhaseAbort
			st.Pending = nil
			t.FromNode, t.ToNode = st.GetActiveNode(), st.GetActiveNode()
		default:
			t.FromNode, t.ToNode = st.GetActiveNode(), moveNode(st, m)
			st.ActiveSite, st.ActiveNode = m.GetToSite(), t.ToNode
			st.Pending = nil
		}
		if fp := m.GetFromPrimary(); fp.GetSite() == t.GetFromSite() {
			notePrimary(st, fp)
		}
		st.History = appendBounded(st.History, t, HistoryLimit)
		countTransition(st, t)
		st.Token = f.lastToken
		if sch := st.GetScheduled(); sch != nil {
			// Any transition ends a scheduled switchover: it starts it,
			// or it moved the group some other way and the operator's
			// plan no longer holds.
			outcome := fmt.Sprintf("started at token %d", f.lastToken)
			if !c.GetScheduled() {
				outcome = fmt.Sprintf("dropped: %s %s→%s at token %d", kindWord(c.GetKind(), t.GetPhase()), t.GetFromSite(), m.GetToSite(), f.lastToken)
			}
			endScheduled(st, outcome, c.GetAtUnixNano())
		}
		st.Proposal = nil
		st.UpdatedUnixNano = c.GetAtUnixNano()
		if failover && !c.GetOperator() {
			// An operator's failover, like a switchover, leaves arming
			// as it is: disarming guards against the policy flapping.
			st.Armed = false
			st.DisarmedAtToken = f.lastToken
		}
		res.Tokens[m.GetGroup()] = f.lastToken
	}
	return res
}

func (f *FSM) setMode(c *witnessv1.SetModeCommand) Result {
	if _, ok := f.groups[c.GetGroup()]; !ok {
		return refuse("set mode of %q: %w", c.GetGroup(), ErrNoGroup)
	}
	if _, known := witnessv1.Mode_name[int32(c.GetMode())]; !known || c.GetMode() == witnessv1.Mode_MODE_UNSPECIFIED {
		return refuse("set mode of %q to %d: %w", c.GetGroup(), c.GetMode(), ErrInvalid)
	}
	g, _ := f.edit(c.GetGroup())
	g.Status.Mode = c.GetMode()
	g.Status.UpdatedUnixNano = c.GetAtUnixNano()
	return Result{}
}

func (f *FSM) setArmed(c *witnessv1.SetArmedCommand) Result {
	g, ok := f.edit(c.GetGroup())
	if !ok {
		return refuse("arm %q: %w", c.GetGroup(), ErrNoGroup)
	}
	g.Status.Armed = c.GetArmed()
	if c.GetArmed() {
		g.Status.DisarmedAtToken = 0
	} else {
		g.Status.DisarmedAtToken = g.Status.GetToken()
	}
	g.Status.UpdatedUnixNano = c.GetAtUnixNano()
	return Result{}
}

func (f *FSM) recordStep(c *witnessv1.RecordStepCommand) Result {
	if err := f.checkStep(c); err != nil {
		return Result{Err: err}
	}
	f.appendStep(c.GetGroup(), c.GetResult())
	return Result{}
}

// appendStep records r in group's steps, and the position of the primary
// that a fence step stopped among the positions the group's primaries
// were confirmed at.
func (f *FSM) appendStep(group string, r *witnessv1.StepResult) {
	g, _ := f.edit(group)
	// r is the decoded entry's own, held from now on as it is.
	g.Status.Steps = appendBounded(g.Status.Steps, r, StepLimit)
	notePrimary(g.Status, fencedPosition(g.Status, r))
}

// checkStep says why the step result of c is refused, or nil.
func (f *FSM) checkStep(c *witnessv1.RecordStepCommand) error {
	g, ok := f.groups[c.GetGroup()]
	if !ok {
		return fmt.Errorf("record step of %q: %w", c.GetGroup(), ErrNoGroup)
	}
	r := c.GetResult()
	if r.GetStep() == "" {
		return fmt.Errorf("record step of %q without a step name: %w", c.GetGroup(), ErrInvalid)
	}
	if r.GetToken() != g.GetStatus().GetToken() {
		return fmt.Errorf("record step %q of %q at token %d, current token is %d: %w", r.GetStep(), c.GetGroup(), r.GetToken(), g.GetStatus().GetToken(), ErrStaleToken)
	}
	return nil
}

// recordSteps records the step results of many groups. Each group's
// results are checked as recordStep checks one, and applied or refused
// together; a group refused (a stale token, a group deleted since) is in
// Result.Refused and the other groups' results are applied. Err is set
// too when nothing was applied: a command without results, or every group
// refused (each of them still in Refused).
func (f *FSM) recordSteps(c *witnessv1.RecordStepsCommand) Result {
	if len(c.GetRecords()) == 0 {
		return refuse("record steps without results: %w", ErrInvalid)
	}
	var refused map[string]error
	for _, rec := range c.GetRecords() {
		if _, done := refused[rec.GetGroup()]; done {
			continue
		}
		if err := f.checkStep(rec); err != nil {
			if refused == nil {
				refused = map[string]error{}
			}
			refused[rec.GetGroup()] = err
		}
	}
	applied := 0
	for _, rec := range c.GetRecords() {
		if _, no := refused[rec.GetGroup()]; no {
			continue
		}
		f.appendStep(rec.GetGroup(), rec.GetResult())
		applied++
	}
	res := Result{Refused: refused}
	if applied == 0 {
		errs := make([]error, 0, len(refused))
		told := make(map[string]bool, len(refused))
		for _, rec := range c.GetRecords() {
			if g := rec.GetGroup(); !told[g] {
				told[g] = true
				errs = append(errs, refused[g])
			}
		}
		res.Err = errors.Join(errs...)
	}
	return res
}

// schedule records a scheduled switchover, or ends the one recorded.
func (f *FSM) schedule(c *witnessv1.ScheduleSwitchoverCommand) Result {
	g, ok := f.groups[c.GetGroup()]
	if !ok {
		return refuse("schedule a switchover of %q: %w", c.GetGroup(), ErrNoGroup)
	}
	sch := c.GetSwitchover()
	if sch == nil {
		if g.GetStatus().GetScheduled() == nil {
			return refuse("end the scheduled switchover of %q: %w", c.GetGroup(), ErrNotScheduled)
		}
		g, _ = f.edit(c.GetGroup())
		endScheduled(g.Status, c.GetOutcome(), c.GetAtUnixNano())
		g.Status.UpdatedUnixNano = c.GetAtUnixNano()
		return Result{}
	}
	switch {
	case g.GetStatus().GetScheduled() != nil:
		return refuse("schedule a switchover of %q to %q: %w (to %s)", c.GetGroup(), sch.GetToSite(), ErrScheduled, g.GetStatus().GetScheduled().GetToSite())
	case siteIndex(g.GetSpec(), sch.GetToSite()) < 0:
		return refuse("schedule a switchover of %q to %q: %w", c.GetGroup(), sch.GetToSite(), ErrUnknownSite)
	case sch.GetToSite() == g.GetStatus().GetActiveSite():
		return refuse("schedule a switchover of %q to %q: %w", c.GetGroup(), sch.GetToSite(), ErrSameSite)
	case sch.GetAtUnixNano() == 0:
		return refuse("schedule a switchover of %q without a time: %w", c.GetGroup(), ErrInvalid)
	}
	g, _ = f.edit(c.GetGroup())
	g.Status.Scheduled = proto.Clone(sch).(*witnessv1.ScheduledSwitchover)
	g.Status.Scheduled.Outcome, g.Status.Scheduled.EndedUnixNano = "", 0
	g.Status.UpdatedUnixNano = c.GetAtUnixNano()
	return Result{}
}

// endScheduled moves st's scheduled switchover to last_scheduled with its
// outcome.
func endScheduled(st *witnessv1.GroupStatus, outcome string, at int64) {
	ended := proto.Clone(st.GetScheduled()).(*witnessv1.ScheduledSwitchover)
	ended.Outcome, ended.EndedUnixNano = outcome, at
	st.LastScheduled, st.Scheduled = ended, nil
}

// kindWord names a transition for a dropped schedule's outcome.
func kindWord(k witnessv1.TransitionKind, phase string) string {
	w := strings.ToLower(strings.TrimPrefix(k.String(), "TRANSITION_KIND_"))
	if phase != "" {
		w += " " + phase
	}
	return w
}

func (f *FSM) recordProposal(c *witnessv1.RecordProposalCommand) Result {
	g, ok := f.groups[c.GetGroup()]
	if !ok {
		return refuse("record proposal of %q: %w", c.GetGroup(), ErrNoGroup)
	}
	p := c.GetProposal()
	if p.GetAction() != "" && p.GetExpectedToken() != g.GetStatus().GetToken() {
		return refuse("record proposal of %q at token %d, current token is %d: %w", c.GetGroup(), p.GetExpectedToken(), g.GetStatus().GetToken(), ErrStaleToken)
	}
	g, _ = f.edit(c.GetGroup())
	if p.GetAction() == "" {
		g.Status.Proposal = nil
		return Result{}
	}
	g.Status.Proposal = proto.Clone(p).(*witnessv1.Proposal)
	if fp := p.GetFromPrimary(); fp.GetSite() == g.Status.GetActiveSite() {
		notePrimary(g.Status, fp)
	}
	return Result{}
}

// countTransition adds t to the group's transition counts. A count is
// replaced, not changed in place: the held one may be shared with a
// status handed out before (see editable).
func countTransition(st *witnessv1.GroupStatus, t *witnessv1.Transition) {
	for i, c := range st.GetTransitionCounts() {
		if c.GetKind() == t.GetKind() && c.GetPhase() == t.GetPhase() && c.GetFromSite() == t.GetFromSite() && c.GetToSite() == t.GetToSite() {
			c = proto.Clone(c).(*witnessv1.TransitionCount)
			c.Count++
			st.TransitionCounts[i] = c
			return
		}
	}
	st.TransitionCounts = append(st.TransitionCounts, &witnessv1.TransitionCount{Kind: t.GetKind(), Phase: t.GetPhase(), FromSite: t.GetFromSite(), ToSite: t.GetToSite(), Count: 1})
}

// appendBounded appends v to s, dropping the oldest beyond limit. s is
// the edited status's own list (see shallow), so it is shifted in place.
func appendBounded[T any](s []T, v T, limit int) []T {
	if len(s) >= limit {
		n := copy(s, s[len(s)-limit+1:])
		clear(s[n:])
		return append(s[:n], v)
	}
	return append(s, v)
}

// SpecGeneration changes whenever a group is created, deleted or given a
// new spec, or a snapshot is restored, and at no other entry: what is
// built from the specs alone (the probes' targets) is rebuilt when it
// moves, not for every step result.
func (f *FSM) SpecGeneration() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.specs
}

// LastToken is the highest token issued so far.
func (f *FSM) LastToken() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.lastToken
}

// Group returns one group, read-only: the FSM never changes it (see
// view.go), and neither may the caller.
func (f *FSM) Group(name string) (*witnessv1.Group, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	g, ok := f.groups[name]
	return g, ok
}

// Groups returns every group sorted by name, read-only: neither the slice
// nor the groups may be changed.
func (f *FSM) Groups() []*witnessv1.Group {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.sortedView()
}

// sortedView is view with the cache kept; callers hold f.mu for reading.
func (f *FSM) sortedView() []*witnessv1.Group {
	f.sortedMu.Lock()
	defer f.sortedMu.Unlock()
	v := f.view()
	f.sorted, f.sortedLent = v, true
	return v
}

// State returns the whole state, immutable: what a snapshot persists.
func (f *FSM) State() *witnessv1.State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &witnessv1.State{LastToken: f.lastToken, Groups: f.sortedView()}
}

// Restore replaces the state with a decoded snapshot.
func (f *FSM) Restore(s *witnessv1.State) error {
	groups := make(map[string]*witnessv1.Group, len(s.GetGroups()))
	for _, g := range s.GetGroups() {
		if err := checkSpec(g.GetSpec()); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if g.GetStatus() == nil {
			return fmt.Errorf("restore: group %q without status: %w", g.GetSpec().GetName(), ErrCorruptSnapshot)
		}
		if g.GetStatus().GetToken() > s.GetLastToken() {
			return fmt.Errorf("restore: group %q token %d above last token %d: %w", g.GetSpec().GetName(), g.GetStatus().GetToken(), s.GetLastToken(), ErrCorruptSnapshot)
		}
		if _, dup := groups[g.GetSpec().GetName()]; dup {
			return fmt.Errorf("restore: group %q twice: %w", g.GetSpec().GetName(), ErrCorruptSnapshot)
		}
		groups[g.GetSpec().GetName()] = proto.Clone(g).(*witnessv1.Group)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.groups = groups
	f.sorted, f.sortedLent = nil, false
	f.specs++
	f.lastToken = s.GetLastToken()
	return nil
}
