package config_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/sitewitness/witness/config"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// pgGroup is a group whose postgres action is the given YAML block
// (indented under postgres:), with one postgres probe at east.
func pgGroup(action string) string {
	return `
groups:
  - name: app
    sites:
      - name: east
        probes:
          - {kind: tcp, address: "h:1"}
          - {kind: postgres, dsn: "postgres://monitor@10.0.1.30:5432/postgres"}
      - name: west
        probes: [{kind: tcp, address: "h:2"}]
    actions:
      postgres:
` + action
}

const pgDSNs = `        dsn:
          east: "postgres://witness:secret@10.0.1.30:5432/postgres"
          west: "host=10.0.2.30 user=witness_west dbname=postgres"
`

func TestPostgresSpecMapsToProto(t *testing.T) {
	specs, err := config.ParseGroups([]byte(pgGroup(pgDSNs + `        roles: [app, App_Batch]
        data_dir: {east: /var/lib/postgresql/15/main, west: /srv/pg}
        pg_ctl: /usr/lib/postgresql/15/bin/pg_ctl
        demote_command: [/usr/bin/systemctl, stop, postgresql@15-main]
        reinstate: auto
        save_dir: {east: /var/lib/postgresql/15/saved}
        replication_dsn: {west: "host=10.0.2.30 user=replicator dbname=postgres"}
`)))
	if err != nil {
		t.Fatal(err)
	}
	want := &witnessv1.PostgresAction{
		Dsn: map[string]string{
			"east": "postgres://witness:secret@10.0.1.30:5432/postgres",
			"west": "host=10.0.2.30 user=witness_west dbname=postgres",
		},
		Fence:          config.FenceSQL,
		Roles:          []string{"app", "App_Batch"},
		DataDir:        map[string]string{"east": "/var/lib/postgresql/15/main", "west": "/srv/pg"},
		PgCtl:          "/usr/lib/postgresql/15/bin/pg_ctl",
		DemoteCommand:  []string{"/usr/bin/systemctl", "stop", "postgresql@15-main"},
		Reinstate:      config.ReinstateAuto,
		SaveDir:        map[string]string{"east": "/var/lib/postgresql/15/saved"},
		ReplicationDsn: map[string]string{"west": "host=10.0.2.30 user=replicator dbname=postgres"},
	}
	got := specs[0].GetActions().GetPostgres()
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("postgres action (-want +got):\n%s", diff)
	}
}

func TestPostgresFenceNames(t *testing.T) {
	for _, tt := range []struct{ fence, want string }{
		{"", config.FenceSQL},
		{"sql", config.FenceSQL},
		{"read_only", config.FenceSQL}, // the old name
		{"none", config.FenceNone},
	} {
		t.Run(tt.fence, func(t *testing.T) {
			specs, err := config.ParseGroups([]byte(pgGroup(pgDSNs + "        roles: [app]\n        fence: \"" + tt.fence + "\"\n")))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, specs[0].GetActions().GetPostgres().GetFence()); diff != "" {
				t.Errorf("fence (-want +got):\n%s", diff)
			}
		})
	}
	// fence none needs no roles.
	if _, err := config.ParseGroups([]byte(pgGroup(pgDSNs + "        fence: none\n"))); err != nil {
		t.Errorf("fence none without roles: %v", err)
	}
}

func TestPostgresSpecRefusals(t *testing.T) {
	const p = "groups[0].actions.postgres"
	tests := []struct {
		name   string
		action string
		want   []string
		is     error
	}{
		{"sql fence without roles", pgDSNs, []string{p + ".roles"}, config.ErrRequired},
		{"empty role list", pgDSNs + "        roles: []\n", []string{p + ".roles"}, config.ErrRequired},
		{"unknown fence", pgDSNs + "        fence: stonith\n        roles: [app]\n", []string{p + ".fence"}, config.ErrInvalid},
		{"bad identifiers", pgDSNs + "        roles: [app, \"1st\", \"drop table\", \"\", pg_monitor, public]\n",
			[]string{p + ".roles[1]", p + ".roles[2]", p + ".roles[3]", p + ".roles[4]", p + ".roles[5]"}, nil},
		{"role too long", pgDSNs + "        roles: [a234567890123456789012345678901234567890123456789012345678901234]\n", []string{p + ".roles[0]"}, config.ErrInvalid},
		{"duplicate role", pgDSNs + "        roles: [app, batch, app]\n", []string{p + ".roles[2]"}, config.ErrDuplicate},
		{"witness's own user, URL form", pgDSNs + "        roles: [app, witness]\n", []string{p + ".roles[1]"}, config.ErrConflict},
		{"witness's own user, keyword form", pgDSNs + "        roles: [witness_west, app]\n", []string{p + ".roles[0]"}, config.ErrConflict},
		{"a probe's user", pgDSNs + "        roles: [monitor]\n", []string{p + ".roles[0]"}, config.ErrConflict},
		{"data_dir of another site, relative", pgDSNs + "        roles: [app]\n        data_dir: {east: pgdata, north: /srv/pg}\n",
			[]string{p + ".data_dir.east", p + ".data_dir.north"}, nil},
		{"relative pg_ctl", pgDSNs + "        roles: [app]\n        pg_ctl: pg_ctl\n", []string{p + ".pg_ctl"}, config.ErrInvalid},
		{"relative demote command", pgDSNs + "        roles: [app]\n        demote_command: [systemctl, stop, postgresql]\n", []string{p + ".demote_command[0]"}, config.ErrInvalid},
		{"empty demote command", pgDSNs + "        roles: [app]\n        demote_command: []\n", []string{p + ".demote_command"}, config.ErrRequired},
		{"unknown reinstate", pgDSNs + "        roles: [app]\n        reinstate: always\n", []string{p + ".reinstate"}, config.ErrInvalid},
		{"reinstate auto without data_dir", pgDSNs + "        roles: [app]\n        reinstate: auto\n        data_dir: {east: /srv/pg}\n", []string{p + ".reinstate"}, config.ErrRequired},
		{"save_dir relative and of another site", pgDSNs + "        roles: [app]\n        save_dir: {east: saved, north: /srv/saved}\n",
			[]string{p + ".save_dir.east", p + ".save_dir.north"}, nil},
		{"unparsable replication_dsn", pgDSNs + "        roles: [app]\n        replication_dsn: {west: \"postgres://u:pw@[bad\"}\n", []string{p + ".replication_dsn.west"}, config.ErrSyntax},
		{"unparsable DSN", "        dsn: {east: \"postgres://u:pw@[bad\", west: \"host=h\"}\n        roles: [app]\n", []string{p + ".dsn.east"}, config.ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.ParseGroups([]byte(pgGroup(tt.action)))
			if err == nil {
				t.Fatal("accepted")
			}
			if diff := cmp.Diff(tt.want, fields(t, err)); diff != "" {
				t.Errorf("field paths (-want +got):\n%s\nerror:\n%v", diff, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(err, %v) = false for %v", tt.is, err)
			}
		})
	}
}
