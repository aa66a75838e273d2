package config_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/config"
)

// groupWith is a two-site group of tcp probes with the given probe and
// policy flow mappings (without braces).
func groupWith(probe, policy string) string {
	return fmt.Sprintf(`
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "h:1", %[1]s}]}
      - {name: west, probes: [{kind: tcp, address: "h:2", %[1]s}]}
    policy: {%[2]s}
`, probe, policy)
}

func TestMarginRefusesAndNamesEveryTerm(t *testing.T) {
	tests := []struct {
		name   string
		timing config.Timing
		probe  string
		policy string
		want   *config.MarginError
	}{
		{"defaults, fence_after too late", config.Timing{}, "interval: 1s", "failover_after: 10s, fence_after: 9.7s",
			&config.MarginError{FenceAfter: 9700 * time.Millisecond, FailoverAfter: 10 * time.Second, Margin: config.Margin{
				ProbeInterval: time.Second, ProbeTimeout: 800 * time.Millisecond, LeaderLease: 500 * time.Millisecond,
				LeaseCheck: 250 * time.Millisecond, LeaseRound: config.LeaseRoundTimeout, FenceLimit: time.Second, ClockDrift: 97 * time.Millisecond}}},
		{"the largest probe counts", config.Timing{}, "interval: 3s, timeout: 2s", "failover_after: 10s, fence_after: 5s",
			&config.MarginError{FenceAfter: 5 * time.Second, FailoverAfter: 10 * time.Second, Margin: config.Margin{
				ProbeInterval: 3 * time.Second, ProbeTimeout: 2 * time.Second, LeaderLease: 500 * time.Millisecond,
				LeaseCheck: 250 * time.Millisecond, LeaseRound: config.LeaseRoundTimeout, FenceLimit: time.Second, ClockDrift: 50 * time.Millisecond}}},
		{"the node's leader lease counts", config.Timing{LeaderLease: 2 * time.Second}, "interval: 1s", "failover_after: 10s, fence_after: 5s",
			&config.MarginError{FenceAfter: 5 * time.Second, FailoverAfter: 10 * time.Second, Margin: config.Margin{
				ProbeInterval: time.Second, ProbeTimeout: 800 * time.Millisecond, LeaderLease: 2 * time.Second,
				LeaseCheck: 250 * time.Millisecond, LeaseRound: config.LeaseRoundTimeout, FenceLimit: time.Second, ClockDrift: 50 * time.Millisecond}}},
		{"short fence_after: drift at its floor, fence limit at half", config.Timing{}, "interval: 1s", "failover_after: 3s, fence_after: 800ms",
			&config.MarginError{FenceAfter: 800 * time.Millisecond, FailoverAfter: 3 * time.Second, Margin: config.Margin{
				ProbeInterval: time.Second, ProbeTimeout: 800 * time.Millisecond, LeaderLease: 500 * time.Millisecond,
				LeaseCheck: 250 * time.Millisecond, LeaseRound: config.LeaseRoundTimeout, FenceLimit: 400 * time.Millisecond, ClockDrift: 10 * time.Millisecond}}},
		{"exactly the margin is enough", config.Timing{}, "interval: 1s", "failover_after: 10s, fence_after: 5890ms", nil},
		{"a short lease makes room", config.Timing{LeaderLease: 100 * time.Millisecond}, "interval: 1s", "failover_after: 10s, fence_after: 6.2s", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			specs, err := config.ParseGroupsWith([]byte(groupWith(tt.probe, tt.policy)), tt.timing)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				m := tt.timing.Margin(specs[0])
				gap := time.Duration(specs[0].GetPolicy().GetFailoverAfterMs()-specs[0].GetPolicy().GetFenceAfterMs()) * time.Millisecond
				if gap < m.Total() {
					t.Errorf("accepted a gap of %s below the margin %s", gap, m.Total())
				}
				return
			}
			if diff := cmp.Diff([]string{"groups[0].policy.fence_after"}, fields(t, err)); diff != "" {
				t.Fatalf("field paths (-want +got):\n%s\nerror:\n%v", diff, err)
			}
			if !errors.Is(err, config.ErrConflict) {
				t.Errorf("errors.Is(err, ErrConflict) = false for %v", err)
			}
			var me *config.MarginError
			if !errors.As(err, &me) {
				t.Fatalf("no *MarginError in %v", err)
			}
			if diff := cmp.Diff(tt.want, me); diff != "" {
				t.Errorf("margin (-want +got):\n%s", diff)
			}
		})
	}
}

