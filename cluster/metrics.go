package cluster

import (
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descLeader = prometheus.NewDesc("witness_raft_leader", "1 while this witness is the Raft leader.", nil, nil)
	descState  = prometheus.NewDesc("witness_raft_state", "Raft state of this witness (0 follower, 1 candidate, 2 leader, 3 shutdown).", nil, nil)
	descIndex  = prometheus.NewDesc("witness_raft_applied_index", "Last Raft index applied to the state machine.", nil, nil)
	descAlive  = prometheus.NewDesc("witness_gossip_members_alive", "Witnesses that gossip sees alive, this one included.", nil, nil)
	descToken  = prometheus.NewDesc("witness_group_token", "Current fencing token of a group.", []string{"group"}, nil)
	descActive = prometheus.NewDesc("witness_group_active_site", "1 for the site that is active for a group.", []string{"group", "site"}, nil)
	descArmed  = prometheus.NewDesc("witness_group_armed", "1 while the group may fail over automatically.", []string{"group"}, nil)
	descSteps  = prometheus.NewDesc("witness_group_step_results", "Step results recorded for the group's current token, by step and outcome.", []string{"group", "step", "result"}, nil)
)

// nodeMetrics are the counters of events that the state does not keep.
type nodeMetrics struct {
	dnsDrift               *prometheus.CounterVec
	localFenceHookFailures *prometheus.CounterVec
	leaseRenewals          prometheus.Counter
}

func newNodeMetrics() *nodeMetrics {
	return &nodeMetrics{
		dnsDrift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "witness_dns_drift_total",
			Help: "Managed DNS records the leader's periodic check found different from the group's current token (edited by hand), put back or not.",
		}, []string{"group"}),
		localFenceHookFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "witness_local_fence_hook_failures_total",
			Help: "local_fence hooks that failed on this witness when it fenced its own site after losing the Raft majority.",
		}, []string{"group", "hook"}),
		leaseRenewals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "witness_lease_renewals_total",
			Help: "Lease renewals of this witness that a quorum of voters granted.",
		}),
	}
}

// collector reads the node's state at scrape time, so metrics never lag
// and cost nothing between scrapes.
type collector struct{ n *Node }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLeader, descState, descIndex, descAlive, descToken, descActive, descArmed, descSteps} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	st := n.raft.State()
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, b2f(st == raft.Leader))
	ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, float64(st))
	ch <- prometheus.MustNewConstMetric(descIndex, prometheus.GaugeValue, float64(n.raft.AppliedIndex()))
	if n.gossip != nil {
		ch <- prometheus.MustNewConstMetric(descAlive, prometheus.GaugeValue, float64(len(n.gossip.alive())))
	}
	for _, g := range n.fsm.Groups() {
		name, s := g.GetSpec().GetName(), g.GetStatus()
		ch <- prometheus.MustNewConstMetric(descToken, prometheus.GaugeValue, float64(s.GetToken()), name)
		ch <- prometheus.MustNewConstMetric(descArmed, prometheus.GaugeValue, b2f(s.GetArmed()), name)
		type stepKey struct{ step, result string }
		steps := map[stepKey]int{}
		for _, r := range s.GetSteps() {
			if r.GetToken() == s.GetToken() {
				res := "ok"
				if !r.GetOk() {
					res = "failed"
				}
				steps[stepKey{r.GetStep(), res}]++
			}
		}
		for k, v := range steps {
			ch <- prometheus.MustNewConstMetric(descSteps, prometheus.GaugeValue, float64(v), name, k.step, k.result)
		}
		for _, site := range g.GetSpec().GetSites() {
			ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, b2f(site.GetName() == s.GetActiveSite()), name, site.GetName())
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
