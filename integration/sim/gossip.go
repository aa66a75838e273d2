package sim

import (
	"context"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/sitewitness/witness/cluster"
)

// Gossip timing of the in-memory layer, as memberlist's LAN profile with
// Witness's settings.
const (
	gossipEvery      = 200 * time.Millisecond
	pushPullEvery    = 5 * time.Second
	suspicionTimeout = 4 // probe intervals without an ack before a member is dead
	maxBroadcast     = 1400
)

// gossipHub finds the current incarnation of each witness's gossip layer
// by address.
type gossipHub struct {
	net *network
	mu  sync.Mutex
	by  map[string]*memGossip
}

func (h *gossipHub) get(addr string) *memGossip {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.by[addr]
}

// memGossip is a gossip layer on the simulated network that behaves like
// memberlist in what Witness relies on: broadcasts reach the members seen
// alive, a full-state push/pull with one member every pushPullEvery and on
// every join, direct and indirect probes, and a member with no ack for a
// few probe intervals is dead (NotifyLeave) until it joins again.
type memGossip struct {
	hub  *gossipHub
	cfg  cluster.GossipConfig
	meta []byte

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	members map[string]*member // by name, never this one
	crashed bool               // Leave tells nobody: the process died
}

type member struct {
	name, addr string
	meta       []byte
	alive      bool
	lastAck    time.Time
}

func (h *gossipHub) start(cfg cluster.GossipConfig) (cluster.Gossip, error) {
	ctx, cancel := context.WithCancel(context.Background())
	g := &memGossip{hub: h, cfg: cfg, meta: cfg.Delegate.NodeMeta(512), ctx: ctx, cancel: cancel, members: map[string]*member{}}
	h.mu.Lock()
	h.by[cfg.Addr] = g
	h.mu.Unlock()
	g.wg.Add(1)
	go func() { defer g.wg.Done(); g.run() }()
	return g, nil
}

func (g *memGossip) node(name, addr string, meta []byte) *memberlist.Node {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return &memberlist.Node{Name: name, Addr: net.ParseIP(host), Port: uint16(p), Meta: meta}
}

// learn records peer as alive, telling Events when that is news.
func (g *memGossip) learn(name, addr string, meta []byte) {
	if name == g.cfg.Name {
		return
	}
	g.mu.Lock()
	m, ok := g.members[name]
	var join, update bool
	switch {
	case !ok:
		m = &member{name: name, addr: addr, meta: meta, alive: true}
		g.members[name] = m
		join = true
	case !m.alive:
		m.alive, m.addr, m.meta = true, addr, meta
		join = true
	case string(m.meta) != string(meta) || m.addr != addr:
		m.addr, m.meta = addr, meta
		update = true
	}
	m.lastAck = time.Now()
	g.mu.Unlock()
	switch {
	case join:
		g.cfg.Events.NotifyJoin(g.node(name, addr, meta))
	case update:
		g.cfg.Events.NotifyUpdate(g.node(name, addr, meta))
	}
}

func (g *memGossip) forget(name string) {
	g.mu.Lock()
	m, ok := g.members[name]
	if !ok || !m.alive {
		g.mu.Unlock()
		return
	}
	m.alive = false
	n := g.node(m.name, m.addr, m.meta)
	g.mu.Unlock()
	g.cfg.Events.NotifyLeave(n)
}

func (g *memGossip) alive() []*member {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*member
	for _, m := range g.members {
		if m.alive {
			c := *m
			out = append(out, &c)
		}
	}
	slices.SortFunc(out, func(a, b *member) int {
		if a.name < b.name {
			return -1
		}
		if a.name > b.name {
			return 1
		}
		return 0
	})
	return out
}

func (g *memGossip) run() {
	gossip := time.NewTicker(gossipEvery)
	defer gossip.Stop()
	probe := time.NewTicker(g.cfg.ProbeInterval)
	defer probe.Stop()
	pushPull := time.NewTicker(pushPullEvery)
	defer pushPull.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-gossip.C:
			g.gossip()
		case <-probe.C:
			g.probe()
		case <-pushPull.C:
			if ms := g.alive(); len(ms) > 0 {
				r := g.hub.net.pick(g.cfg.Name, len(ms))
				if p := g.hub.get(ms[r].addr); p != nil {
					g.exchange(p)
				}
			}
		}
	}
}

