package cluster

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// When the leader reinstates by itself: only with reinstate auto, only
// after a move whose fence, promote, DNS and settle last ended well, the
// old site first, then the other sites with a database, each until it
// streams.
func TestAutoReinstateDue(t *testing.T) {
	ok := func(step, detail string) *witnessv1.StepResult {
		return &witnessv1.StepResult{Token: 5, Step: step, Ok: true, Detail: detail}
	}
	failed := func(step string) *witnessv1.StepResult { return &witnessv1.StepResult{Token: 5, Step: step} }
	plan := []*witnessv1.StepResult{ok("fence", ""), ok("promote", ""), ok("dns", ""), ok("settle", "")}
	group := func(reinstate string, south bool, steps ...*witnessv1.StepResult) *witnessv1.Group {
		pg := &witnessv1.PostgresAction{
			Dsn:       map[string]string{"east": "host=e", "west": "host=w"},
			DataDir:   map[string]string{"east": "/e", "west": "/w"},
			Reinstate: reinstate,
		}
		sites := []*witnessv1.SiteSpec{{Name: "east"}, {Name: "west"}}
		if south {
			pg.Dsn["south"], pg.DataDir["south"] = "host=s", "/s"
			sites = append(sites, &witnessv1.SiteSpec{Name: "south"})
		}
		return &witnessv1.Group{
			Spec: &witnessv1.GroupSpec{Name: "app", Sites: sites, Actions: &witnessv1.Actions{Postgres: pg, Dns: &witnessv1.DNSAction{}}},
			Status: &witnessv1.GroupStatus{ActiveSite: "west", Token: 5,
				History: []*witnessv1.Transition{{Token: 4, ToSite: "east"}, {Token: 5, FromSite: "east", ToSite: "west"}},
				Steps:   steps},
		}
	}
	with := func(extra ...*witnessv1.StepResult) []*witnessv1.StepResult {
		return append(append([]*witnessv1.StepResult{}, plan...), extra...)
	}
	for _, tt := range []struct {
		name string
		g    *witnessv1.Group
		want []string
	}{
		{"manual", group("manual", false, plan...), nil},
		{"plan done", group("auto", false, plan...), []string{"east"}},
		{"settle not yet", group("auto", false, plan[:3]...), nil},
		{"fence retried after the move", group("auto", false, with(failed("fence"))...), nil},
		{"east streams", group("auto", false, with(ok("reinstate:stream", "east: streaming from w:5432"))...), nil},
		{"east found streaming", group("auto", false, with(ok("reinstate:check", "east: already a streaming standby of w:5432"))...), nil},
		{"east's reinstate failed", group("auto", false, with(failed("reinstate:rewind"))...), []string{"east"}},
		{"other standbys too, old site first", group("auto", true, plan...), []string{"east", "south"}},
		{"south repointed", group("auto", true, with(ok("reinstate:repoint", "south: streaming from w:5432"))...), []string{"east"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, autoReinstateDue(tt.g)); diff != "" {
				t.Errorf("due (-want +got):\n%s", diff)
			}
		})
	}
	pending := group("auto", false, plan...)
	pending.Status.Pending = &witnessv1.PendingSwitchover{ToSite: "east"}
	if got := autoReinstateDue(pending); got != nil {
		t.Errorf("due during a switchover: %v", got)
	}
}
