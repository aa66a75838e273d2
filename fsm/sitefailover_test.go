package fsm_test

import (
	"errors"
	"testing"

	"github.com/sitewitness/witness/fsm"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// TestSiteFailoverRefusesMovesAlone: an automatic failover of a site's
// groups in one entry checks each move on its own: a stale token or a
// disarmed group is refused alone, and the other groups move.
func TestSiteFailoverRefusesMovesAlone(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("a", "east", "west"), spec("b", "east", "west"), spec("c", "east", "west"), spec("d", "east", "west"))
	mustApply(t, f, &witnessv1.SetArmedCommand{Group: "d", Armed: false})
	res := move(t, f, failover,
		&witnessv1.Move{Group: "a", ExpectedToken: 1, ToSite: "west"},
		&witnessv1.Move{Group: "b", ExpectedToken: 99, ToSite: "west"}, // stale
		&witnessv1.Move{Group: "c", ExpectedToken: 3, ToSite: "west"},
		&witnessv1.Move{Group: "d", ExpectedToken: 4, ToSite: "west"}, // disarmed
	)
	if res.Err != nil {
		t.Fatalf("the entry was refused as a whole: %v", res.Err)
	}
	if !errors.Is(res.Refused["b"], fsm.ErrStaleToken) || !errors.Is(res.Refused["d"], fsm.ErrDisarmed) || len(res.Refused) != 2 {
		t.Errorf("refused %v, want b stale and d disarmed", res.Refused)
	}
	for name, want := range map[string]string{"a": "west", "b": "east", "c": "west", "d": "east"} {
		if site, _ := status(t, f, name); site != want {
			t.Errorf("%s active at %s, want %s", name, site, want)
		}
	}
	if len(res.Tokens) != 2 || res.Tokens["a"] == 0 || res.Tokens["c"] == 0 {
		t.Errorf("tokens %v, want new tokens for a and c", res.Tokens)
	}

	// When every move is refused, nothing changes and the entry is refused.
	res = move(t, f, failover, &witnessv1.Move{Group: "b", ExpectedToken: 99, ToSite: "west"})
	if !errors.Is(res.Err, fsm.ErrStaleToken) || len(res.Tokens) != 0 {
		t.Errorf("all moves stale: %v, tokens %v", res.Err, res.Tokens)
	}
}

// TestOperatorCommandsStayAllOrNothing: a command an operator asks for
// (a switchover of several groups, an operator's failover) still moves all
// of its groups or none.
func TestOperatorCommandsStayAllOrNothing(t *testing.T) {
	f := fsm.New()
	put(t, f, spec("a", "east", "west"), spec("b", "east", "west"))
	res := move(t, f, switchover,
		&witnessv1.Move{Group: "a", ExpectedToken: 1, ToSite: "west"},
		&witnessv1.Move{Group: "b", ExpectedToken: 99, ToSite: "west"})
	if !errors.Is(res.Err, fsm.ErrStaleToken) {
		t.Fatalf("switchover with a stale move: %v", res.Err)
	}
	if site, _ := status(t, f, "a"); site != "east" {
		t.Errorf("a moved to %s by a refused switchover", site)
	}
}
