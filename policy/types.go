package policy

import (
	"time"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// DefaultStaleAfter is used when Input.StaleAfter is not positive.
const DefaultStaleAfter = 5 * time.Second

// State is a verdict on one (group, site).
type State uint8

// The verdicts. Their order matches the probes package's.
const (
	Unknown State = iota
	Healthy
	Failing
)

func (s State) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Failing:
		return "failing"
	default:
		return "unknown"
	}
}

// Observation is one witness's latest verdict on one (group, site), as
// gossiped. Thresholds are already applied: Failing means fail_threshold
// consecutive failures.
type Observation struct {
	// Observer is the witness's node name. Only observers in Input.Live
	// count; their site is taken from there, ObserverSite is informative.
	Observer     string
	ObserverSite string
	Group, Site  string
	// Since is when this observer's verdict last changed; CheckedAt when it
	// was last refreshed.
	Since, CheckedAt time.Time
	State            State

	// IsDatabase marks a database (postgres) probe; the fields below are
	// meaningful only then. Lag values are negative when unknown.
	IsDatabase bool
	// Streaming: on a standby, its WAL receiver is connected to a primary.
	Streaming bool
	// Timeline is the timeline the server is on; 0 when unknown.
	Timeline   uint32
	Role       string // "primary" or "standby"
	LagBytes   int64
	LagSeconds float64
	// WAL is the position the server holds (pg_current_wal_lsn() on a
	// primary; the furthest received or replayed on a standby), Replayed
	// what a standby has replayed; 0 when unknown.
	WAL, Replayed uint64
	// Node names the PostgreSQL node observed, of a group with several at
	// a site; empty for the site's only one.
	Node string

	Detail string
}

// GroupSite names one site of one group.
type GroupSite struct{ Group, Site string }

// Position is the furthest WAL position a primary was seen at: the highest
// timeline, then the highest position on it.
type Position struct {
	Timeline uint32
	WAL      uint64
	// At is when a witness saw it (by the receiver's clock).
	At time.Time
}

// Ahead reports whether p is further than q: a higher timeline, or the
// same timeline and a higher position. A timeline of 0 is unknown: then
// the positions alone compare.
func (p Position) Ahead(q Position) bool {
	if q.WAL == 0 {
		return p.WAL != 0
	}
	if p.Timeline != q.Timeline && p.Timeline != 0 && q.Timeline != 0 {
		return p.Timeline > q.Timeline
	}
	return p.WAL > q.WAL
}

// Proto is p as recorded in Raft for site.
func (p Position) Proto(site string) *witnessv1.PrimaryPosition {
	if p.WAL == 0 {
		return nil
	}
	var at int64
	if !p.At.IsZero() {
		at = p.At.UnixNano()
	}
	return &witnessv1.PrimaryPosition{Site: site, Timeline: p.Timeline, WalLsn: p.WAL, AtUnixNano: at}
}

// Witness is one live witness node.
type Witness struct {
	Name, Site string
}

// Input is everything one evaluation looks at.
type Input struct {
	Now          time.Time
	Groups       []*witnessv1.Group
	Observations []Observation
	// Live is the set of witnesses memberlist sees alive, the leader
	// included.
	Live []Witness
	// ObserverSites are the configured observer sites: every site of the
	// cluster that runs witnesses, also those none of whose witnesses is
	// live now. Majorities are counted over these and the sites of the
	// live witnesses, so a site that stops reporting is a vote not given,
	// never a smaller electorate.
	ObserverSites []string
	// StaleAfter is how old an observation's CheckedAt may be before it
	// counts as Unknown; not positive means DefaultStaleAfter.
	StaleAfter time.Duration
	// Primaries holds the furthest position each (group, site) was seen at
	// as a primary, by any witness, fresh or not: the data-loss guard
	// measures a target against the active site's, so a primary that is
	// lost is still known where it stopped. The positions recorded in
	// each group's status (GroupStatus.primaries, in Raft) count too:
	// the furthest of both is taken.
	Primaries map[GroupSite]Position
	// DecisionsOnly says the caller reads no Decision.Sites: they are
	// left nil, and the per-site views are made in scratch space reused
	// from group to group instead of kept for every group (a third of
	// an evaluation's garbage at 10,000 groups). The decisions are the
	// same.
	DecisionsOnly bool
}

// Action is what the policy decided for one group.
type Action uint8

// The actions.
const (
	// ActionNone: nothing to do; Decision.Reason says why.
	ActionNone Action = iota
	// ActionFailover: a FAILOVER move is in Output.Proposals.
	ActionFailover
	// ActionWouldFailover: observe mode; the leader records what it would
	// have done.
	ActionWouldFailover
	// ActionPending: manual mode; an operator may approve the move as a
	// switchover.
	ActionPending
	// ActionRearm: the group may be re-armed (rearm auto, hold_down passed).
	ActionRearm
)

func (a Action) String() string {
	switch a {
	case ActionFailover:
		return "failover"
	case ActionWouldFailover:
		return "would-failover"
	case ActionPending:
		return "pending"
	case ActionRearm:
		return "rearm"
	default:
		return "none"
	}
}

