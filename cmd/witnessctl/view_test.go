package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestNodeRow: a site with several nodes shows one row per node, named
// SITE/NODE, with its role, timeline, positions and receiver.
func TestNodeRow(t *testing.T) {
	for _, tt := range []struct {
		site   string
		n      nodeViewJSON
		active bool
		want   []string
	}{
		{"west", nodeViewJSON{Name: "west-b", Role: "primary", Timeline: 2, WAL: "0/5000000"}, true,
			[]string{"west/west-b (active)", "primary", "2", "0/5000000", "-", "-", "-"}},
		{"west", nodeViewJSON{Name: "west-a", Role: "standby", Timeline: 1, WAL: "0/3000000", Replayed: "0/3000000"}, false,
			[]string{"west/west-a", "standby", "1", "0/3000000", "0/3000000", "-", "not streaming"}},
		{"west", nodeViewJSON{Name: "west-c", Role: "standby", Timeline: 2, Streaming: true, Failing: true}, false,
			[]string{"west/west-c", "standby", "2", "-", "-", "-", "failing"}},
		{"west", nodeViewJSON{Name: "west-d"}, false, []string{"west/west-d", "unseen", "-", "-", "-", "-", "-"}},
	} {
		if diff := cmp.Diff(tt.want, nodeRow(tt.site, tt.n, tt.active)); diff != "" {
			t.Errorf("%s %s (-want +got):\n%s", tt.site, tt.n.Name, diff)
		}
	}
}
