package actions_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/actionstest"
	"github.com/sitewitness/witness/actions/dns"
	"github.com/sitewitness/witness/actions/dns/zoneserver"
	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// TestSiteFailoverDNSIsBatched: a site failover of many groups with
// records in one zone, committed as one entry and carried out by the
// reconciler with the real runner, switches every record with a few DNS
// updates, not one per group; and every group still records its own DNS
// step at its own token, though the results of many groups share an
// entry, and the steps that start together share a leadership check.
func TestSiteFailoverDNSIsBatched(t *testing.T) {
	const n = 120
	secret := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	keyFile := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(keyFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	zs, err := zoneserver.New(zoneserver.Config{Zone: "example.test.", Keys: map[string]string{"witness.": secret}})
	if err != nil {
		t.Fatal(err)
	}
	if err := zs.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zs.Close() })

	var specs []*witnessv1.GroupSpec
	name := func(i int) string { return fmt.Sprintf("svc-%04d", i) }
	for i := range n {
		specs = append(specs, &witnessv1.GroupSpec{
			Name:  name(i),
			Sites: []*witnessv1.SiteSpec{{Name: "east"}, {Name: "west"}},
			Actions: &witnessv1.Actions{
				Dns: &witnessv1.DNSAction{Server: zs.Addr(), Zone: "example.test.", TsigKeyName: "witness.", TsigAlgorithm: "hmac-sha256", TsigSecretFile: keyFile,
					Records: []*witnessv1.DNSRecord{{Name: name(i) + ".example.test.", Type: "A", Ttl: 0, Values: map[string]string{"east": "192.0.2.10", "west": "198.51.100.10"}}}},
			},
		})
	}
	// Each commit and leadership check takes a little time, as through
	// Raft.
	l := &actionstest.Leader{FSM: fsm.New(), ApplyDelay: 2 * time.Millisecond, VerifyDelay: time.Millisecond}
	if res, err := l.Apply(context.Background(), &witnessv1.PutGroupsCommand{Specs: specs}); err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	batcher := &dns.Batcher{}
	defer batcher.Close()
	runner := actions.Targets{DNS: batcher}
	dnsDone := func(site string) func() bool {
		return func() bool {
			for _, g := range l.FSM.Groups() {
				ok := false
				for _, s := range g.GetStatus().GetSteps() {
					ok = ok || (s.GetToken() == g.GetStatus().GetToken() && s.GetStep() == actions.StepDNS && s.GetOk())
				}
				if g.GetStatus().GetActiveSite() != site || !ok {
					return false
				}
			}
			return true
		}
	}
	defer func() {
		if t.Failed() {
			g, _ := l.FSM.Group(name(0))
			t.Logf("%v", g.GetStatus().GetSteps())
		}
	}()
	runUntil(t, l, runner, dnsDone("east"))

	// East is lost: every group moves to west in one entry.
	before := zs.Updates()
	entries := func() int { return l.Entries(fsm.TypeRecordStep) + l.Entries(fsm.TypeRecordSteps) }
	entriesBefore, verifiesBefore := entries(), l.Verifies()
	var moves []*witnessv1.Move
	for _, g := range l.FSM.Groups() {
		moves = append(moves, &witnessv1.Move{Group: g.GetSpec().GetName(), ExpectedToken: g.GetStatus().GetToken(), ToSite: "west"})
	}
	if res, err := l.Apply(context.Background(), &witnessv1.TransitionCommand{Moves: moves, Kind: witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER}); err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	runUntil(t, l, runner, dnsDone("west"))

	client := &dns.Client{Server: zs.Addr(), Zone: "example.test."}
	for _, g := range l.FSM.Groups() {
		a, err := client.Read(context.Background(), dns.Record{Name: g.GetSpec().GetName() + ".example.test.", Type: "A"})
		if err != nil || a.Site != "west" || a.Token != g.GetStatus().GetToken() || len(a.Values) != 1 || a.Values[0] != "198.51.100.10" {
			t.Fatalf("%s: server holds %s (%v), want west at token %d", g.GetSpec().GetName(), a, err, g.GetStatus().GetToken())
		}
	}
	if got := zs.Updates() - before; got > n/10 {
		t.Errorf("a site failover of %d groups sent %d DNS updates, want a few batches (at most %d)", n, got, n/10)
	}
	// Each group recorded its DNS step (and maybe settle): one entry per
	// group would be n and more.
	if got := entries() - entriesBefore; got > n/10 {
		t.Errorf("a site failover of %d groups recorded its step results in %d entries, want a few (at most %d)", n, got, n/10)
	}
	if got := l.Verifies() - verifiesBefore; got > n/4 {
		t.Errorf("a site failover of %d groups checked leadership %d times, want the steps that start together to share a check (at most %d)", n, got, n/4)
	}
	t.Logf("%d step results entries, %d leadership checks", entries()-entriesBefore, l.Verifies()-verifiesBefore)
}
