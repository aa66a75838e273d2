package fsm_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

func phase(t *testing.T, f *fsm.FSM, kind witnessv1.TransitionKind, prepare, abort bool, token uint64, to string) fsm.Result {
	t.Helper()
	return mustApply(t, f, &witnessv1.TransitionCommand{Moves: []*witnessv1.Move{{Group: "app", ExpectedToken: token, ToSite: to}},
		Kind: kind, Prepare: prepare, Abort: abort, Reason: "test", AtUnixNano: 3})
}

// groupView is what a switchover's phases change.
type groupView struct {
	Active  string
	Token   uint64
	Pending string
	Last    string // the last history entry: from>to phase
}

func view(t *testing.T, f *fsm.FSM) groupView {
	t.Helper()
	g, _ := f.Group("app")
	st := g.GetStatus()
	h := st.GetHistory()[len(st.GetHistory())-1]
	return groupView{Active: st.GetActiveSite(), Token: st.GetToken(), Pending: st.GetPending().GetToSite(),
		Last: h.GetFromSite() + ">" + h.GetToSite() + " " + h.GetPhase()}
}

func TestSwitchoverPhases(t *testing.T) {
	type step struct {
		kind           witnessv1.TransitionKind
		prepare, abort bool
		token          uint64
		to             string
		err            error
		want           groupView
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"prepare then complete", []step{
			{kind: switchover, prepare: true, token: 1, to: "west", want: groupView{"east", 2, "west", "east>east prepare"}},
			{kind: switchover, prepare: true, token: 2, to: "west", err: fsm.ErrPending, want: groupView{"east", 2, "west", "east>east prepare"}},
			{kind: switchover, token: 2, to: "tiebreak", err: fsm.ErrNoPending, want: groupView{"east", 2, "west", "east>east prepare"}},
			{kind: switchover, token: 1, to: "west", err: fsm.ErrStaleToken, want: groupView{"east", 2, "west", "east>east prepare"}},
			{kind: switchover, token: 2, to: "west", want: groupView{"west", 3, "", "east>west "}},
		}},
		{"prepare then abort", []step{
			{kind: switchover, abort: true, token: 1, to: "east", err: fsm.ErrNoPending, want: groupView{"east", 1, "", ">east "}},
			{kind: switchover, prepare: true, token: 1, to: "west", want: groupView{"east", 2, "west", "east>east prepare"}},
			{kind: switchover, abort: true, token: 2, to: "west", err: fsm.ErrInvalid, want: groupView{"east", 2, "west", "east>east prepare"}},
			{kind: switchover, abort: true, token: 2, to: "east", want: groupView{"east", 3, "", "east>east abort"}},
			{kind: switchover, token: 3, to: "east", err: fsm.ErrSameSite, want: groupView{"east", 3, "", "east>east abort"}},
		}},
		{"a failover replaces a pending switchover", []step{
			{kind: switchover, prepare: true, token: 1, to: "west", want: groupView{"east", 2, "west", "east>east prepare"}},
			{kind: failover, token: 2, to: "tiebreak", want: groupView{"tiebreak", 3, "", "east>tiebreak "}},
		}},
		{"a failover has no phases", []step{
			{kind: failover, prepare: true, token: 1, to: "west", err: fsm.ErrInvalid, want: groupView{"east", 1, "", ">east "}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.New()
			put(t, f, spec("app", "east", "west", "tiebreak"))
			for i, s := range tc.steps {
				res := phase(t, f, s.kind, s.prepare, s.abort, s.token, s.to)
				if !errors.Is(res.Err, s.err) {
					t.Fatalf("step %d: err = %v, want %v", i, res.Err, s.err)
				}
				if diff := cmp.Diff(s.want, view(t, f)); diff != "" {
					t.Fatalf("step %d (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}
