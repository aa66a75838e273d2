package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/config"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// dnsGroup is a parsed group that manages the given records, "name type"
// each, with its TSIG secret in secretFile.
func dnsGroup(name, secretFile string, records ...[2]string) *witnessv1.GroupSpec {
	g := &witnessv1.GroupSpec{Name: name, Actions: &witnessv1.Actions{Dns: &witnessv1.DNSAction{
		Server: "10.0.0.53:53", Zone: "example.test.", TsigKeyName: "k.", TsigAlgorithm: "hmac-sha256", TsigSecretFile: secretFile,
	}}}
	for _, r := range records {
		g.Actions.Dns.Records = append(g.Actions.Dns.Records, &witnessv1.DNSRecord{Name: r[0], Type: r[1], Ttl: 30})
	}
	return g
}

func TestCheckOwnership(t *testing.T) {
	app := dnsGroup("app", "/k", [2]string{"app.example.test.", "A"}, [2]string{"app.example.test.", "AAAA"})
	tests := []struct {
		name              string
		existing, applied []*witnessv1.GroupSpec
		want              []string
	}{
		{"a group re-applied keeps its own records", []*witnessv1.GroupSpec{app}, []*witnessv1.GroupSpec{app}, nil},
		{"distinct names", []*witnessv1.GroupSpec{app},
			[]*witnessv1.GroupSpec{dnsGroup("web", "/k", [2]string{"www.example.test.", "A"})}, nil},
		{"another group takes an existing record", []*witnessv1.GroupSpec{app},
			[]*witnessv1.GroupSpec{dnsGroup("web", "/k", [2]string{"www.example.test.", "A"}, [2]string{"app.example.test.", "A"})},
			[]string{"groups[0].actions.dns.records[1].name"}},
		{"same name, other type: the fence record is shared", []*witnessv1.GroupSpec{app},
			[]*witnessv1.GroupSpec{dnsGroup("web", "/k", [2]string{"APP.example.test", "CNAME"})},
			[]string{"groups[0].actions.dns.records[0].name"}},
		{"two groups of one document", nil,
			[]*witnessv1.GroupSpec{app, dnsGroup("web", "/k", [2]string{"app.example.test.", "A"}), dnsGroup("api", "/k", [2]string{"app.example.test.", "TXT"})},
			[]string{"groups[1].actions.dns.records[0].name", "groups[2].actions.dns.records[0].name"}},
		{"a group moved its record to another: the old version no longer holds it",
			[]*witnessv1.GroupSpec{app, dnsGroup("web", "/k", [2]string{"www.example.test.", "A"})},
			[]*witnessv1.GroupSpec{dnsGroup("app", "/k", [2]string{"api.example.test.", "A"}), dnsGroup("web", "/k", [2]string{"app.example.test.", "A"})},
			nil},
		{"groups without DNS", []*witnessv1.GroupSpec{{Name: "db"}}, []*witnessv1.GroupSpec{{Name: "db2"}, app}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := config.CheckOwnership(tt.existing, tt.applied)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(tt.want, fields(t, err)); diff != "" {
				t.Errorf("field paths (-want +got):\n%s\nerror:\n%v", diff, err)
			}
			if !errors.Is(err, config.ErrOwned) {
				t.Errorf("errors.Is(err, ErrOwned) = false for %v", err)
			}
		})
	}
}

// A record may not sit under _witness., where fence records live.
func TestFenceNamesAreReserved(t *testing.T) {
	_, err := config.ParseGroups([]byte(`
groups:
  - name: app
    sites: [{name: east, probes: [{kind: tcp, address: "h:1"}]}, {name: west, probes: [{kind: tcp, address: "h:2"}]}]
    actions:
      dns:
        server: "ns:53"
        zone: example.test
        tsig: {name: k, secret_file: /k}
        records:
          - {name: app.example.test, ttl: 30, values: {east: 192.0.2.1, west: 192.0.2.2}}
          - {name: _witness.app.example.test, type: TXT, ttl: 30, values: {east: "token=9 site=east", west: "x"}}
`))
	if diff := cmp.Diff([]string{"groups[0].actions.dns.records[1].name"}, fields(t, err)); diff != "" {
		t.Errorf("field paths (-want +got):\n%s\nerror:\n%v", diff, err)
	}
	if !errors.Is(err, config.ErrInvalid) {
		t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
	}
	if diff := cmp.Diff("_witness.app.example.test.", config.FenceName("App.example.test")); diff != "" {
		t.Errorf("FenceName (-want +got):\n%s", diff)
	}
}

func TestCheckLocalFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.key", "c2VjcmV0LWtleS1ieXRlcw==\n", 0o600)
	empty := write("empty.key", " \n", 0o600)
	notBase64 := write("text.key", "not base64!", 0o600)
	missing := filepath.Join(dir, "missing.key")
	tests := []struct {
		name string
		spec *witnessv1.GroupSpec
		is   error
	}{
		{"readable base64", dnsGroup("app", good), nil},
		{"no DNS action", &witnessv1.GroupSpec{Name: "db"}, nil},
		{"missing", dnsGroup("app", missing), fs.ErrNotExist},
		{"empty", dnsGroup("app", empty), config.ErrUnreadable},
		{"not base64", dnsGroup("app", notBase64), config.ErrInvalid},
		{"a directory", dnsGroup("app", dir), config.ErrUnreadable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The group under test is second, after one that is fine.
			err := config.CheckLocalFiles([]*witnessv1.GroupSpec{dnsGroup("ok", good), tt.spec})
			if tt.is == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff([]string{"groups[1].actions.dns.tsig.secret_file"}, fields(t, err)); diff != "" {
				t.Errorf("field paths (-want +got):\n%s\nerror:\n%v", diff, err)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(err, %v) = false for %v", tt.is, err)
			}
		})
	}
}
