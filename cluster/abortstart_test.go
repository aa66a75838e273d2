package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// stoppedFencer is a fenceRecorder whose database can be a demoted
// primary; Unfence starts it.
type stoppedFencer struct {
	*fenceRecorder
	stopped atomic.Bool
}

func (f *stoppedFencer) database(g *witnessv1.Group, site string) actions.Database {
	return stoppedDB{f.db(g, site), f}
}

type stoppedDB struct {
	*recordedDB
	f *stoppedFencer
}

func (d stoppedDB) StoppedPrimary(context.Context) (bool, error) { return d.f.stopped.Load(), nil }

func (d stoppedDB) Unfence(ctx context.Context, token uint64) error {
	d.f.stopped.Store(false)
	return d.recordedDB.Unfence(ctx, token)
}

const abortGroup = `
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    policy: {failover_after: 1h, fence_after: 1500ms, mode: observe}
    actions:
      postgres: {dsn: {east: "host=east-db user=witness", west: "host=west-db user=witness"}, data_dir: {east: /pg/east, west: /pg/west}, roles: [app]}
`

// A switchover given up after its first phase demoted east's database
// leaves the group at east, whose database is stopped: east's witness
// starts it again as the primary, once, at the abort's token. A demoted
// database at the active site is left alone otherwise: while the
// switchover is pending, and at a token that is not an abort.
func TestWitnessStartsItsDemotedPrimaryAfterAnAbort(t *testing.T) {
	east := &stoppedFencer{fenceRecorder: &fenceRecorder{}}
	tc := newTestClusterWith(t, func(i int, o *Options) {
		if i == 0 {
			o.LocalDatabase = east.database
		}
	}, "east", "west", "tiebreak")
	_, leader := tc.leader()
	applyDoc(t, leader, abortGroup)
	eventually(t, "east to replicate the group", func() bool { _, ok := tc.nodes[0].FSM().Group("app"); return ok })
	east.stopped.Store(true)

	unfenced := func() []string {
		calls, _ := east.get()
		return slices.DeleteFunc(calls, func(c string) bool { return c[:7] != "unfence" })
	}
	time.Sleep(time.Second) // a few lease checks
	if u := unfenced(); len(u) != 0 {
		t.Fatalf("started at the group's first token, not after an abort: %v", u)
	}

	g, _ := leader.FSM().Group("app")
	move := func(abort bool, token uint64) (uint64, error) {
		cmd := &witnessv1.TransitionCommand{Kind: witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER, AtUnixNano: time.Now().UnixNano(), By: "test",
			Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: token, ToSite: "west"}}, Prepare: !abort, Abort: abort}
		if abort {
			cmd.Moves[0].ToSite = "east"
		}
		res, err := applyAtLeader(t, leader, cmd, false)
		if err == nil {
			err = res.Err
		}
		return res.Tokens["app"], err
	}
	prep, err := move(false, g.GetStatus().GetToken())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if u := unfenced(); len(u) != 0 {
		t.Fatalf("started while the switchover was pending: %v", u)
	}
	// The leader's own reconciler may give it up first (its fence of a
	// database that does not exist fails).
	if _, err := move(true, prep); err != nil && !errors.Is(err, fsm.ErrNoPending) && !errors.Is(err, fsm.ErrStaleToken) {
		t.Fatal(err)
	}
	eventually(t, "east to start its demoted database", func() bool { return len(unfenced()) == 1 })
	g, _ = tc.nodes[0].FSM().Group("app")
	if want := fmt.Sprintf("unfence host=east-db user=witness app@%d", g.GetStatus().GetToken()); unfenced()[0] != want {
		t.Errorf("start after the abort: %q, want %q", unfenced()[0], want)
	}
	time.Sleep(time.Second)
	if u := unfenced(); len(u) != 1 {
		t.Errorf("started more than once: %v", u)
	}
}

// startsHere: after an abort here, and after a creation here once the
// leader's promote step of it was allowed; never at a move to this site,
// where the stopped database may be an old primary left behind.
func TestStartsHereOnlyAfterAnAbortOrACreation(t *testing.T) {
	promote := func(token uint64, rule string, ok bool) *witnessv1.StepResult {
		return &witnessv1.StepResult{Token: token, Step: "promote", Rule: rule, Ok: ok}
	}
	group := func(active string, pending bool, last *witnessv1.Transition, steps ...*witnessv1.StepResult) *witnessv1.Group {
		st := &witnessv1.GroupStatus{ActiveSite: active, Token: last.GetToken(), Steps: steps,
			History: []*witnessv1.Transition{{Token: 1, ToSite: "east", Kind: witnessv1.TransitionKind_TRANSITION_KIND_INITIAL}, last}}
		if pending {
			st.Pending = &witnessv1.PendingSwitchover{ToSite: "west"}
		}
		return &witnessv1.Group{Spec: &witnessv1.GroupSpec{Name: "app"}, Status: st}
	}
	created := &witnessv1.Transition{Token: 9, ToSite: "east", Kind: witnessv1.TransitionKind_TRANSITION_KIND_INITIAL}
	failover := &witnessv1.Transition{Token: 9, FromSite: "west", ToSite: "east", Kind: witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER}
	aborted := &witnessv1.Transition{Token: 9, FromSite: "east", ToSite: "east", Kind: witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER, Phase: fsm.PhaseAbort}
	for _, tt := range []struct {
		name string
		g    *witnessv1.Group
		want string
	}{
		{"created, promote failed under its rule", group("east", false, created, promote(9, "fence_confirmed", false)), "group created here"},
		{"created, promote not run yet", group("east", false, created), ""},
		{"created, a promote of an older token", group("east", false, created, promote(1, "no_old_site", false)), ""},
		{"created at another site", group("west", false, created, promote(9, "fence_confirmed", false)), ""},
		{"failed over here", group("east", false, failover, promote(9, "lease_expired", false)), ""},
		{"switchover given up", group("east", false, aborted), "switchover given up"},
		{"switchover pending", group("east", true, aborted), ""},
	} {
		if got := startsHere(tt.g, "east"); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
