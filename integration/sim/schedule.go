package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/sitewitness/witness/cluster"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Kinds of scheduled events.
const (
	evIsolate    = "isolate"    // a site cut from the others, both ways
	evOneWay     = "one-way"    // messages from A to B lost, B to A pass
	evRing       = "ring"       // A and B cut from each other, both still reach the third site
	evHeal       = "heal"       // every partition ends
	evMessages   = "messages"   // delay, loss and duplication on every link
	evKill       = "kill"       // a witness crashes and restarts after Dur
	evPause      = "pause"      // a witness's links to other sites stop for Dur
	evFail       = "fail"       // the service at a site fails
	evBlind      = "blind"      // observer site A sees site B fail
	evFlap       = "flap"       // the service at a site flaps every P
	evSlow       = "slow"       // the targets at a site answer late
	evBroken     = "broken"     // the targets at a site fail every action
	evSwitchover = "switchover" // an operator switches the group over to A
	evRecreate   = "recreate"   // an operator deletes the group and applies it again
	evRearm      = "rearm"      // an operator re-arms the group
)

// event is one scheduled fault or operator action.
type event struct {
	At, Dur time.Duration
	Kind    string
	A, B    string
	Delay   time.Duration
	Drop    float64
	Dup     float64
}

func (e event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6.1fs %s", e.At.Seconds(), e.Kind)
	if e.A != "" {
		fmt.Fprintf(&b, " %s", e.A)
	}
	if e.B != "" {
		fmt.Fprintf(&b, " %s", e.B)
	}
	if e.Delay > 0 {
		fmt.Fprintf(&b, " delay<=%s", e.Delay)
	}
	if e.Drop > 0 || e.Dup > 0 {
		fmt.Fprintf(&b, " drop=%.2f dup=%.2f", e.Drop, e.Dup)
	}
	if e.Dur > 0 {
		fmt.Fprintf(&b, " for %.1fs", e.Dur.Seconds())
	}
	return b.String()
}

// Sched is the fault schedule of one seed.
type Sched struct {
	Seed   uint64
	Events []event
	// Clocks says each witness's clock (Clocks), for the printout.
	Clocks []string
}

// skew is one witness's clock: its rate against true time and its
// reading's offset.
type skew struct {
	Rate   float64
	Offset time.Duration
}

func (k skew) String() string {
	return fmt.Sprintf("clock %+.2f%% %+.3fs", (k.Rate-1)*100, k.Offset.Seconds())
}

// Clocks draws each witness's clock from seed: a rate within drift of
// true time and an offset within offset. It draws from a stream of its
// own, so that the events of a seed do not depend on the bounds.
func Clocks(seed uint64, drift float64, offset time.Duration) map[string]skew {
	r := rand.New(rand.NewPCG(seed, 0xc10c))
	out := map[string]skew{}
	for _, site := range sites {
		k := skew{Rate: 1}
		if drift > 0 {
			k.Rate = 1 + drift*(2*r.Float64()-1)
		}
		if offset > 0 {
			k.Offset = time.Duration(r.Int64N(int64(2*offset))) - offset
		}
		out[site+"-1"] = k
	}
	return out
}

func (s Sched) String() string {
	fence := "sql self-fence"
	if LocalDemotion(s.Seed) {
		fence = "local demotion (data_dir)"
	}
	lines := []string{fmt.Sprintf("seed %d, %s, %d events:", s.Seed, fence, len(s.Events))}
	if len(s.Clocks) > 0 {
		lines = append(lines, "  clocks: "+strings.Join(s.Clocks, ", "))
	}
	for _, e := range s.Events {
		lines = append(lines, "  "+e.String())
	}
	return strings.Join(lines, "\n")
}

// LocalDemotion reports whether the group of seed's schedules names a
// data_dir at each site, so that a witness demotes its own site's
// database locally (which the database cannot refuse) and the leader may
// promote by the lease rule; the other half run with the SQL fence only,
// where a promotion needs a confirmed fence. It leaves the schedule of
// events as it was.
func LocalDemotion(seed uint64) bool { return seed%2 == 1 }