// gossip sends the queued broadcasts to every member seen alive.
func (g *memGossip) gossip() {
	msgs := g.cfg.Delegate.GetBroadcasts(2, maxBroadcast)
	if len(msgs) == 0 {
		return
	}
	for _, m := range g.alive() {
		p := g.hub.get(m.addr)
		f := g.hub.net.fate(g.cfg.Name, m.name, kindGossip)
		if p == nil || f.drop {
			continue
		}
		n := 1
		if f.dup {
			n = 2
		}
		for range n {
			time.AfterFunc(f.delay, func() {
				if p.ctx.Err() != nil {
					return
				}
				for _, b := range msgs {
					p.cfg.Delegate.NotifyMsg(b)
				}
			})
		}
	}
}

// reach reports whether a ping from a to b and its ack both arrive.
func (h *gossipHub) reach(a, b string) bool {
	return !h.net.fate(a, b, kindGossip).drop && !h.net.fate(b, a, kindGossip).drop
}

// probe pings every member seen alive, directly and else through up to
// three others, and declares dead those with no ack for a while.
func (g *memGossip) probe() {
	ms := g.alive()
	for _, m := range ms {
		if g.hub.get(m.addr) != nil && g.hub.reach(g.cfg.Name, m.name) {
			g.ack(m.name)
			continue
		}
		for _, via := range ms {
			if via.name != m.name && g.hub.get(via.addr) != nil && g.hub.get(m.addr) != nil &&
				g.hub.reach(g.cfg.Name, via.name) && g.hub.reach(via.name, m.name) {
				g.ack(m.name)
				break
			}
		}
	}
	deadline := time.Now().Add(-suspicionTimeout * g.cfg.ProbeInterval)
	for _, m := range g.alive() {
		if m.lastAck.Before(deadline) {
			g.forget(m.name)
		}
	}
}

func (g *memGossip) ack(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m, ok := g.members[name]; ok {
		m.lastAck = time.Now()
	}
}

// exchange is a push/pull with p: both learn each other and the members
// the other sees alive, and merge each other's full state. It reports
// whether it went through.
func (g *memGossip) exchange(p *memGossip) bool {
	there := g.hub.net.fate(g.cfg.Name, p.cfg.Name, kindGossip)
	back := g.hub.net.fate(p.cfg.Name, g.cfg.Name, kindGossip)
	if wait(g.ctx, there.delay) != nil {
		return false
	}
	if there.drop || p.ctx.Err() != nil {
		return false
	}
	p.learn(g.cfg.Name, g.cfg.Addr, g.meta)
	p.cfg.Delegate.MergeRemoteState(g.cfg.Delegate.LocalState(false), false)
	theirs := p.alive()
	state := p.cfg.Delegate.LocalState(false)
	if wait(g.ctx, back.delay) != nil || back.drop {
		return false
	}
	g.learn(p.cfg.Name, p.cfg.Addr, p.meta)
	for _, m := range theirs {
		if q := g.hub.get(m.addr); q != nil {
			g.learn(m.name, m.addr, q.meta)
		}
	}
	g.cfg.Delegate.MergeRemoteState(state, false)
	return true
}

func (g *memGossip) Join(addrs []string) (int, error) {
	n := 0
	for _, a := range addrs {
		if p := g.hub.get(a); p != nil && p != g && g.exchange(p) {
			n++
		}
	}
	if n == 0 {
		return 0, errUnreachable
	}
	return n, nil
}

func (g *memGossip) NumMembers() int { return len(g.alive()) + 1 }

func (g *memGossip) Leave(time.Duration) error {
	g.mu.Lock()
	crashed := g.crashed
	g.mu.Unlock()
	if crashed {
		return nil
	}
	for _, m := range g.alive() {
		if p := g.hub.get(m.addr); p != nil && !g.hub.net.fate(g.cfg.Name, m.name, kindGossip).drop {
			p.forget(g.cfg.Name)
		}
	}
	return nil
}

func (g *memGossip) Shutdown() error {
	g.cancel()
	g.wg.Wait()
	g.hub.mu.Lock()
	if g.hub.by[g.cfg.Addr] == g {
		delete(g.hub.by, g.cfg.Addr)
	}
	g.hub.mu.Unlock()
	return nil
}

// crash makes the next Leave silent, as a killed process says nothing.
func (g *memGossip) crash() {
	g.mu.Lock()
	g.crashed = true
	g.mu.Unlock()
}
