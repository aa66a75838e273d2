package cluster

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/sitewitness/witness/policy"
	"github.com/sitewitness/witness/probes"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// idleCluster is what the leader holds with 10,000 groups active at east,
// each probed at east and west by three witnesses (60,000 observations),
// every one healthy and nothing changing.
func idleCluster(b *testing.B, groups int) (*observations, policy.Input) {
	now := time.Unix(100_000, 0)
	s := newObservations("tiebreak-1", "tiebreak", slog.New(slog.NewTextHandler(io.Discard, nil)))
	var gs []*witnessv1.Group
	probe := []*witnessv1.ProbeSpec{{Kind: "tcp", Address: "127.0.0.1:1"}}
	full := map[string][]wireObs{}
	for i := range groups {
		name := fmt.Sprintf("svc-%05d", i)
		gs = append(gs, &witnessv1.Group{
			Spec: &witnessv1.GroupSpec{Name: name, Sites: []*witnessv1.SiteSpec{{Name: "east", Probes: probe}, {Name: "west", Probes: probe}},
				Policy: &witnessv1.Policy{FailoverAfterMs: 5000}},
			Status: &witnessv1.GroupStatus{ActiveSite: "east", Token: 1, Armed: true},
		})
		for _, site := range []string{"east", "west"} {
			s.local(probes.Observation{Group: name, Site: site, Name: "0-tcp", State: probes.StateHealthy, Since: now.Add(-time.Hour), CheckedAt: now, OK: true})
			for _, other := range []string{"east-1", "west-1"} {
				full[other] = append(full[other], wireObs{Group: name, Site: site, Probe: "0-tcp", State: uint8(policy.Healthy), Since: now.Add(-time.Hour).UnixNano(), At: now.UnixNano()})
			}
		}
	}
	for node, obs := range full {
		site := node[:len(node)-2]
		s.apply(benchMsg(b, obsMsg{V: gossipVersion, Node: node, Site: site, Ver: 1, Full: true, Obs: obs}))
		s.apply(benchMsg(b, obsMsg{V: gossipVersion, Node: node, Site: site, Ver: 1, Beat: true, FreshAt: now.UnixNano()}))
	}
	in := policy.Input{Now: now.Add(time.Second), Groups: gs, ObserverSites: []string{"east", "tiebreak", "west"},
		Live: []policy.Witness{{Name: "east-1", Site: "east"}, {Name: "west-1", Site: "west"}, {Name: "tiebreak-1", Site: "tiebreak"}}}
	return s, in
}

func benchMsg(b *testing.B, m obsMsg) []byte {
	b.Helper()
	return encodeObs(m)
}

// BenchmarkIdleEvaluation is one evaluation of the leader at 10,000
// groups when nothing changes, as it runs every 250 ms: the policy's
// input read where the observations are held, then the policy.
func BenchmarkIdleEvaluation(b *testing.B) {
	s, in := idleCluster(b, 10_000)
	b.ReportAllocs()
	var out policy.Output
	for b.Loop() {
		s.read(func(obs []policy.Observation) {
			in.Observations = obs
			in.DecisionsOnly = true // as the leader's loop evaluates
			out = policy.Evaluate(in)
		})
		if len(out.Decisions) != 10_000 || out.Decisions["svc-00000"].State != policy.DecisionHealthy {
			b.Fatalf("decisions: %d, svc-00000: %+v", len(out.Decisions), out.Decisions["svc-00000"])
		}
	}
}

// BenchmarkHeldObservations reports what the leader holds of the
// observations at 10,000 groups (60,000 of them) once it has evaluated:
// held-MB is the heap they keep after a collection.
func BenchmarkHeldObservations(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		s, _ := idleCluster(b, 10_000)
		s.read(func([]policy.Observation) {})
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(s)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/1e6, "held-MB")
		b.StartTimer()
	}
}
