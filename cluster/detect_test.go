package cluster

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// siteEndpoint is a site's service that a test can turn off and on.
type siteEndpoint struct {
	srv  *httptest.Server
	down atomic.Bool
}

func newSiteEndpoint(t *testing.T) *siteEndpoint {
	e := &siteEndpoint{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if e.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func TestSiteLossFailsOverOnceAndDoesNotFailBack(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	east, west := newSiteEndpoint(t), newSiteEndpoint(t)
	const failoverAfter = 2 * time.Second
	doc := fmt.Sprintf(`
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: http, url: "%s/health", interval: 200ms, timeout: 150ms}]}
      - {name: west, probes: [{kind: http, url: "%s/health", interval: 200ms, timeout: 150ms}]}
    policy: {failover_after: %s, fence_after: 500ms}
`, east.srv.URL, west.srv.URL, failoverAfter)
	_, leader := tc.leader()
	applyDoc(t, leader, doc)

	// Every witness sees both sites healthy before the outage.
	eventually(t, "every site healthy from every witness site", func() bool {
		e := leader.explain("app")
		for _, s := range e.GetSites() {
			for _, o := range s.GetObservers() {
				if o.GetState() != "healthy" {
					return false
				}
			}
			if len(s.GetObservers()) != 3 {
				return false
			}
		}
		return true
	})
	g, _ := leader.FSM().Group("app")
	before := g.GetStatus().GetToken()

	east.down.Store(true)
	start := time.Now()
	var took time.Duration
	eventually(t, "failover to west", func() bool {
		_, l := tc.leader()
		g, _ := l.FSM().Group("app")
		if g.GetStatus().GetActiveSite() == "west" {
			took = time.Since(start)
			return true
		}
		return false
	})
	t.Logf("outage to committed failover: %v (failover_after %v, detection 3 x 200ms)", took, failoverAfter)
	_, leader = tc.leader()
	g, _ = leader.FSM().Group("app")
	st := g.GetStatus()
	last := st.GetHistory()[len(st.GetHistory())-1]
	if st.GetToken() != before+1 || last.GetKind() != witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER || last.GetFromSite() != "east" || st.GetArmed() {
		t.Fatalf("after failover: token %d (want %d), last %v, armed %v", st.GetToken(), before+1, last, st.GetArmed())
	}
	if took < failoverAfter {
		t.Errorf("failed over after %v, before failover_after %v", took, failoverAfter)
	}

	// East comes back: the group is disarmed, nothing moves.
	east.down.Store(false)
	time.Sleep(3 * failoverAfter)
	g, _ = leader.FSM().Group("app")
	if g.GetStatus().GetToken() != before+1 || g.GetStatus().GetActiveSite() != "west" {
		t.Fatalf("after east returned: %s/%d, want west/%d", g.GetStatus().GetActiveSite(), g.GetStatus().GetToken(), before+1)
	}
	if e := leader.explain("app"); e.GetAction() != "none" {
		t.Errorf("explanation after return: %v", e)
	} else {
		t.Logf("why nothing happens now: %s", e.GetReason())
	}
}

// A site whose witnesses are gone still counts among the observer sites:
// with the tiebreaker stopped, its vote is missing, not dropped from the
// count, and west alone cannot take east down.
func TestStoppedSiteStillCountsAsObserver(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	east, west := newSiteEndpoint(t), newSiteEndpoint(t)
	doc := fmt.Sprintf(`
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: http, url: "%s/health", interval: 200ms, timeout: 150ms}]}
      - {name: west, probes: [{kind: http, url: "%s/health", interval: 200ms, timeout: 150ms}]}
    policy: {failover_after: 2s, fence_after: 500ms}
`, east.srv.URL, west.srv.URL)
	_, leader := tc.leader()
	applyDoc(t, leader, doc)
	eventually(t, "east to see every site, and west see east healthy", func() bool {
		e := tc.nodes[0].explain("app")
		return len(tc.nodes[0].observerSites()) == 3 && e != nil && strings.Contains(e.GetReason(), "east healthy")
	})

	tc.stop(2)
	eventually(t, "gossip at east to see the tiebreaker gone", func() bool {
		_, alive := tc.nodes[0].gossip.alive()[tc.cfgs[2].Name]
		return !alive
	})
	e := tc.nodes[0].explain("app")
	if e == nil {
		t.Fatal("no explanation of app")
	}
	for _, s := range e.GetSites() {
		var tiebreak *witnessv1.ObserverView
		for _, o := range s.GetObservers() {
			if o.GetSite() == "tiebreak" {
				tiebreak = o
			}
		}
		if tiebreak == nil || tiebreak.GetWitnesses() != 0 || tiebreak.GetState() != "unknown" {
			t.Errorf("site %s: tiebreak's view %v, want unknown from 0 witnesses", s.GetSite(), tiebreak)
		}
	}
	if got := e.GetReason(); !strings.Contains(got, "of 2 sites") {
		t.Errorf("reason %q does not count the tiebreaker among the 2 sites that judge east", got)
	}

	// Removed from the cluster, the tiebreaker no longer counts.
	_, leader = tc.leader()
	if err := leader.removeServer(tc.cfgs[2].Name); err != nil {
		t.Fatal(err)
	}
	eventually(t, "east to count east and west only", func() bool {
		return slices.Equal(tc.nodes[0].observerSites(), []string{"east", "west"})
	})
}
