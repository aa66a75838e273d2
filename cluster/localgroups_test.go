package cluster

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

func recordGroup(name, active string, token uint64, dsn map[string]string) *witnessv1.Group {
	return &witnessv1.Group{
		Spec:   &witnessv1.GroupSpec{Name: name, Actions: &witnessv1.Actions{Postgres: &witnessv1.PostgresAction{Dsn: dsn}}},
		Status: &witnessv1.GroupStatus{Token: token, ActiveSite: active},
	}
}

// recorded is the record's groups as name@token/active.
func recorded(l *localGroups) []string {
	var out []string
	for _, g := range l.groups() {
		out = append(out, fmt.Sprintf("%s@%s/%d", g.GetSpec().GetName(), g.GetStatus().GetActiveSite(), g.GetStatus().GetToken()))
	}
	return out
}

// The record keeps each group that names the site at the highest token
// seen, survives a restart, and forgets a group only once the replica has
// applied its whole log.
func TestLocalGroupsRecord(t *testing.T) {
	dir := t.TempDir()
	here := map[string]string{"east": "host=east-db", "west": "host=west-db"}
	l, err := loadLocalGroups(dir, "east")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.update([]*witnessv1.Group{
		recordGroup("app", "east", 3, here),
		recordGroup("other", "west", 2, map[string]string{"west": "host=west-db"}), // no database at east
	}, true); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name     string
		replica  []*witnessv1.Group
		complete bool
		want     []string
	}{
		{"a replica behind does not lower the token", []*witnessv1.Group{recordGroup("app", "west", 2, here)}, false, []string{"app@east/3"}},
		{"an empty replica behind forgets nothing", nil, false, []string{"app@east/3"}},
		{"a newer token is kept", []*witnessv1.Group{recordGroup("app", "west", 4, here)}, false, []string{"app@west/4"}},
		{"a complete replica without the group forgets it", nil, true, nil},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			// Each step reads the file the step before wrote.
			l, err := loadLocalGroups(dir, "east")
			if err != nil {
				t.Fatal(err)
			}
			if err := l.update(s.replica, s.complete); err != nil {
				t.Fatal(err)
			}
			again, err := loadLocalGroups(dir, "east")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(s.want, recorded(again)); diff != "" {
				t.Errorf("record after a restart (-want +got):\n%s", diff)
			}
		})
	}
}
