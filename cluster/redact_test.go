package cluster

import (
	"strings"
	"testing"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

func TestRedact(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"postgres://app:s3cret@db.east:5432/app?sslmode=require", "postgres://app:REDACTED@db.east:5432/app?sslmode=require"},
		{"postgresql://app@db.east/app?password=s3cret", "postgresql://app@db.east/app?password=REDACTED"},
		{"host=db.east user=app password=s3cret dbname=app", "host=db.east user=app password=REDACTED dbname=app"},
		{"host=db.east password = 'a s3cret' user=app", "host=db.east password = REDACTED user=app"},
		{"host=db.east user=app passfile=/etc/witness/pgpass", "host=db.east user=app passfile=/etc/witness/pgpass"},
	} {
		if got := redactDSN(tt.in); got != tt.want {
			t.Errorf("redactDSN(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := redactURL("https://hooks.example/x?token=s3cret&team=ops"); strings.Contains(got, "s3cret") || !strings.Contains(got, "team=ops") {
		t.Errorf("webhook URL %q", got)
	}
}

// TestNoSecretInAnswers: a group applied with passwords in its DSNs and
// URLs answers Status, ListGroups and GetGroup without them, while the
// replica keeps them for the actions.
func TestNoSecretInAnswers(t *testing.T) {
	tc := newTestCluster(t, "east")
	_, n := tc.leader()
	c := dial(t, n.AdminAddr())
	doc := `
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: postgres, dsn: "host=127.0.0.1 port=1 user=app password=s3cret-1"}]}
      - {name: west, probes: [{kind: http, url: "http://u:s3cret-2@127.0.0.1:2/health"}]}
    actions:
      postgres:
        dsn: {east: "postgres://app:s3cret-3@127.0.0.1:1/app", west: "postgres://app:s3cret-4@127.0.0.1:2/app"}
        roles: [shop]
`
	if _, err := c.ApplyGroups(ctx(t), &witnessv1.ApplyGroupsRequest{Document: []byte(doc)}); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx(t), &witnessv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.ListGroups(ctx(t), &witnessv1.ListGroupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := c.GetGroup(ctx(t), &witnessv1.GetGroupRequest{Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{"Status": st.String(), "ListGroups": list.String(), "GetGroup": g.String()} {
		if strings.Contains(text, "s3cret") {
			t.Errorf("%s answers a secret: %s", what, text)
		}
		if !strings.Contains(text, redacted) {
			t.Errorf("%s: no %s in %s", what, redacted, text)
		}
	}
	kept, _ := n.fsm.Group("app")
	if !strings.Contains(kept.GetSpec().GetActions().GetPostgres().GetDsn()["east"], "s3cret-3") {
		t.Error("the replica lost the DSN's password")
	}
}

// A group with no secret in its spec is answered as held, not copied; one
// with a secret is copied, and the held one keeps it.
func TestRedactCopiesOnlyWhatHoldsSecrets(t *testing.T) {
	plain := &witnessv1.Group{Spec: &witnessv1.GroupSpec{Name: "plain", Sites: []*witnessv1.SiteSpec{
		{Name: "east", Probes: []*witnessv1.ProbeSpec{{Kind: "http", Url: "http://127.0.0.1:1/health?region=east"}, {Kind: "postgres", Dsn: "host=127.0.0.1 user=app"}}}}}}
	secret := &witnessv1.Group{Spec: &witnessv1.GroupSpec{Name: "secret", Sites: []*witnessv1.SiteSpec{
		{Name: "east", Probes: []*witnessv1.ProbeSpec{{Kind: "postgres", Dsn: "host=127.0.0.1 user=app password=s3cret"}}}}}}
	got := redactGroups([]*witnessv1.Group{plain, secret})
	if got[0] != plain {
		t.Error("a group without secrets was copied")
	}
	if got[1] == secret || strings.Contains(got[1].GetSpec().GetSites()[0].GetProbes()[0].GetDsn(), "s3cret") {
		t.Errorf("the group with a secret was not redacted in a copy: %v", got[1])
	}
	if !strings.Contains(secret.GetSpec().GetSites()[0].GetProbes()[0].GetDsn(), "s3cret") {
		t.Error("redacting changed the held group")
	}
}