// Schedule draws the fault schedule of seed over span of virtual time. It
// is a function of its arguments alone.
func Schedule(seed uint64, span time.Duration) Sched {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	n := 4 + r.IntN(int(span/(4*time.Second))+1)
	dur := func(lo, hi time.Duration) time.Duration {
		return (lo + time.Duration(r.Int64N(int64(hi-lo)))).Round(100 * time.Millisecond)
	}
	site := func() string { return sites[r.IntN(len(sites))] }
	other := func(a string) string {
		for {
			if b := site(); b != a {
				return b
			}
		}
	}
	node := func() string { return site() + "-1" }
	kinds := []struct {
		kind   string
		weight int
	}{
		{evIsolate, 6}, {evOneWay, 3}, {evRing, 3}, {evHeal, 2}, {evMessages, 4}, {evKill, 4}, {evPause, 3},
		{evFail, 8}, {evBlind, 3}, {evFlap, 3}, {evSlow, 2}, {evBroken, 2}, {evSwitchover, 2}, {evRecreate, 1}, {evRearm, 3},
	}
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	lastKill := map[string]time.Duration{}
	var evs []event
	for range n {
		e := event{At: time.Duration(r.Int64N(int64(span))).Round(100 * time.Millisecond)}
		x := r.IntN(total)
		for _, k := range kinds {
			if x < k.weight {
				e.Kind = k.kind
				break
			}
			x -= k.weight
		}
		switch e.Kind {
		case evIsolate:
			e.A, e.Dur = site(), dur(2*time.Second, 30*time.Second)
		case evOneWay, evRing:
			e.A = site()
			e.B, e.Dur = other(e.A), dur(2*time.Second, 30*time.Second)
		case evMessages:
			e.Delay = dur(0, 300*time.Millisecond)
			e.Drop, e.Dup = float64(r.IntN(30))/100, float64(r.IntN(20))/100
			e.Dur = dur(2*time.Second, 20*time.Second)
		case evKill:
			// A crash lasts less than fence_after: a witness killed while
			// its site is cut off fences nothing (docs/concepts.md), and
			// a restart judges its lease at once.
			e.A, e.Dur = node(), dur(200*time.Millisecond, 3*time.Second)
			if e.A == dnsSite+"-1" {
				// No database at tiebreak: its witness may stay down long.
				e.Dur = dur(200*time.Millisecond, 30*time.Second)
			}
			if last, ok := lastKill[e.A]; ok && e.At < last+40*time.Second && e.At+40*time.Second > last {
				e.Kind, e.Dur = evPause, dur(time.Second, 10*time.Second)
			} else {
				lastKill[e.A] = e.At
			}
		case evPause:
			e.A, e.Dur = node(), dur(time.Second, 15*time.Second)
		case evFail, evFlap:
			e.A, e.Dur = dbSites[r.IntN(len(dbSites))], dur(3*time.Second, 40*time.Second)
			if e.Kind == evFlap {
				e.Delay = dur(500*time.Millisecond, 6*time.Second)
			}
		case evBlind:
			e.B = dbSites[r.IntN(len(dbSites))]
			e.A, e.Dur = other(e.B), dur(3*time.Second, 40*time.Second)
		case evSlow, evBroken:
			e.A, e.Dur = site(), dur(time.Second, 20*time.Second)
			if e.Kind == evSlow {
				e.Delay = dur(200*time.Millisecond, 4*time.Second)
			}
		case evSwitchover:
			e.A = dbSites[r.IntN(len(dbSites))]
		}
		evs = append(evs, e)
	}
	slices.SortStableFunc(evs, func(a, b event) int { return int(a.At - b.At) })
	return Sched{Seed: seed, Events: evs}
}

// apply starts event e and returns what ends it, if it lasts.
func (s *Sim) apply(ctx context.Context, e event) func() {
	s.note("%s", e.String())
	switch e.Kind {
	case evIsolate:
		var links [][2]string
		for _, o := range sites {
			if o != e.A {
				links = append(links, [2]string{e.A, o}, [2]string{o, e.A})
			}
		}
		return s.partition(links)
	case evOneWay:
		return s.partition([][2]string{{e.A, e.B}})
	case evRing:
		return s.partition([][2]string{{e.A, e.B}, {e.B, e.A}})
	case evHeal:
		s.mu.Lock()
		clear(s.cuts)
		s.mu.Unlock()
		s.net.mu.Lock()
		clear(s.net.cut)
		s.net.mu.Unlock()
	case evMessages:
		s.net.mu.Lock()
		s.net.faults = msgFaults{delay: e.Delay, drop: e.Drop, dup: e.Dup}
		s.net.mu.Unlock()
		return func() {
			s.net.mu.Lock()
			s.net.faults = msgFaults{}
			s.net.mu.Unlock()
		}
	case evKill:
		n := s.byName(e.A)
		if n.node == nil {
			return nil
		}
		s.kill(n)
		return func() {
			if err := s.start(n); err != nil {
				s.violate("restart %s: %v", n.name, err)
			}
		}
	case evPause:
		s.net.mu.Lock()
		s.net.paused[e.A] = true
		s.net.mu.Unlock()
		return func() {
			s.net.mu.Lock()
			delete(s.net.paused, e.A)
			s.net.mu.Unlock()
		}
	case evFail:
		return s.worldFlag(func(w *world, on bool) { w.service[[2]string{theGroup, e.A}] += count(on) })
	case evBlind:
		return s.worldFlag(func(w *world, on bool) { w.blind[[3]string{e.A, theGroup, e.B}] += count(on) })
	case evFlap:
		return s.worldFlag(func(w *world, on bool) {
			if on {
				w.flap[[2]string{theGroup, e.A}] = e.Delay
			} else {
				delete(w.flap, [2]string{theGroup, e.A})
			}
		})
	case evSlow:
		s.net.mu.Lock()
		s.net.slow[e.A] = e.Delay
		s.net.mu.Unlock()
		return func() {
			s.net.mu.Lock()
			delete(s.net.slow, e.A)
			s.net.mu.Unlock()
		}
	case evBroken:
		s.net.mu.Lock()
		s.net.broken[e.A] = true
		s.net.mu.Unlock()
		return func() {
			s.net.mu.Lock()
			delete(s.net.broken, e.A)
			s.net.mu.Unlock()
		}
	case evSwitchover:
		s.operate(ctx, "switchover to "+e.A, func(ctx context.Context, n *cluster.Node) error {
			// As witnessctl: the token it expects is the one it read.
			g, _ := n.FSM().Group(theGroup)
			_, err := n.AdminServer().Switchover(ctx, &witnessv1.SwitchoverRequest{Group: theGroup, ToSite: e.A, ExpectedToken: g.GetStatus().GetToken(), By: "sim"})
			return err
		})
	case evRearm:
		s.operate(ctx, "rearm", func(ctx context.Context, n *cluster.Node) error {
			_, err := n.AdminServer().SetArmed(ctx, &witnessv1.SetArmedRequest{Group: theGroup, Armed: true, By: "sim"})
			return err
		})
	case evRecreate:
		if n := s.operator(); n != nil {
			node := n.node
			s.ops.Add(1)
			go func() {
				defer s.ops.Done()
				s.recreate(ctx, node)
			}()
		}
	}
	return nil
}

