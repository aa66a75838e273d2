package cluster

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sitewitness/witness/probes"
)

// BenchmarkObservationsSnapshot is the policy's input of 10,000 groups
// probed at two sites by three witnesses, as the leader builds it at every
// evaluation (every 250ms).
func BenchmarkObservationsSnapshot(b *testing.B) {
	s := newObservations("east-1", "east", slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Now()
	for i := range 10000 {
		for _, site := range []string{"east", "west"} {
			s.local(probes.Observation{Group: fmt.Sprintf("svc-%05d", i), Site: site, State: probes.StateHealthy, Since: now, CheckedAt: now, OK: true})
		}
	}
	for _, other := range []string{"west-1", "tiebreak-1"} {
		m := map[obsKey]wireObs{}
		for k, w := range s.byOf["east-1"] {
			m[k] = w
		}
		s.byOf[other] = m
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(s.snapshot()) != 60000 {
			b.Fatal("observations missing")
		}
	}
}
