package cluster

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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
	own := s.byOf["east-1"]
	for _, other := range []string{"west-1", "tiebreak-1"} {
		m := map[obsKey]int32{}
		s.byOf[other] = m
		for k := range own {
			w, _ := s.get(own, k)
			s.put(other, m, k, w)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(s.snapshot()) != 60000 {
			b.Fatal("observations missing")
		}
	}
}

// TestObservationsSnapshotOrder: the snapshot lists the observations by
// observer, then group and site, each observer's in the order of its keys
// kept between snapshots; a key added (by this witness's probes or by
// gossip) or removed shows in the next snapshot in its place.
func TestObservationsSnapshotOrder(t *testing.T) {
	s := newObservations("west-1", "west", slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Unix(1000, 0)
	local := func(group, site string) {
		s.local(probes.Observation{Group: group, Site: site, State: probes.StateHealthy, Since: now, CheckedAt: now, OK: true})
	}
	order := func() []string {
		var out []string
		for _, o := range s.snapshot() {
			out = append(out, o.Observer+" "+o.Group+"/"+o.Site)
		}
		return out
	}
	local("b", "west")
	local("a", "west")
	local("b", "east")
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "east-1", Site: "east", Ver: 1, Full: true, Obs: []wireObs{
		{Group: "b", Site: "east", At: now.UnixNano()}, {Group: "a", Site: "east", At: now.UnixNano()}}}))
	want := []string{"east-1 a/east", "east-1 b/east", "west-1 a/west", "west-1 b/east", "west-1 b/west"}
	if diff := cmp.Diff(want, order()); diff != "" {
		t.Errorf("snapshot order (-want +got):\n%s", diff)
	}
	local("a", "east") // a new key of this witness
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "east-1", Site: "east", Ver: 2, From: 2, Obs: []wireObs{{Group: "a", Site: "west", At: now.UnixNano()}}}))
	s.setTargets([]probes.Target{{Group: "a", Site: "east"}, {Group: "a", Site: "west"}, {Group: "b", Site: "west"}}) // b/east no longer probed here
	want = []string{"east-1 a/east", "east-1 a/west", "east-1 b/east", "west-1 a/east", "west-1 a/west", "west-1 b/west"}
	if diff := cmp.Diff(want, order()); diff != "" {
		t.Errorf("snapshot order after keys came and went (-want +got):\n%s", diff)
	}
}
