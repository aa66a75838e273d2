package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/policy"
	"github.com/sitewitness/witness/probes"
)

// codecSample is a message with every field set, odd values included: a
// zero time's UnixNano (far before Sent), an unknown At, a database
// observation, strings repeated and empty.
func codecSample() obsMsg {
	sent := time.Unix(1_800_000_000, 123).UnixNano()
	return obsMsg{V: gossipVersion, Node: "west-1", Site: "west", Inc: 7, Ver: 1 << 40, From: 3, Full: true, FreshAt: sent - 999, Sent: sent,
		Obs: []wireObs{
			{Group: "app", Site: "east", Probe: "0-tcp", State: uint8(policy.Healthy), Since: time.Time{}.UnixNano(), At: 0},
			{Group: "app", Site: "west", Probe: "0-tcp", State: uint8(policy.Failing), Since: sent - int64(time.Hour), At: sent + 5,
				Detail: "dial tcp 127.0.0.1:1: connect: connection refused"},
			{Group: "db", Site: "east", Probe: "1-postgres@db-2", State: uint8(policy.Healthy), Since: math.MinInt64, At: math.MaxInt64,
				DB: true, Role: "standby", LagBytes: -1, LagSecond: 0.25, Streaming: true, WAL: math.MaxUint64, Replayed: 1 << 33, Timeline: math.MaxUint32, Node: "db-2",
				Detail: "dial tcp 127.0.0.1:1: connect: connection refused"},
		}}
}

func TestObservationCodecRoundTrip(t *testing.T) {
	for _, m := range []obsMsg{
		codecSample(),
		{V: gossipVersion, Node: "east-1", Site: "east", Ver: 4, Beat: true, FreshAt: 17, Sent: -3},
		{V: gossipVersion},
	} {
		var got obsMsg
		if err := decodeObs(encodeObs(m), &got, nil); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if diff := cmp.Diff(m, got, cmp.AllowUnexported(wireObs{})); diff != "" {
			t.Errorf("round trip (-sent +received):\n%s", diff)
		}
	}
}

// TestObservationCodecNamesOnce: a string repeated in a message is sent
// once, and a name the receiver holds is taken from there, not copied.
func TestObservationCodecNamesOnce(t *testing.T) {
	m := codecSample()
	b := encodeObs(m)
	detail := m.Obs[1].Detail
	if n := countSub(string(b), detail); n != 1 {
		t.Errorf("a detail repeated in two observations is in the message %d times, want once", n)
	}
	if n := countSub(string(b), "app"); n != 1 {
		t.Errorf("a group name of two observations is in the message %d times, want once", n)
	}

	held := "app"
	var got obsMsg
	err := decodeObs(b, &got, func(raw []byte) (string, bool) {
		if string(raw) == held {
			return held, true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range got.Obs[:2] {
		if unsafe.StringData(w.Group) != unsafe.StringData(held) {
			t.Errorf("group %q of a received observation is a copy, not the name held", w.Group)
		}
	}
}

func countSub(s, sub string) int {
	n := 0
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			n++
		}
	}
	return n
}

// TestObservationCodecRefusesDamage: every truncation of a message, a
// byte too many, a count larger than the message and a reference to a
// string not sent are refused with an error, never a panic or a
// half-read message taken as whole.
func TestObservationCodecRefusesDamage(t *testing.T) {
	b := encodeObs(codecSample())
	for n := range len(b) {
		var m obsMsg
		if err := decodeObs(b[:n], &m, nil); err == nil {
			t.Fatalf("a message cut to %d of %d bytes decoded", n, len(b))
		}
	}
	var m obsMsg
	if err := decodeObs(append(b, 0), &m, nil); err == nil {
		t.Error("a message with a byte too many decoded")
	}
	// A header that claims a billion observations.
	lie := encodeObs(obsMsg{V: gossipVersion, Node: "x"})
	lie = append(lie[:len(lie)-1], 0x80, 0x94, 0xeb, 0xdc, 0x03)
	var lied obsMsg
	if err := decodeObs(lie, &lied, nil); err == nil || lied.Obs != nil {
		t.Errorf("a count larger than the message: err %v, %d observations allocated", err, len(lied.Obs))
	}
	// A reference to the 100th string of a message that sent one.
	var e obsEncoder
	e.buf = binary.AppendUvarint(append(e.buf, obsMagic), gossipVersion)
	e.buf = append(e.buf, 0) // flags
	e.str("x")               // Node, the first string
	e.buf = append(e.buf, 7) // Site: the sixth string
	bad := append(e.buf, 0, 0, 0, 0, 0, 0)
	if err := decodeObs(bad, &m, nil); err == nil {
		t.Error("a reference to a string never sent decoded")
	}
	if err := decodeObs([]byte(`{"v":1,"node":"east-1"}`), &m, nil); !errors.Is(err, errObsVersion) {
		t.Errorf("a JSON message of version 1: %v, want a version error", err)
	}
	other := codecSample()
	other.V = gossipVersion + 1
	if err := decodeObs(encodeObs(other), &m, nil); !errors.Is(err, errObsVersion) {
		t.Errorf("a message of version %d: %v, want a version error", other.V, err)
	}
}

func FuzzDecodeObservations(f *testing.F) {
	f.Add(encodeObs(codecSample()))
	f.Add(encodeObs(obsMsg{V: gossipVersion, Beat: true}))
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m obsMsg
		if err := decodeObs(b, &m, nil); err != nil {
			return
		}
		var again obsMsg
		if err := decodeObs(encodeObs(m), &again, nil); err != nil {
			t.Fatalf("a decoded message, encoded again, does not decode: %v", err)
		}
		if diff := cmp.Diff(m, again, cmp.AllowUnexported(wireObs{}), cmp.Comparer(func(a, b float64) bool {
			return math.Float64bits(a) == math.Float64bits(b)
		})); diff != "" {
			t.Fatalf("decode(encode(m)) differs from m:\n%s", diff)
		}
	})
}

// BenchmarkFullState is one push/pull's full state of 20,000 observations
// (10,000 groups probed at two sites), made by one witness and applied
// by another; it reports the message's size.
func BenchmarkFullState(b *testing.B) {
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	west := newObservations("west-1", "west", discard)
	peer := newObservations("tiebreak-1", "tiebreak", discard)
	t0 := time.Unix(100_000, 0)
	var ts []probes.Target
	for i := range 10_000 {
		for _, site := range []string{"east", "west"} {
			name := fmt.Sprintf("svc-%05d", i)
			ts = append(ts, probes.Target{Group: name, Site: site, Name: "0-tcp"})
			west.local(probes.Observation{Group: name, Site: site, Name: "0-tcp", State: probes.StateHealthy, Since: t0.Add(-time.Hour), CheckedAt: t0})
		}
	}
	peer.setTargets(ts)
	var size int
	b.ReportAllocs()
	for b.Loop() {
		m := west.full()
		size = len(m)
		peer.merge(m)
	}
	b.ReportMetric(float64(size), "bytes/msg")
}
