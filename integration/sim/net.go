package sim

import (
	"context"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"time"
)

// Kinds of traffic, each with its own stream of fates per link.
const (
	kindRaft   = "raft"
	kindGossip = "gossip"
	kindRPC    = "rpc"
	kindTarget = "target"
)

// msgFaults are the message faults in effect on every link.
type msgFaults struct {
	delay time.Duration // extra delay, uniform in [0, delay]
	drop  float64       // chance a message is lost
	dup   float64       // chance a message is delivered twice
}

// fate is what happens to one message.
type fate struct {
	drop  bool
	dup   bool
	delay time.Duration
}

// baseLatency is every message's delay on a link without faults.
const baseLatency = time.Millisecond

// network is the simulated network between sites. A link is cut per
// direction between sites; a paused witness has every link to other sites
// cut. Within a site nothing is ever cut.
// A message's fate is drawn from a stream of its own per (from, to,
// kind), seeded by the schedule's seed, so the simulator's decisions do not
// depend on how Go interleaves the senders of different links.
type network struct {
	seed uint64

	mu     sync.Mutex
	siteOf map[string]string           // node -> site
	cut    map[[2]string]bool          // from site -> to site
	paused map[string]bool             // node
	faults msgFaults                   // now
	rngs   map[[3]string]*rand.Rand    // (from, to, kind) -> its stream
	slow   map[string]time.Duration    // target site -> extra latency
	broken map[string]bool             // target site -> its targets fail
	stats  map[string]int              // what happened, by kind of event
	hold   map[[2]string]time.Duration // (from, to) -> extra delay of this link
}

func newNetwork(seed uint64) *network {
	return &network{seed: seed, siteOf: map[string]string{}, cut: map[[2]string]bool{}, paused: map[string]bool{},
		rngs: map[[3]string]*rand.Rand{}, slow: map[string]time.Duration{}, broken: map[string]bool{}, stats: map[string]int{},
		hold: map[[2]string]time.Duration{}}
}

func (n *network) rng(from, to, kind string) *rand.Rand {
	k := [3]string{from, to, kind}
	r, ok := n.rngs[k]
	if !ok {
		h := fnv.New64a()
		h.Write([]byte(from + "\x00" + to + "\x00" + kind))
		r = rand.New(rand.NewPCG(n.seed, h.Sum64()))
		n.rngs[k] = r
	}
	return r
}

// up reports whether a message from node (or site) a reaches b now.
func (n *network) up(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.upLocked(from, to)
}

func (n *network) upLocked(from, to string) bool {
	fs, ts := n.site(from), n.site(to)
	if fs == ts {
		return true // a site's own network: a witness always reaches its site's targets
	}
	return !n.paused[from] && !n.paused[to] && !n.cut[[2]string{fs, ts}]
}

func (n *network) site(x string) string {
	if s, ok := n.siteOf[x]; ok {
		return s
	}
	return x
}

// fate draws the fate of the next message from one node to another.
func (n *network) fate(from, to, kind string) fate {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.rng(from, to, kind)
	// Always three draws, so a stream stays aligned whatever the faults.
	pDrop, pDup, pDelay := r.Float64(), r.Float64(), r.Float64()
	f := fate{delay: baseLatency + time.Duration(pDelay*float64(n.faults.delay)) + n.hold[[2]string{n.site(from), n.site(to)}]}
	if !n.upLocked(from, to) || pDrop < n.faults.drop {
		f.drop = true
		n.stats["dropped "+kind]++
		return f
	}
	f.dup = pDup < n.faults.dup
	if f.dup {
		n.stats["duplicated "+kind]++
	}
	n.stats["sent "+kind]++
	return f
}

// wait sleeps d on the bubble's clock, or until ctx ends.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pick draws a number in [0, n) from node's own stream of choices.
func (n *network) pick(node string, k int) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rng(node, "", "choice").IntN(k)
}
