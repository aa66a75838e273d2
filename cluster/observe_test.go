package cluster

import (
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sitewitness/witness/policy"
)

func msg(t *testing.T, m obsMsg) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestObservationGossip(t *testing.T) {
	s := newObservations("tiebreak-1", "tiebreak", slog.New(slog.NewTextHandler(io.Discard, nil)))
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) int64 { return t0.Add(d).UnixNano() }
	checked := func() map[string]time.Time {
		out := map[string]time.Time{}
		for _, o := range s.snapshot() {
			out[o.Observer+" "+o.State.String()] = o.CheckedAt
		}
		return out
	}

	// Garbage, another version, and our own echo are ignored.
	s.merge([]byte("{not json"))
	s.merge(msg(t, obsMsg{V: gossipVersion + 1, Node: "east-1", Site: "east", Ver: 1, Obs: []wireObs{{Group: "app", Site: "east", State: uint8(policy.Failing), At: at(0)}}}))
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "tiebreak-1", Site: "tiebreak", Ver: 9, Obs: []wireObs{{Group: "app", Site: "east", State: uint8(policy.Failing), At: at(0)}}}))
	if got := s.snapshot(); len(got) != 0 {
		t.Fatalf("ignored messages left observations: %v", got)
	}

	// A full state, then a heartbeat at the same version refreshes it.
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 3, Full: true, Obs: []wireObs{{Group: "app", Site: "east", State: uint8(policy.Healthy), At: at(0)}}}))
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 3, Beat: true, FreshAt: at(5 * time.Second)}))
	if got := checked()["west-1 healthy"]; !got.Equal(t0.Add(5 * time.Second)) {
		t.Fatalf("heartbeat did not refresh: checked at %v", got)
	}

	// A missed delta (version 4 lost, 5 arrives): the copy is out of sync,
	// so heartbeats no longer vouch for it and it goes stale.
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 5, Obs: []wireObs{{Group: "app", Site: "east", State: uint8(policy.Failing), At: at(6 * time.Second)}}}))
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 5, Beat: true, FreshAt: at(20 * time.Second)}))
	if got := checked()["west-1 failing"]; !got.Equal(t0.Add(6 * time.Second)) {
		t.Fatalf("out-of-sync copy refreshed by a heartbeat: checked at %v", got)
	}
	// The next full sync repairs it.
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 5, Full: true, Obs: []wireObs{{Group: "app", Site: "east", State: uint8(policy.Failing), At: at(21 * time.Second)}}}))
	s.merge(msg(t, obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Ver: 5, Beat: true, FreshAt: at(22 * time.Second)}))
	if got := checked()["west-1 failing"]; !got.Equal(t0.Add(22 * time.Second)) {
		t.Fatalf("after full sync: checked at %v", got)
	}
}
