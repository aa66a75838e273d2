package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/config"
)

// On a witness with a watchdog, fence_after must hold the watchdog
// timeout, a lease check and a lease round, so that the unfed device
// fires before the lease runs out; the error names each term.
func TestWatchdogMustFitInsideFenceAfter(t *testing.T) {
	fit := config.WatchdogFit{Watchdog: 3 * time.Second, LeaseCheck: config.LeaseCheckEvery, LeaseRound: config.LeaseRoundTimeout}
	tests := []struct {
		name   string
		timing config.Timing
		policy string
		want   *config.WatchdogError
	}{
		{"too short", config.Timing{Watchdog: 3 * time.Second}, "failover_after: 20s, fence_after: 3.5s",
			&config.WatchdogError{FenceAfter: 3500 * time.Millisecond, Fit: fit}},
		{"exactly enough", config.Timing{Watchdog: 3 * time.Second}, "failover_after: 20s, fence_after: 3750ms", nil},
		{"no watchdog, no such bound", config.Timing{}, "failover_after: 20s, fence_after: 1s", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.ParseGroupsWith([]byte(groupWith("interval: 1s", tt.policy)), tt.timing)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff([]string{"groups[0].policy.fence_after"}, fields(t, err)); diff != "" {
				t.Fatalf("field paths (-want +got):\n%s\nerror:\n%v", diff, err)
			}
			if !errors.Is(err, config.ErrConflict) {
				t.Errorf("errors.Is(err, ErrConflict) = false for %v", err)
			}
			var we *config.WatchdogError
			if !errors.As(err, &we) {
				t.Fatalf("no *WatchdogError in %v", err)
			}
			if diff := cmp.Diff(tt.want, we); diff != "" {
				t.Errorf("watchdog fit (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWatchdogNodeSetting(t *testing.T) {
	base := func() config.Node {
		n := config.Default()
		n.Name, n.Site, n.DataDir = "east-1", "east", "/d"
		n.InitialVoters = []config.Voter{{Name: "east-1", RaftAddr: n.RaftAddr, GossipAddr: n.GossipAddr}}
		return n
	}
	tests := []struct {
		name string
		w    *config.Watchdog
		want []string
	}{
		{"not set", nil, nil},
		{"a device", &config.Watchdog{Device: "/dev/watchdog", Timeout: config.Duration(3 * time.Second)}, nil},
		{"disabled", &config.Watchdog{Disabled: true}, nil},
		{"neither", &config.Watchdog{}, []string{"watchdog.device"}},
		{"both", &config.Watchdog{Disabled: true, Device: "/dev/watchdog"}, []string{"watchdog.disabled"}},
		{"no timeout", &config.Watchdog{Device: "/dev/watchdog"}, []string{"watchdog.timeout"}},
		{"part of a second", &config.Watchdog{Device: "/dev/watchdog", Timeout: config.Duration(2500 * time.Millisecond)}, []string{"watchdog.timeout"}},
		{"relative device", &config.Watchdog{Device: "watchdog", Timeout: config.Duration(3 * time.Second)}, []string{"watchdog.device"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := base()
			n.Watchdog = tt.w
			err := n.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(tt.want, fields(t, err)); diff != "" {
				t.Errorf("field paths (-want +got):\n%s\nerror:\n%v", diff, err)
			}
		})
	}
}

// The node's watchdog timeout is part of the timing groups are validated
// against, only when a device is fed.
func TestWatchdogInNodeTiming(t *testing.T) {
	path := filepath.Join(t.TempDir(), "witness.yaml")
	if err := os.WriteFile(path, []byte("name: east-1\nwatchdog: {device: /dev/watchdog, timeout: 3s}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := config.LoadNode(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Timing().Watchdog; got != 3*time.Second {
		t.Errorf("timing's watchdog %s, want 3s", got)
	}
	n.Watchdog.Disabled, n.Watchdog.Device = true, ""
	if got := n.Timing().Watchdog; got != 0 {
		t.Errorf("timing's watchdog %s with the watchdog disabled, want 0", got)
	}
}