// The margin the cluster computes from a parsed spec is the one validation
// required, and the fence hold adds fence_after to it.
func TestMarginOfParsedSpec(t *testing.T) {
	timing := config.Timing{LeaderLease: 300 * time.Millisecond}
	specs, err := config.ParseGroupsWith([]byte(groupWith("interval: 2s, timeout: 1500ms", "failover_after: 12.2s, fence_after: 6s")), timing)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Margin{
		ProbeInterval: 2 * time.Second, ProbeTimeout: 1500 * time.Millisecond, LeaderLease: 300 * time.Millisecond,
		LeaseCheck: config.LeaseCheckEvery, LeaseRound: config.LeaseRoundTimeout, FenceLimit: time.Second, ClockDrift: 60 * time.Millisecond,
	}
	got := timing.Margin(specs[0])
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("margin (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(5610*time.Millisecond, got.Total()); diff != "" {
		t.Errorf("total (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(6*time.Second+got.Total(), timing.FenceHold(specs[0])); diff != "" {
		t.Errorf("fence hold (-want +got):\n%s", diff)
	}
}

// Defaults validate, and fence_after and fence_timeout shrink to fit a
// short failover_after.
func TestTimingDefaults(t *testing.T) {
	type timing struct{ FenceAfter, FenceTimeout time.Duration }
	tests := []struct {
		name   string
		timing config.Timing
		probe  string
		policy string
		want   timing
	}{
		{"all defaults", config.Timing{}, "interval: 1s", "", timing{5 * time.Second, time.Second}},
		{"long failover_after", config.Timing{}, "interval: 1s", "failover_after: 1m", timing{5 * time.Second, time.Second}},
		{"failover_after 5s", config.Timing{}, "interval: 1s", "failover_after: 5s", timing{940 * time.Millisecond, 470 * time.Millisecond}},
		{"fast probes", config.Timing{}, "interval: 200ms, timeout: 150ms", "failover_after: 3s", timing{790 * time.Millisecond, 395 * time.Millisecond}},
		{"node with a short lease", config.Timing{LeaderLease: 250 * time.Millisecond}, "interval: 1s", "failover_after: 5s", timing{1188 * time.Millisecond, 594 * time.Millisecond}},
		{"fence_after given", config.Timing{}, "interval: 1s", "failover_after: 10s, fence_after: 3s", timing{3 * time.Second, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			specs, err := config.ParseGroupsWith([]byte(groupWith(tt.probe, tt.policy)), tt.timing)
			if err != nil {
				t.Fatal(err)
			}
			got := timing{time.Duration(specs[0].GetPolicy().GetFenceAfterMs()) * time.Millisecond, config.FenceTimeout(specs[0])}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("fence_after, fence_timeout (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFenceTimeoutRules(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		want   []string
	}{
		{"the default", "failover_after: 10s, fence_after: 5s, fence_timeout: 1s", nil},
		{"another value", "failover_after: 20s, fence_after: 5s, fence_timeout: 3s", nil},
		{"not below fence_after", "failover_after: 1h, fence_after: 1s, fence_timeout: 1s", []string{"groups[0].policy.fence_timeout"}},
		{"negative", "failover_after: 20s, fence_after: 5s, fence_timeout: -1s", []string{"groups[0].policy.fence_timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.ParseGroups([]byte(groupWith("interval: 1s", tt.policy)))
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

func TestClockDrift(t *testing.T) {
	for _, tt := range []struct{ fenceAfter, want time.Duration }{
		{0, 10 * time.Millisecond},
		{500 * time.Millisecond, 10 * time.Millisecond},
		{5 * time.Second, 50 * time.Millisecond},
		{1435 * time.Millisecond, 15 * time.Millisecond}, // rounded up
		{time.Minute, 600 * time.Millisecond},
	} {
		if diff := cmp.Diff(tt.want, config.ClockDrift(tt.fenceAfter)); diff != "" {
			t.Errorf("ClockDrift(%s) (-want +got):\n%s", tt.fenceAfter, diff)
		}
	}
}

func TestNodeTiming(t *testing.T) {
	n := config.Default()
	n.Raft.LeaderLeaseTimeout = config.Duration(700 * time.Millisecond)
	want := config.Timing{LeaderLease: 700 * time.Millisecond, LeaseCheck: config.LeaseCheckEvery}
	if diff := cmp.Diff(want, n.Timing()); diff != "" {
		t.Errorf("Node.Timing (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(config.Timing{LeaderLease: 500 * time.Millisecond, LeaseCheck: 250 * time.Millisecond}, config.DefaultTiming()); diff != "" {
		t.Errorf("DefaultTiming (-want +got):\n%s", diff)
	}
}