func (s *Sim) byName(name string) *simNode {
	for _, n := range s.nodes {
		if n.name == name {
			return n
		}
	}
	panic("sim: no witness " + name)
}

// partition cuts links (from site, to site) until the returned func.
func (s *Sim) partition(links [][2]string) func() {
	s.mu.Lock()
	s.net.mu.Lock()
	for _, l := range links {
		s.cuts[l]++
		s.net.cut[l] = true
	}
	s.net.mu.Unlock()
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.net.mu.Lock()
		for _, l := range links {
			if s.cuts[l] > 0 {
				s.cuts[l]--
			}
			if s.cuts[l] == 0 {
				delete(s.net.cut, l)
			}
		}
		s.net.mu.Unlock()
		s.mu.Unlock()
	}
}

func (s *Sim) worldFlag(set func(*world, bool)) func() {
	s.world.mu.Lock()
	set(s.world, true)
	s.world.mu.Unlock()
	return func() {
		s.world.mu.Lock()
		set(s.world, false)
		s.world.mu.Unlock()
	}
}

// operate runs an operator's request against a witness the seed picks,
// in the background, as witnessctl would, and logs its outcome.
func (s *Sim) operate(ctx context.Context, what string, fn func(context.Context, *cluster.Node) error) {
	n := s.operator()
	if n == nil {
		return
	}
	node := n.node
	s.ops.Add(1)
	go func() {
		defer s.ops.Done()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := fn(ctx, node); err != nil {
			s.saw("%s via %s refused: %v", what, n.name, err)
			return
		}
		s.saw("%s via %s done", what, n.name)
	}()
}

// recreate deletes the group and applies it again, stating as its
// active site the one an operator would: where the only writable
// database is, else where the group was.
func (s *Sim) recreate(ctx context.Context, n *cluster.Node) {
	g, ok := n.FSM().Group(theGroup)
	if !ok {
		return
	}
	active := g.GetStatus().GetActiveSite()
	s.world.mu.Lock()
	var writable []string
	for site, d := range s.world.dbs[theGroup] {
		if d.writable() {
			writable = append(writable, site)
		}
	}
	s.world.mu.Unlock()
	if len(writable) == 1 {
		active = writable[0]
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// A delete whose answer is lost may still have been committed.
	s.mu.Lock()
	s.deleted = true
	s.mu.Unlock()
	if _, err := n.AdminServer().DeleteGroup(cctx, &witnessv1.DeleteGroupRequest{Name: theGroup, By: "sim"}); err != nil {
		s.saw("delete via %s refused: %v", n.Name(), err)
		return
	}
	s.saw("deleted %s via %s", theGroup, n.Name())
	if err := s.applyGroups(ctx, n, active); err != nil {
		s.saw("re-create at %s refused: %v", active, err)
		return
	}
	s.mu.Lock()
	s.deleted = false
	s.mu.Unlock()
	s.saw("re-created %s at %s", theGroup, active)
}

// count is what a fault that starts (on) or ends adds to its count.
func count(on bool) int {
	if on {
		return 1
	}
	return -1
}
