package actions

import (
	"time"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// DefaultWorkers bounds the groups a Reconciler looks at once when its
// Workers is zero: enough for the DNS steps of a site failover to go out
// in large batches, few enough that a leader with 10,000 groups does not
// check its leadership 10,000 times at once.
const DefaultWorkers = 256

// mayNeedWork reports whether a look at g may do anything: a step of its
// plan has not succeeded at its token, a switchover's first phase is to
// end, or its DNS drift check is due. Settled groups are passed over
// without a worker, so an idle leader's tick costs a read of each group,
// not a goroutine each.
func (r *Reconciler) mayNeedWork(g *witnessv1.Group) bool {
	if preparing(g) {
		return true
	}
	for _, step := range Plan(g) {
		if ok, _ := succeeded(g, step); !ok {
			return true
		}
	}
	dns := g.GetSpec().GetActions().GetDns()
	if dns == nil {
		return false
	}
	every := time.Duration(dns.GetCheckEveryMs()) * time.Millisecond
	if every <= 0 {
		every = DefaultDNSCheckEvery
	}
	r.mu.Lock()
	last := r.checked[g.GetSpec().GetName()]
	r.mu.Unlock()
	return last.token != g.GetStatus().GetToken() || r.now().Sub(last.at) >= every
}