// Decision is the outcome for one group.
type Decision struct {
	Action Action
	// From, To and ExpectedToken describe the move of a failover, would-be
	// failover or pending proposal; From is the active site otherwise.
	From, To      string
	ExpectedToken uint64
	// Reason says, for a person, why this action (or none).
	Reason string
	// Sites has one view per site of the group, in priority order.
	Sites []SiteView
	// State names the decision for graphs and alerts: why the group moves
	// or does not.
	State DecisionState
	// Due is when the verdict on the active site held for failover_after
	// (zero unless the active site is down).
	Due time.Time
	// Targets counts the sites that could take the group over if its
	// active site failed now: healthy, and passing the data-loss guard as
	// a planned switchover would (a standby that still streams counts).
	// NoTarget says why none could, when Targets is 0.
	Targets  int
	NoTarget string
	// ToNode names the node of To that the move promotes: the most
	// advanced eligible of several; "" for a site's only node.
	ToNode string
	// Primary is the furthest position the active site's primary is known
	// at (gossip, fresh observations and Raft); a move records it.
	Primary Position
}

// DecisionState is a decision as one of a fixed set of words, so that "why
// not?" can be graphed: Reason says the same for a person, with numbers.
type DecisionState string

// The decision states.
const (
	// DecisionHealthy: the active site is seen healthy, or failing by too
	// few sites to count.
	DecisionHealthy DecisionState = "healthy"
	// DecisionWaiting: a majority sees the active site failing, not yet
	// for failover_after.
	DecisionWaiting DecisionState = "waiting"
	// DecisionFailingOver: the site is down and a failover is proposed.
	DecisionFailingOver DecisionState = "failing_over"
	// DecisionWouldFailover: observe mode; a failover would be proposed.
	DecisionWouldFailover DecisionState = "would_failover"
	// DecisionAwaitingApproval: manual mode; an operator may approve.
	DecisionAwaitingApproval DecisionState = "awaiting_approval"
	// DecisionDisarmed: the group does not fail over until re-armed.
	DecisionDisarmed DecisionState = "disarmed"
	// DecisionRearm: the group is re-armed now (rearm auto).
	DecisionRearm DecisionState = "rearm"
	// DecisionBlockedByDataLossGuard: the site is down and a healthy target
	// exists, but its database does not pass the data-loss guard.
	DecisionBlockedByDataLossGuard DecisionState = "blocked_by_data_loss_guard"
	// DecisionNoTarget: the site is down and no other site is healthy.
	DecisionNoTarget DecisionState = "no_eligible_target"
	// DecisionSwitchoverPending: a switchover is in its first phase; no
	// automatic failover until it moves or is given up.
	DecisionSwitchoverPending DecisionState = "switchover_pending"
	// DecisionNoJudge: no live witness site other than the active one.
	DecisionNoJudge DecisionState = "no_judge"
	// DecisionInvalid: the active site is not a site of the group.
	DecisionInvalid DecisionState = "invalid"
)

// DecisionStates lists every decision state, in a fixed order.
var DecisionStates = []DecisionState{DecisionHealthy, DecisionWaiting, DecisionFailingOver, DecisionWouldFailover, DecisionAwaitingApproval,
	DecisionDisarmed, DecisionRearm, DecisionBlockedByDataLossGuard, DecisionNoTarget, DecisionSwitchoverPending, DecisionNoJudge, DecisionInvalid}

// SiteView is who sees one site of a group how.
type SiteView struct {
	Site   string
	Active bool
	// Observers has one entry per observer site (configured, or with a
	// live witness), sorted by name.
	Observers []ObserverView
	// Database is set when fresh database observations of this site exist;
	// the values are the worst among them (largest lag, any streaming).
	Database   bool
	Role       string
	LagBytes   int64
	LagSeconds float64
	Streaming  bool
	// WAL, Replayed and Timeline are the furthest reported by the fresh
	// database observations; PrimaryWAL is, for the active site, the
	// furthest position it was ever seen at as a primary (see
	// Input.Primaries), 0 when unknown.
	WAL, Replayed uint64
	Timeline      uint32
	PrimaryWAL    uint64
	// Nodes has, for a site with several PostgreSQL nodes, each node with
	// fresh observations.
	Nodes []NodeView
}

// ObserverView is one observer site's verdict on one site of a group.
type ObserverView struct {
	Site  string
	State State
	// Since is when the verdict began (zero when Unknown).
	Since time.Time
	// Witnesses counts the live witnesses of the site with a fresh
	// observation; 0 for a site none of whose witnesses reports.
	Witnesses int
	// Own marks the site judging itself: shown, never counted for "down".
	Own bool
}

// Output is the result of one evaluation.
type Output struct {
	// Proposals are FAILOVER transitions, one per failed site, sorted by
	// that site's name; their moves are sorted by group. By is left empty
	// for the caller; AtUnixNano is Input.Now.
	Proposals []*witnessv1.TransitionCommand
	// Decisions has one entry per group, by name.
	Decisions map[string]Decision
	// Rearm lists, sorted, the groups that may be re-armed now.
	Rearm []string
	// Wake, when not zero, is the earliest moment at which a site now seen
	// failing by a majority will have been failing for its failover_after:
	// evaluating again then, rather than at the next tick, decides without
	// waiting out the tick.
	Wake time.Time
}
