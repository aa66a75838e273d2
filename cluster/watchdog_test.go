package cluster

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/config"
)

func TestWatchdogFeeds(t *testing.T) {
	const timeout = 2 * time.Second
	tests := []struct {
		name       string
		granted    bool
		since      time.Duration
		fenceAfter []time.Duration
		want       bool
	}{
		{"never granted", false, 0, nil, false},
		{"granted, nothing active here", true, time.Hour, nil, true},
		{"lease fresh", true, 300 * time.Millisecond, []time.Duration{3 * time.Second}, true},
		{"less than the timeout left", true, 1001 * time.Millisecond, []time.Duration{3 * time.Second}, false},
		{"exactly the timeout left", true, time.Second, []time.Duration{3 * time.Second}, false},
		{"the shortest fence_after counts", true, 500 * time.Millisecond, []time.Duration{time.Minute, 2400 * time.Millisecond}, false},
		{"lease lapsed", true, 4 * time.Second, []time.Duration{3 * time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := watchdogFeeds(tt.granted, tt.since, timeout, tt.fenceAfter); got != tt.want {
				t.Errorf("watchdogFeeds = %v, want %v", got, tt.want)
			}
		})
	}
}

// The device is opened on the first feed, fed with a byte that is not
// 'V', and disarmed with 'V' on a clean stop.
func TestDeviceWatchdogWritesAndDisarms(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	w := &deviceWatchdog{path: path}
	if err := w.Disarm(); err != nil {
		t.Fatalf("disarm before any feed: %v", err)
	}
	for range 3 {
		if err := w.Feed(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Disarm(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("111V", string(got)); diff != "" {
		t.Errorf("written to the device (-want +got):\n%s", diff)
	}
}

// dogRecorder is a Watchdog that records when it was fed and disarmed.
type dogRecorder struct {
	mu       sync.Mutex
	feeds    []time.Time
	disarmed time.Time
}

func (d *dogRecorder) Feed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.feeds = append(d.feeds, time.Now())
	return nil
}

func (d *dogRecorder) Disarm() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.disarmed = time.Now()
	return nil
}

func (d *dogRecorder) get() ([]time.Time, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Time(nil), d.feeds...), d.disarmed
}

// The active site's witness feeds its watchdog while its lease holds, and
// stops feeding it, once it has lost the majority, early enough that the
// device fires before the lease runs out: by the time the witness fences
// itself, more than the watchdog timeout has passed since the last feed.
// A clean stop disarms the device.
func TestWatchdogFedOnlyWhileTheLeaseHolds(t *testing.T) {
	const fenceAfter, timeout = 2 * time.Second, time.Second
	rec, dog := &fenceRecorder{}, &dogRecorder{}
	tc := newTestClusterWith(t, func(i int, o *Options) {
		if i == 0 {
			o.Config.Watchdog = &config.Watchdog{Device: "/dev/null/not-opened", Timeout: config.Duration(timeout)}
			o.Watchdog, o.LocalDatabase = dog, rec.database
		}
	}, "east", "west", "tiebreak")
	_, leader := tc.leader()
	applyDoc(t, leader, `
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    policy: {failover_after: 1h, fence_after: 2s, mode: observe}
    actions:
      postgres: {dsn: {east: "host=east-db user=witness", west: "host=west-db user=witness"}, roles: [app]}
`)
	n := tc.nodes[0]
	eventually(t, "east to replicate the group", func() bool { return len(n.FSM().Groups()) == 1 })
	eventually(t, "east's watchdog fed", func() bool { f, _ := dog.get(); return len(f) >= 5 })

	tc.stop(1)
	tc.stop(2)
	eventually(t, "east to fence itself", func() bool { c, _ := rec.get(); return len(c) == 1 })
	_, at := rec.get()
	feeds, _ := dog.get()
	last := feeds[len(feeds)-1]
	if gap := at[0].Sub(last); gap <= timeout {
		t.Errorf("last feed %s before the self-fence, want more than the watchdog timeout %s", gap, timeout)
	}
	if _, disarmed := dog.get(); !disarmed.IsZero() {
		t.Fatal("disarmed while running")
	}
	tc.stop(0)
	if _, disarmed := dog.get(); disarmed.IsZero() {
		t.Error("not disarmed at a clean stop")
	}
}
