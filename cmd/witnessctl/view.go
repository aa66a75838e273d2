package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// The JSON that scripts read: field names are a contract.

type statusJSON struct {
	ClusterID string         `json:"cluster_id"`
	Node      string         `json:"node"`
	Leader    string         `json:"leader"`
	LastToken uint64         `json:"last_token"`
	Members   []memberJSON   `json:"members"`
	Groups    []groupSummary `json:"groups"`
}

type memberJSON struct {
	Name         string `json:"name"`
	Site         string `json:"site"`
	Address      string `json:"address"`
	Voter        bool   `json:"voter"`
	Alive        bool   `json:"alive"`
	Leader       bool   `json:"leader"`
	AdminAddress string `json:"admin_address,omitempty"`
}

type groupSummary struct {
	Name       string   `json:"name"`
	ActiveSite string   `json:"active_site"`
	Token      uint64   `json:"token"`
	Mode       string   `json:"mode"`
	Armed      bool     `json:"armed"`
	Sites      []string `json:"sites"`
}

type transitionJSON struct {
	Token  uint64    `json:"token"`
	From   string    `json:"from_site"`
	To     string    `json:"to_site"`
	Kind   string    `json:"kind"`
	Phase  string    `json:"phase,omitempty"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	By     string    `json:"by"`
	// OldSiteDown: by attested the old site down (an operator failover).
	OldSiteDown bool `json:"old_site_down,omitempty"`
	// Forced: by overrode the data-loss guard, which said Guard.
	Forced bool   `json:"forced,omitempty"`
	Guard  string `json:"guard,omitempty"`
}

type stepJSON struct {
	Token      uint64    `json:"token"`
	Step       string    `json:"step"`
	OK         bool      `json:"ok"`
	Error      string    `json:"error,omitempty"`
	Started    time.Time `json:"started"`
	DurationMS int64     `json:"duration_ms"`
	Attempt    int32     `json:"attempt"`
	Node       string    `json:"node"`
	Rule       string    `json:"rule,omitempty"`
	FencedBy   string    `json:"fenced_by,omitempty"`
	Detail     string    `json:"detail,omitempty"`
}

type groupDetail struct {
	groupSummary
	DisarmedAtToken uint64 `json:"disarmed_at_token,omitempty"`
	// ActiveNode is, for a group with several nodes at a site, the node
	// that acts for the active site.
	ActiveNode    string           `json:"active_node,omitempty"`
	Proposal      *proposalJSON    `json:"proposal,omitempty"`
	Pending       *pendingJSON     `json:"pending_switchover,omitempty"`
	Scheduled     *scheduledJSON   `json:"scheduled_switchover,omitempty"`
	LastScheduled *scheduledJSON   `json:"last_scheduled_switchover,omitempty"`
	History       []transitionJSON `json:"history"`
	Steps         []stepJSON       `json:"steps"`
	Explanation   *explanationJSON `json:"explanation,omitempty"`
}

type pendingJSON struct {
	To     string    `json:"to_site"`
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	Since  time.Time `json:"since"`
}

type scheduledJSON struct {
	To      string     `json:"to_site"`
	At      time.Time  `json:"at"`
	Reason  string     `json:"reason"`
	By      string     `json:"by"`
	Asked   time.Time  `json:"asked"`
	Outcome string     `json:"outcome,omitempty"`
	Ended   *time.Time `json:"ended,omitempty"`
}

func toScheduled(s *witnessv1.ScheduledSwitchover) *scheduledJSON {
	if s == nil {
		return nil
	}
	out := &scheduledJSON{To: s.GetToSite(), At: time.Unix(0, s.GetAtUnixNano()).UTC(), Reason: s.GetReason(), By: s.GetBy(),
		Asked: time.Unix(0, s.GetAskedUnixNano()).UTC(), Outcome: s.GetOutcome()}
	if s.GetEndedUnixNano() != 0 {
		ended := time.Unix(0, s.GetEndedUnixNano()).UTC()
		out.Ended = &ended
	}
	return out
}

type proposalJSON struct {
	Action        string `json:"action"`
	From          string `json:"from_site"`
	To            string `json:"to_site"`
	ExpectedToken uint64 `json:"expected_token"`
	Reason        string `json:"reason"`
}

type explanationJSON struct {
	Action      string         `json:"action"`
	Reason      string         `json:"reason"`
	EvaluatedBy string         `json:"evaluated_by"`
	Sites       []siteViewJSON `json:"sites"`
	// Targets counts the sites that could take the group over now;
	// NoTarget says why none could.
	Targets  int32  `json:"eligible_targets"`
	NoTarget string `json:"no_target,omitempty"`
}

type siteViewJSON struct {
	Site      string             `json:"site"`
	Active    bool               `json:"active"`
	Observers []observerViewJSON `json:"observers"`
	// The database's role, timeline and WAL positions, when observed.
	Role       string `json:"role,omitempty"`
	Timeline   uint32 `json:"timeline,omitempty"`
	WAL        string `json:"wal_lsn,omitempty"`
	Replayed   string `json:"replayed_lsn,omitempty"`
	PrimaryWAL string `json:"primary_last_seen_lsn,omitempty"`
	Streaming  bool   `json:"streaming,omitempty"`
	// Nodes, for a site with several PostgreSQL nodes: each one.
	Nodes []nodeViewJSON `json:"nodes,omitempty"`
}

type nodeViewJSON struct {
	Name      string `json:"name"`
	Role      string `json:"role,omitempty"`
	Timeline  uint32 `json:"timeline,omitempty"`
	WAL       string `json:"wal_lsn,omitempty"`
	Replayed  string `json:"replayed_lsn,omitempty"`
	Streaming bool   `json:"streaming,omitempty"`
	Failing   bool   `json:"failing,omitempty"`
}

// lsn writes a WAL position as PostgreSQL does; empty when unknown.
func lsn(v uint64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%X/%X", v>>32, uint32(v))
}

type observerViewJSON struct {
	Site      string    `json:"site"`
	State     string    `json:"state"`
	Since     time.Time `json:"since,omitzero"`
	Witnesses int32     `json:"witnesses"`
}

func toExplanation(e *witnessv1.Explanation) *explanationJSON {
	if e == nil {
		return nil
	}
	out := &explanationJSON{Action: e.GetAction(), Reason: e.GetReason(), EvaluatedBy: e.GetEvaluatedBy(), Sites: []siteViewJSON{},
		Targets: e.GetTargets(), NoTarget: e.GetNoTarget()}
	for _, s := range e.GetSites() {
		sv := siteViewJSON{Site: s.GetSite(), Active: s.GetActive(), Observers: []observerViewJSON{}}
		if s.GetDatabase() {
			sv.Role, sv.Timeline, sv.Streaming = s.GetRole(), s.GetTimeline(), s.GetStreaming()
			sv.WAL, sv.Replayed = lsn(s.GetWalLsn()), lsn(s.GetReplayedLsn())
		}
		// Where the active site's primary was last seen outlives it.
		sv.PrimaryWAL = lsn(s.GetPrimaryLsn())
		for _, n := range s.GetNodes() {
			sv.Nodes = append(sv.Nodes, nodeViewJSON{Name: n.GetName(), Role: n.GetRole(), Timeline: n.GetTimeline(), WAL: lsn(n.GetWalLsn()),
				Replayed: lsn(n.GetReplayedLsn()), Streaming: n.GetStreaming(), Failing: n.GetFailing()})
		}
		for _, o := range s.GetObservers() {
			ov := observerViewJSON{Site: o.GetSite(), State: o.GetState(), Witnesses: o.GetWitnesses()}
			if o.GetSinceUnixNano() != 0 {
				ov.Since = time.Unix(0, o.GetSinceUnixNano()).UTC()
			}
			sv.Observers = append(sv.Observers, ov)
		}
		out.Sites = append(out.Sites, sv)
	}
	return out
}

func toMember(m *witnessv1.Member) memberJSON {
	return memberJSON{Name: m.GetName(), Site: m.GetSite(), Address: m.GetAddress(), Voter: m.GetVoter(), Alive: m.GetAlive(), Leader: m.GetLeader(), AdminAddress: m.GetAdminAddress()}
}

func modeName(m witnessv1.Mode) string {
	return strings.ToLower(strings.TrimPrefix(m.String(), "MODE_"))
}

func parseMode(s string) (witnessv1.Mode, bool) {
	v, ok := witnessv1.Mode_value["MODE_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, false
	}
	return witnessv1.Mode(v), true
}

func toSummary(g *witnessv1.Group) groupSummary {
	s := g.GetStatus()
	out := groupSummary{Name: g.GetSpec().GetName(), ActiveSite: s.GetActiveSite(), Token: s.GetToken(), Mode: modeName(s.GetMode()), Armed: s.GetArmed(), Sites: []string{}}
	for _, site := range g.GetSpec().GetSites() {
		out.Sites = append(out.Sites, site.GetName())
	}
	return out
}

func toDetail(g *witnessv1.Group) groupDetail {
	s := g.GetStatus()
	d := groupDetail{groupSummary: toSummary(g), DisarmedAtToken: s.GetDisarmedAtToken(), History: []transitionJSON{}, Steps: []stepJSON{},
		ActiveNode: activeNode(g)}
	if p := s.GetProposal(); p != nil {
		d.Proposal = &proposalJSON{Action: p.GetAction(), From: p.GetFromSite(), To: p.GetToSite(), ExpectedToken: p.GetExpectedToken(), Reason: p.GetReason()}
	}
	if p := s.GetPending(); p != nil {
		d.Pending = &pendingJSON{To: p.GetToSite(), Reason: p.GetReason(), By: p.GetBy(), Since: time.Unix(0, p.GetAtUnixNano()).UTC()}
	}
	d.Scheduled, d.LastScheduled = toScheduled(s.GetScheduled()), toScheduled(s.GetLastScheduled())
	for _, h := range s.GetHistory() {
		d.History = append(d.History, toTransition(h))
	}
	for _, st := range s.GetSteps() {
		d.Steps = append(d.Steps, toStep(st))
	}
	return d
}

func toTransition(h *witnessv1.Transition) transitionJSON {
	return transitionJSON{Token: h.GetToken(), From: h.GetFromSite(), To: h.GetToSite(), Phase: h.GetPhase(),
		Kind: strings.ToLower(strings.TrimPrefix(h.GetKind().String(), "TRANSITION_KIND_")), Reason: h.GetReason(), At: time.Unix(0, h.GetAtUnixNano()).UTC(), By: h.GetBy(), OldSiteDown: h.GetOldSiteDown(),
		Forced: h.GetForced(), Guard: h.GetGuard()}
}

func toStep(st *witnessv1.StepResult) stepJSON {
	return stepJSON{Token: st.GetToken(), Step: st.GetStep(), OK: st.GetOk(), Error: st.GetError(),
		Started: time.Unix(0, st.GetStartedUnixNano()).UTC(), DurationMS: st.GetDurationMs(), Attempt: st.GetAttempt(), Node: st.GetNode(), Rule: st.GetRule(), FencedBy: st.GetFencedBy(), Detail: st.GetDetail()}
}

// stepResult is a step's outcome in words: ok (with the rule that allowed
// it), failed: why, or waits: for what (a step not run).
func stepResult(s stepJSON) string {
	switch {
	case !s.OK && s.Attempt == 0:
		return "waits: " + s.Error
	case !s.OK:
		return "failed: " + s.Error
	}
	res := "ok"
	if s.Rule != "" {
		res += " (" + s.Rule + ")"
	}
	if s.FencedBy != "" {
		res += " (by " + s.FencedBy + ")"
	}
	return res
}

// activeNode is the node of a group with several at a site that acts
// for its active site: the one its token promoted, else the site's node
// with a data_dir, else its first; "" for one node per site.
func activeNode(g *witnessv1.Group) string {
	if n := g.GetStatus().GetActiveNode(); n != "" {
		return n
	}
	var first *witnessv1.PostgresNode
	for _, n := range g.GetSpec().GetActions().GetPostgres().GetNodes() {
		if n.GetSite() == g.GetStatus().GetActiveSite() && (first == nil || (first.GetDataDir() == "" && n.GetDataDir() != "")) {
			first = n
		}
	}
	return first.GetName()
}

// nodeRow is one node of a site with several in the databases table:
// SITE/NODE, role, timeline, positions, receiver.
func nodeRow(site string, n nodeViewJSON, active bool) []string {
	tli := "-"
	if n.Timeline != 0 {
		tli = strconv.FormatUint(uint64(n.Timeline), 10)
	}
	role, state := n.Role, "-"
	switch {
	case role == "":
		role = "unseen"
	case role != "primary" && n.Streaming:
		state = "streaming"
	case role != "primary":
		state = "not streaming"
	}
	if n.Failing {
		state = "failing"
	}
	label := site + "/" + n.Name
	if active {
		label += " (active)"
	}
	return []string{label, role, tli, dash(n.WAL), dash(n.Replayed), "-", state}
}
