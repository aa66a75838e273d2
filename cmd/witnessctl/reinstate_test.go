package main

import (
	"strings"
	"testing"
)

const reinstateDoc = `
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    actions:
      postgres:
        dsn: {east: "host=127.0.0.1 port=1 user=witness", west: "host=127.0.0.1 port=2 user=witness"}
        data_dir: {east: /srv/east, west: /srv/west}
        fence: none
`

// witnessctl reinstate refuses, with the reason and a failing exit, the
// active site and a site not of the group; a missing argument is a usage
// error.
func TestReinstateRefusals(t *testing.T) {
	addr := startNode(t)
	if out, errs, code := ctl(t, reinstateDoc, "--addr", addr, "apply", "-f", "-", "--active", "app=east"); code != 0 {
		t.Fatalf("apply: exit %d: %s %s", code, out, errs)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"reinstate", "app", "east"}, "is active at east"},
		{[]string{"reinstate", "app", "north"}, "not a site of group"},
		{[]string{"reinstate", "nope", "west"}, "not found"},
		{[]string{"reinstate", "app"}, "reinstate GROUP SITE"},
	} {
		out, errs, code := ctl(t, "", append([]string{"--addr", addr}, tt.args...)...)
		if code == 0 || !strings.Contains(errs, tt.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want a failure saying %q", tt.args, code, out, errs, tt.want)
		}
	}
}
