package sim

import (
	"flag"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
)

var (
	flagMinimise = flag.Bool("minimise", false, "TestMinimise: shrink the schedule of -seed to the fewest events that still break the same invariant")
	flagTries    = flag.Int("tries", 4, "runs of each candidate schedule while minimising (a replay may take another path)")
)

// class names the invariant a violation broke: its first words, without
// the time and the details.
func class(v string) string {
	f := strings.Fields(v)
	if len(f) > 4 {
		f = f[1:4]
	}
	return strings.Join(f, " ")
}

// TestMinimise shrinks the schedule of -seed: it drops one event at a
// time, keeping a drop when the schedule without it still breaks the same
// invariant in one of -tries runs. With -v it prints the minimal schedule
// and how often it reproduces.
func TestMinimise(t *testing.T) {
	if !*flagMinimise || *flagSeed < 0 {
		t.Skip("minimises a failing seed: -minimise -seed N")
	}
	seed := uint64(*flagSeed)
	events := Schedule(seed, *flagFaults).Events
	run := func(evs []event) Result {
		var res Result
		synctest.Test(t, func(t *testing.T) {
			c := simConfig(t, seed)
			c.Events = slices.Clip(evs)
			if c.Events == nil {
				c.Events = []event{}
			}
			res = New(c).Run()
		})
		return res
	}
	var want string
	for range *flagTries {
		if r := run(events); len(r.Violations) > 0 {
			want = class(r.Violations[0])
			break
		}
	}
	if want == "" {
		t.Fatalf("seed %d broke nothing in %d runs", seed, *flagTries)
	}
	breaks := func(evs []event) (int, Result) {
		n := 0
		var last Result
		for range *flagTries {
			r := run(evs)
			if slices.ContainsFunc(r.Violations, func(v string) bool { return class(v) == want }) {
				n++
				last = r
			}
		}
		return n, last
	}
	for i := len(events) - 1; i >= 0; i-- {
		cand := slices.Delete(slices.Clone(events), i, i+1)
		if n, _ := breaks(cand); n > 0 {
			events = cand
		}
	}
	n, last := breaks(events)
	t.Logf("seed %d, %q, minimal schedule reproduces in %d of %d runs:\n%s", seed, want, n, *flagTries, report(seed, last))
}
