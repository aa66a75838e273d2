package config_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/sitewitness/witness/config"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// nodesGroup is a group with one node at east and two at west, each
// probed; extra is YAML added under postgres:.
func nodesGroup(westProbes, nodes, extra string) string {
	return `
groups:
  - name: app
    sites:
      - name: east
        probes:
          - {kind: postgres, node: east-1}
      - name: west
        probes:
` + westProbes + `
    actions:
      postgres:
        roles: [app]
        nodes:
` + nodes + extra
}

const (
	westProbes = `          - {kind: postgres, node: west-a}
          - {kind: postgres, node: west-b, dsn: "host=10.0.2.32 user=monitor dbname=postgres"}`
	threeNodes = `          - {name: east-1, site: east, dsn: "host=10.0.1.30 user=witness dbname=postgres", data_dir: /srv/pg}
          - {name: west-a, site: west, dsn: "host=10.0.2.31 user=witness dbname=postgres"}
          - {name: west-b, site: west, dsn: "host=10.0.2.32 user=witness dbname=postgres", data_dir: /srv/pg, replication_dsn: "host=10.0.2.32 user=replicator"}
`
)

// TestPostgresNodesMapToProto: every node is replicated, each site's
// principal (the one with a data_dir, else the first) fills the per-site
// maps that the one-node actions read, and a probe that names a node
// probes its dsn unless it gives its own.
func TestPostgresNodesMapToProto(t *testing.T) {
	specs, err := config.ParseGroups([]byte(nodesGroup(westProbes, threeNodes, "")))
	if err != nil {
		t.Fatal(err)
	}
	want := &witnessv1.PostgresAction{
		Dsn:            map[string]string{"east": "host=10.0.1.30 user=witness dbname=postgres", "west": "host=10.0.2.32 user=witness dbname=postgres"},
		DataDir:        map[string]string{"east": "/srv/pg", "west": "/srv/pg"},
		ReplicationDsn: map[string]string{"west": "host=10.0.2.32 user=replicator"},
		Fence:          config.FenceSQL, Reinstate: config.ReinstateManual, Roles: []string{"app"},
		Nodes: []*witnessv1.PostgresNode{
			{Name: "east-1", Site: "east", Dsn: "host=10.0.1.30 user=witness dbname=postgres", DataDir: "/srv/pg"},
			{Name: "west-a", Site: "west", Dsn: "host=10.0.2.31 user=witness dbname=postgres"},
			{Name: "west-b", Site: "west", Dsn: "host=10.0.2.32 user=witness dbname=postgres", DataDir: "/srv/pg", ReplicationDsn: "host=10.0.2.32 user=replicator"},
		},
	}
	if diff := cmp.Diff(want, specs[0].GetActions().GetPostgres(), protocmp.Transform()); diff != "" {
		t.Errorf("postgres action (-want +got):\n%s", diff)
	}
	var probes []string
	for _, s := range specs[0].GetSites() {
		for _, p := range s.GetProbes() {
			probes = append(probes, p.GetNode()+" "+p.GetDsn())
		}
	}
	wantProbes := []string{"east-1 host=10.0.1.30 user=witness dbname=postgres", "west-a host=10.0.2.31 user=witness dbname=postgres",
		"west-b host=10.0.2.32 user=monitor dbname=postgres"}
	if diff := cmp.Diff(wantProbes, probes); diff != "" {
		t.Errorf("probes (-want +got):\n%s", diff)
	}
}

func TestPostgresNodesRefusals(t *testing.T) {
	const p = "groups[0].actions.postgres"
	tests := []struct {
		name              string
		west, nodes, more string
		want              []string
		is                error
	}{
		{"duplicate name", westProbes, threeNodes + `          - {name: west-a, site: west, dsn: "host=h"}
`, "", []string{p + ".nodes[3].name"}, config.ErrDuplicate},
		{"unknown site", westProbes, threeNodes + `          - {name: north-1, site: north, dsn: "host=h"}
`, "", []string{p + ".nodes[3].site"}, nil},
		{"two data_dirs at a site", westProbes, `          - {name: east-1, site: east, dsn: "host=h1"}
          - {name: west-a, site: west, dsn: "host=h2", data_dir: /srv/a}
          - {name: west-b, site: west, dsn: "host=h3", data_dir: /srv/b}
`, "", []string{p + ".nodes[2].data_dir"}, config.ErrConflict},
		{"nodes and per-site maps", westProbes, threeNodes, "        dsn: {east: \"host=h\"}\n", []string{p + ".dsn"}, config.ErrConflict},
		{"missing dsn, bad replication_dsn", westProbes, `          - {name: east-1, site: east, dsn: "host=h1"}
          - {name: west-a, site: west}
          - {name: west-b, site: west, dsn: "host=h3", replication_dsn: "postgres://u:pw@[bad"}
`, "", []string{p + ".nodes[1].dsn", p + ".nodes[2].replication_dsn"}, nil},
		{"a probe at a site of several nodes names none", `          - {kind: postgres, dsn: "host=h"}`, threeNodes, "",
			[]string{"groups[0].sites[1].probes[0].node", p + ".nodes[1]", p + ".nodes[2]"}, config.ErrRequired},
		{"a probe names a node of another site", `          - {kind: postgres, node: east-1}
          - {kind: postgres, node: west-a}
          - {kind: postgres, node: west-b}`, threeNodes, "", []string{"groups[0].sites[1].probes[0].node"}, config.ErrInvalid},
		{"a probe names no such node", `          - {kind: postgres, node: west-z}
          - {kind: postgres, node: west-a}
          - {kind: postgres, node: west-b}`, threeNodes, "", []string{"groups[0].sites[1].probes[0].node"}, config.ErrUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.ParseGroups([]byte(nodesGroup(tt.west, tt.nodes, tt.more)))
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
