package sim

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

func group(site string, token uint64, history ...*witnessv1.Transition) *witnessv1.Group {
	return &witnessv1.Group{Spec: &witnessv1.GroupSpec{Name: theGroup}, Status: &witnessv1.GroupStatus{ActiveSite: site, Token: token, History: history}}
}

// The fake database refuses a lower token and never lowers its own; a
// second writable database is a violation.
func TestTargetsRefuseALowerTokenAndReportTwoWritable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{Seed: 1, Raft: time.Second, Dir: t.TempDir()})
		ctx := context.Background()
		r := runner{w: s.world, node: "tiebreak-1", dns: dnsSite}
		if err := r.Fence(ctx, group("west", 3), "east"); err != nil {
			t.Fatal(err)
		}
		if err := r.Promote(ctx, group("east", 2)); !errors.Is(err, errHigherToken) {
			t.Errorf("promote at 2 of a node fenced at 3: %v, want errHigherToken", err)
		}
		if d := s.world.dbs[theGroup]["east"]; d.token != 3 || d.writable() {
			t.Errorf("east after a refused promote: %s", d)
		}
		if len(s.violations) != 0 {
			t.Fatalf("violations before two writable: %v", s.violations)
		}
		if err := r.Promote(ctx, group("west", 3)); err != nil {
			t.Fatal(err)
		}
		if err := r.Promote(ctx, group("east", 3)); err != nil {
			t.Fatal(err)
		}
		if len(s.violations) != 1 || !strings.Contains(s.violations[0], "two writable") {
			t.Errorf("violations: %v, want one of two writable databases", s.violations)
		}
	})
}

// A failover needs a majority of the observer sites other than the old
// one to have seen it fail.
func TestFailoverWithoutAMajorityOfObserversIsAViolation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{Seed: 1, Raft: time.Second, Dir: t.TempDir()})
		n := s.nodes[0]
		fo := func(token uint64) *witnessv1.Transition {
			return &witnessv1.Transition{Token: token, FromSite: "east", ToSite: "west", Kind: witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER, AtUnixNano: time.Now().UnixNano()}
		}
		west := &checker{w: s.world, node: "west-1", observer: "west", group: theGroup, site: "east"}
		tiebreak := &checker{w: s.world, node: "tiebreak-1", observer: "tiebreak", group: theGroup, site: "east"}
		s.world.service[[2]string{theGroup, "east"}] = 1
		west.Check(context.Background())
		s.observe(n, group("west", 2, fo(2)))
		if len(s.violations) != 1 || !strings.Contains(s.violations[0], "only [west] of 2") {
			t.Fatalf("one observer site saw east fail: violations %v", s.violations)
		}
		time.Sleep(time.Second)
		west.Check(context.Background())
		tiebreak.Check(context.Background())
		s.observe(n, group("west", 3, fo(3)))
		if len(s.violations) != 1 {
			t.Errorf("both observer sites saw east fail, yet: %v", s.violations)
		}
	})
}

// A token means one site on every replica.
func TestATokenOfTwoSitesIsAViolation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{Seed: 1, Raft: time.Second, Dir: t.TempDir()})
		at := func(site string) *witnessv1.Transition {
			return &witnessv1.Transition{Token: 2, ToSite: site, Kind: witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER}
		}
		s.observe(s.nodes[0], group("west", 2, at("west")))
		s.observe(s.nodes[1], group("west", 2, at("west")))
		if len(s.violations) != 0 {
			t.Fatalf("violations: %v", s.violations)
		}
		s.observe(s.nodes[2], group("east", 2, at("east")))
		if len(s.violations) != 1 || !strings.Contains(s.violations[0], "token 2") {
			t.Errorf("violations: %v, want token 2 at two sites", s.violations)
		}
	})
}
