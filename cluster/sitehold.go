package cluster

import (
	"time"

	"github.com/sitewitness/witness/policy"
	"github.com/sitewitness/witness/probes"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// siteHoldMax bounds how long a site's failover waits for the groups of
// that site still counting down: one (default) probe interval, the spread
// of the moments at which the witnesses' probes see one outage.
const siteHoldMax = probes.DefaultInterval

// siteHold makes one decision of a site failover. When the first groups
// active at a failing site become due, their failover waits while other
// groups active at that site are seen failing but not yet due, for at most
// siteHoldMax; those that become due meanwhile move in the same Raft
// entry. A site with no group still counting down is not held. It lives
// in the leader's decide loop: not safe for concurrent use.
type siteHold struct {
	since map[string]time.Time // failing site → when its first proposal was held
}

// release returns the proposals of out to commit now and, when some are
// held, when to look again.
func (h *siteHold) release(now time.Time, out policy.Output) (ready []*witnessv1.TransitionCommand, wake time.Time) {
	if h.since == nil {
		h.since = map[string]time.Time{}
	}
	waiting := map[string]bool{}
	for _, d := range out.Decisions {
		if d.State == policy.DecisionWaiting {
			waiting[d.From] = true
		}
	}
	proposed := map[string]bool{}
	for _, p := range out.Proposals {
		site := out.Decisions[p.GetMoves()[0].GetGroup()].From
		proposed[site] = true
		first, held := h.since[site]
		if !held {
			first = now
		}
		if waiting[site] && now.Before(first.Add(siteHoldMax)) {
			h.since[site] = first
			if w := first.Add(siteHoldMax); wake.IsZero() || w.Before(wake) {
				wake = w
			}
			continue
		}
		delete(h.since, site)
		ready = append(ready, p)
	}
	for site := range h.since {
		if !proposed[site] {
			delete(h.since, site)
		}
	}
	return ready, wake
}
