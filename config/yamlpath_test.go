package config_test

import (
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/config"
)

// A typo or a value of the wrong kind is reported at its field path, as
// every other problem is, not as a line and a Go type name.
func TestDecodeErrorsHaveFieldPaths(t *testing.T) {
	doc := `groups:
  - name: app
    sites:
      - name: east
        probes: [{kind: http, url: "http://e/health", intervall: 1s}]
      - name: west
    policy:
      failover_afer: 10s
      fence_after: [1s]
`
	_, err := config.ParseGroups([]byte(doc))
	var es config.Errors
	if !errors.As(err, &es) {
		t.Fatalf("not Errors: %v", err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Error())
	}
	want := []string{
		`groups[0].sites[0].probes[0].intervall: is not known (did you mean interval?)`,
		`groups[0].policy.failover_afer: is not known (did you mean failover_after?)`,
		`groups[0].policy.fence_after: cannot be parsed: want a duration, not a list`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if !errors.Is(err, config.ErrUnknown) {
		t.Errorf("errors.Is(err, ErrUnknown) = false")
	}
}

func TestNodeDecodeErrorsHaveFieldPaths(t *testing.T) {
	path := t.TempDir() + "/witness.yaml"
	if err := os.WriteFile(path, []byte("name: east-1\nraft:\n  heartbeat_timout: 1s\n  election_timeout: soon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.LoadNode(path)
	want := path + ":\nraft.heartbeat_timout: is not known (did you mean heartbeat_timeout?)\n" +
		`raft.election_timeout: cannot be parsed: "soon" is not a duration (like 500ms, 10s, 2m)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	if !errors.Is(err, config.ErrUnknown) {
		t.Errorf("errors.Is(err, ErrUnknown) = false")
	}
}
