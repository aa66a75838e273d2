package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/sitewitness/witness/clock"
	"github.com/sitewitness/witness/policy"
	"github.com/sitewitness/witness/probes"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// gossipVersion is the version of the observation messages. A message of
// another version is ignored with a log line, never a crash. Version 1
// was JSON; 2 is the binary form of obscodec.go.
const gossipVersion = 2

// maxDetail bounds the detail text gossiped with an observation.
const maxDetail = 160

// obsMsg carries observations of one witness: a delta (one or a few
// changed observations) by broadcast, or the full vector by push/pull.
//
// Times are judged by the receiver's clock at receipt, not the sender's:
// a message says when it was made (Sent), so the age the sender measured
// (Sent - At) is taken from the time of receipt, and a sender's clock
// that is ahead or behind neither keeps a stale observation fresh nor
// makes a fresh one stale. Time in transit counts as fresh: a few gossip
// intervals at most.
//
// Every witness numbers its changes (Ver). A heartbeat, sent every second,
// says "all my observations are at least as fresh as FreshAt, and I am at
// version Ver": a receiver that has applied every version up to exactly
// that one takes the observations as refreshed. Deltas may arrive out of
// order (memberlist sends the least-sent messages first, so a new delta
// overtakes the retransmission of an older one): a receiver keeps the
// versions it got beyond a gap and counts them once the gap fills. One
// that truly missed a delta lets the sender's observations go stale
// (unknown, which never causes a failover) and, when two heartbeats in a
// row find it behind, asks that witness for a push/pull sync at once
// rather than waiting for a random one.
//
// Versions count from 0 again when a witness restarts, so every run of a
// witness has its own incarnation (Inc), larger than its earlier runs'. A
// receiver takes a larger incarnation as a new run that starts empty at
// version 0 and drops what the earlier run said; messages of an earlier
// run, arriving late, are ignored.
type obsMsg struct {
	V    int
	Node string
	Site string
	Inc  uint64
	Ver  uint64
	// From is the first version a batched delta carries (the changes
	// From..Ver); zero means Ver alone.
	From    uint64
	Full    bool
	Beat    bool
	FreshAt int64
	Sent    int64 // the sender's clock when it made the message
	Obs     []wireObs
}

type wireObs struct {
	Group    string
	Site     string
	Probe    string
	Since    int64
	At       int64
	Role     string
	LagBytes int64
	// LagSecond is a standby's replay lag in seconds.
	LagSecond float64
	WAL       uint64
	Replayed  uint64
	Detail    string
	// Node is the PostgreSQL node probed, of a group with several at a
	// site; empty for the site's only one.
	Node string
	// At and Since on the receiver's clock, the only ones it decides
	// with (see receipt).
	rAt, rSince int64
	// The small fields together, where they share a word.
	Timeline  uint32
	State     uint8
	DB        bool
	Streaming bool
}

// obsAside is what the view holds of an observation beside its policy
// form: when the observer checked it, by its own clock (what a later
// delta is compared with, and this witness's own full state sends), and
// by this witness's clock.
type obsAside struct{ at, rAt int64 }

type obsKey struct{ group, site, probe string }

// observations holds every witness's latest observations: this one's from
// its scheduler, the others' from gossip.
type observations struct {
	self, site string
	log        *slog.Logger
	clock      clock.Clock // nil: real time
	queue      *memberlist.TransmitLimitedQueue
	inbox      chan []byte
	// recovered, if set, is told when an observation of a site (this
	// witness's or another's) turns healthy after it was not.
	recovered func(site string)
	// inc is this run's incarnation, carried in every message it sends.
	inc uint64
	// dropped, if set, is told of each message dropped on a full inbox.
	dropped func()
	// reliable, if set, sends a batch too large for a gossip packet to
	// every other witness over TCP; it must not block (see obsbatch.go).
	reliable func(b []byte)
	// resync, if set, asks for a push/pull sync with a witness whose
	// changes this one missed; it must not block.
	resync func(node string)

	mu sync.RWMutex
	// byOf is, per observer, the slot of each of its observations in
	// view. The view holds them, in the policy's form, and aside the
	// rest of what was received: the observations are held once, and an
	// evaluation reads them where they are (see read) and copies
	// nothing. An observation changed is changed in its slot; a key
	// new is added at the end, a key dropped leaves its slot empty, and
	// until the next read sorts the view again (by observer name, then
	// group, site and probe) and closes the gaps, viewOK is false.
	byOf   map[string]map[obsKey]int32
	view   []policy.Observation
	aside  []obsAside
	viewOK bool
	empty  int               // slots emptied since the view was sorted
	sites  map[string]string // observer -> site
	ver    map[string]uint64 // observer -> version applied here (own: current)
	inSync map[string]bool   // observer -> every change up to ver applied
	// ahead is, per observer, the version ranges applied beyond a gap
	// after ver, merged and in order; behind counts the heartbeats in a
	// row that found ver short of the sender's.
	ahead   map[string][]verRange
	behind  map[string]int
	freshAt map[string]int64  // observer -> freshness vouched by its last heartbeat
	incOf   map[string]uint64 // observer -> incarnation applied here
	// outbox holds this witness's changes not yet sent, and sentVer the
	// version the messages sent so far cover: the next one carries
	// sentVer+1 up to the current version (see obsbatch.go).
	outbox  map[obsKey]wireObs
	sentVer uint64
	// primaries is the furthest position each (group, site) was seen at
	// as a primary, by this witness or any other; kept on every witness
	// so that a new leader knows where a lost primary stopped.
	primaries map[policy.GroupSite]policy.Position
	// names holds the group, site and probe names of this witness's
	// targets, replaced whole by setTargets: a received observation
	// takes its names from there (see intern) instead of a copy of
	// each per message.
	names atomic.Pointer[map[string]string]
}

// intern is the name held for b, if it is one of the targets' names.
func (s *observations) intern(b []byte) (string, bool) {
	m := s.names.Load()
	if m == nil {
		return "", false
	}
	v, ok := (*m)[string(b)]
	return v, ok
}

func newObservations(self, site string, log *slog.Logger) *observations {
	return &observations{
		self: self, site: site, log: log,
		inbox:   make(chan []byte, 1024),
		byOf:    map[string]map[obsKey]int32{self: {}},
		sites:   map[string]string{self: site},
		ver:     map[string]uint64{},
		inSync:  map[string]bool{},
		ahead:   map[string][]verRange{},
		behind:  map[string]int{},
		freshAt: map[string]int64{},
		incOf:   map[string]uint64{},

		primaries: map[policy.GroupSite]policy.Position{},
	}
}

// notePrimary keeps w's position when w sees a primary further than any
// seen before. s.mu must be held.
func (s *observations) notePrimary(w wireObs) {
	if !w.DB || w.Role != probes.RolePrimary || w.WAL == 0 {
		return
	}
	k := policy.GroupSite{Group: w.Group, Site: w.Site}
	p := policy.Position{Timeline: w.Timeline, WAL: w.WAL, At: time.Unix(0, w.rAt)}
	if p.Ahead(s.primaries[k]) {
		s.primaries[k] = p
	}
}

// primaryPositions copies the furthest positions seen of each primary.
func (s *observations) primaryPositions() map[policy.GroupSite]policy.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.primaries)
}

func toWire(o probes.Observation) wireObs {
	w := wireObs{Group: o.Group, Site: o.Site, Probe: o.Name, State: uint8(toPolicyState(o.State)), Since: o.Since.UnixNano(),
		At: o.CheckedAt.UnixNano(), Detail: o.Detail}
	if o.CheckedAt.IsZero() {
		w.At = 0
	}
	w.rAt, w.rSince = w.At, w.Since
	if len(w.Detail) > maxDetail {
		w.Detail = w.Detail[:maxDetail]
	}
	if o.Kind == probes.KindPostgres {
		w.DB, w.Role, w.LagBytes, w.LagSecond, w.Streaming = true, o.Role, o.LagBytes, o.LagSeconds, o.Streaming
		w.WAL, w.Replayed, w.Timeline = o.WAL, o.Replayed, o.Timeline
		w.Node = probeNode(o.Name)
	}
	return w
}

func toPolicyState(s probes.State) policy.State {
	switch s {
	case probes.StateHealthy:
		return policy.Healthy
	case probes.StateFailing:
		return policy.Failing
	}
	return policy.Unknown
}

// local records one of this witness's observations and queues its broadcast
// when the verdict changed. Called from the scheduler; never blocks.
func (s *observations) local(o probes.Observation) {
	w := toWire(o)
	k := obsKey{w.Group, w.Site, w.Probe}
	s.mu.Lock()
	prev, had := s.get(s.byOf[s.self], k)
	s.put(s.self, s.byOf[s.self], k, w)
	// A database's positions are news too: the data-loss guard measures
	// a standby against where its primary was last seen, by any witness.
	changed := !had || prev.State != w.State || prev.Streaming != w.Streaming || prev.WAL != w.WAL || prev.Replayed != w.Replayed
	s.notePrimary(w)
	if changed {
		s.ver[s.self]++
	}
	if changed {
		s.stageLocked(k, w)
	}
	s.mu.Unlock()
	if had && recovery(prev, w) {
		s.tellRecovered([]string{w.Site})
	}
}

// heartbeat broadcasts how fresh this witness's observations are.
func (s *observations) heartbeat(now time.Time) {
	s.mu.Lock()
	fresh := now.UnixNano()
	for _, slot := range s.byOf[s.self] {
		if at := s.aside[slot].at; at != 0 {
			fresh = min(fresh, at)
		}
	}
	ver := s.sentVer // what the receivers can have applied
	s.mu.Unlock()
	if s.queue == nil {
		return
	}
	s.queue.QueueBroadcast(broadcast(encodeObs(obsMsg{V: gossipVersion, Node: s.self, Site: s.site, Inc: s.inc, Ver: ver, Beat: true, FreshAt: fresh, Sent: now.UnixNano()})))
}

// setTargets drops this witness's observations of targets it no longer
// probes.
func (s *observations) setTargets(ts []probes.Target) {
	keep := map[obsKey]bool{}
	names := map[string]string{}
	for _, t := range ts {
		keep[obsKey{t.Group, t.Site, t.Name}] = true
		names[t.Group], names[t.Site], names[t.Name] = t.Group, t.Site, t.Name
	}
	s.names.Store(&names)
	s.mu.Lock()
	defer s.mu.Unlock()
	own := s.byOf[s.self]
	for k := range own {
		if !keep[k] {
			s.drop(own, k)
			s.ver[s.self]++
		}
	}
}

// full encodes this witness's whole vector for push/pull.
// It is encoded from the held observations, not a copy of them.
func (s *observations) full() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	msg := obsMsg{V: gossipVersion, Node: s.self, Site: s.site, Inc: s.inc, Ver: s.ver[s.self], Full: true, Sent: s.now().UnixNano()}
	own := s.byOf[s.self]
	var e obsEncoder
	e.header(&msg, len(own))
	for k := range own {
		w, _ := s.get(own, k)
		e.obs(&w)
	}
	return e.buf
}

// receive queues a gossiped message for run; it never blocks memberlist.
func (s *observations) receive(b []byte) {
	select {
	case s.inbox <- append([]byte(nil), b...):
	default:
		if s.dropped != nil {
			s.dropped()
		}
		s.log.Warn("observation inbox full: dropping a gossip message; push/pull will repair it")
	}
}

// run applies received messages until ctx ends.
func (s *observations) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-s.inbox:
			s.merge(b)
		}
	}
}

// recovery reports whether an observation turned healthy.
func recovery(prev, now wireObs) bool {
	return now.State == uint8(policy.Healthy) && prev.State != now.State
}

func (s *observations) tellRecovered(sites []string) {
	if s.recovered == nil {
		return
	}
	for _, site := range sites {
		s.recovered(site)
	}
}

func (s *observations) merge(b []byte) {
	s.tellRecovered(s.apply(b))
}

// apply applies one gossip message and returns the sites of the
// observations that it turned healthy.
func (s *observations) apply(b []byte) (recovered []string) {
	var msg obsMsg
	if err := decodeObs(b, &msg, s.intern); err != nil {
		if errors.Is(err, errObsVersion) {
			s.log.Warn("ignoring observation message of another version", keyErr, err)
		} else {
			s.log.Warn("ignoring undecodable observation message", keyErr, err)
		}
		return
	}
	if msg.Node == "" || msg.Node == s.self {
		return
	}
	local := receipt(msg.Sent, s.now().UnixNano())
	s.mu.Lock()
	defer s.mu.Unlock()
	// What vouches for the freshness of msg.Node's observations may
	// change below; the view follows.
	inSync, freshAt := s.inSync[msg.Node], s.freshAt[msg.Node]
	defer func() {
		if s.inSync[msg.Node] != inSync || s.freshAt[msg.Node] != freshAt {
			s.refresh(msg.Node)
		}
	}()
	switch inc := s.incOf[msg.Node]; {
	case msg.Inc < inc:
		return // from an earlier run of that witness
	case msg.Inc > inc:
		// A new run starts empty at version 0: what the earlier run said
		// no longer counts, and every change from version 1 on applies.
		s.incOf[msg.Node] = msg.Inc
		for k := range s.byOf[msg.Node] {
			s.drop(s.byOf[msg.Node], k)
		}
		delete(s.byOf, msg.Node)
		delete(s.freshAt, msg.Node)
		delete(s.ahead, msg.Node)
		delete(s.behind, msg.Node)
		s.ver[msg.Node], s.inSync[msg.Node] = 0, true
	}
	if site, ok := s.sites[msg.Node]; !ok || site != msg.Site {
		s.sites[msg.Node] = msg.Site
		s.viewOK = false
	}
	switch {
	case msg.Beat:
		s.beatLocked(msg, local)
		return
	case msg.Full:
		if msg.Ver < s.ver[msg.Node] && s.inSync[msg.Node] {
			return // an older full state than what we hold
		}
		if !s.inSync[msg.Node] || len(s.ahead[msg.Node]) > 0 {
			s.log.Info("observations of a witness in sync again after a full sync", "from", msg.Node, "version", msg.Ver)
		}
		// Deltas beyond the full state were applied before it and are
		// overwritten by it: they no longer count as applied.
		delete(s.ahead, msg.Node)
		s.ver[msg.Node], s.inSync[msg.Node] = msg.Ver, true
	default:
		from := msg.From
		if from == 0 {
			from = msg.Ver
		}
		if msg.Ver > s.ver[msg.Node] && s.inSync[msg.Node] {
			s.ahead[msg.Node] = append(s.ahead[msg.Node], verRange{from, msg.Ver})
			s.advanceLocked(msg.Node)
		}
	}
	m := s.byOf[msg.Node]
	if m == nil {
		m = map[obsKey]int32{}
		s.byOf[msg.Node] = m
	}
	// A full state replaces the observer's observations in place: each
	// key sent keeps its slot in the view, and the keys it no longer
	// sends are dropped after.
	for _, w := range msg.Obs {
		k := obsKey{w.Group, w.Site, w.Probe}
		old, had := s.get(m, k)
		if had && old.At > w.At && !msg.Full {
			continue // an older delta arriving late
		}
		if had && recovery(old, w) {
			recovered = append(recovered, w.Site)
		}
		w.rAt, w.rSince = local(w.At), local(w.Since)
		if w.At == 0 {
			w.rAt = 0
		}
		s.put(msg.Node, m, k, w)
		s.notePrimary(w)
	}
	// A full state made by full never names a key twice, so it named
	// every key held when it sent as many as are held.
	if msg.Full && len(m) != len(msg.Obs) {
		sent := make(map[obsKey]bool, len(msg.Obs))
		for _, w := range msg.Obs {
			sent[obsKey{w.Group, w.Site, w.Probe}] = true
		}
		for k := range m {
			if !sent[k] {
				s.drop(m, k)
			}
		}
	}
	return recovered
}

func (s *observations) now() time.Time { return clock.Or(s.clock).Now() }

// verRange is the versions From..To of one delta.
type verRange struct{ from, to uint64 }

// maxAhead bounds the ranges kept beyond a gap: more means the gap is a
// loss, not a late delta, and only a full sync repairs it.
const maxAhead = 64

// advanceLocked moves node's applied version over the ranges that now
// follow it without a gap, and keeps the others merged in order. s.mu is
// held.
func (s *observations) advanceLocked(node string) {
	rs := s.ahead[node]
	slices.SortFunc(rs, func(a, b verRange) int { return cmp.Compare(a.from, b.from) })
	ver := s.ver[node]
	kept := rs[:0]
	for _, r := range rs {
		switch {
		case r.to <= ver:
		case r.from <= ver+1:
			ver = r.to
		case len(kept) > 0 && r.from <= kept[len(kept)-1].to+1:
			kept[len(kept)-1].to = max(kept[len(kept)-1].to, r.to)
		default:
			kept = append(kept, r)
		}
	}
	// A range kept before ver moved may follow it now.
	for len(kept) > 0 && kept[0].from <= ver+1 {
		ver = max(ver, kept[0].to)
		kept = kept[1:]
	}
	s.ver[node] = ver
	switch {
	case len(kept) == 0:
		delete(s.ahead, node)
	case len(kept) > maxAhead:
		s.log.Info("observations of a witness out of sync: waiting for a full sync", "from", node, "version", ver)
		delete(s.ahead, node)
		s.inSync[node] = false
	default:
		s.ahead[node] = slices.Clone(kept)
	}
}

// beatLocked applies a heartbeat: the sender's observations are as fresh
// as it says when every version up to the one it has sent is applied
// here. Two heartbeats in a row that find this witness behind mean a
// delta was lost, not late: ask for a sync with the sender. s.mu is held.
func (s *observations) beatLocked(msg obsMsg, local func(int64) int64) {
	node := msg.Node
	if s.inSync[node] && s.ver[node] == msg.Ver {
		s.freshAt[node] = local(msg.FreshAt)
		delete(s.behind, node)
		return
	}
	if s.inSync[node] && s.ver[node] > msg.Ver {
		return // a full sync brought changes the sender has not yet gossiped
	}
	s.behind[node]++
	if s.behind[node] < 2 {
		return
	}
	delete(s.behind, node)
	s.log.Info("observations of a witness behind its heartbeats: asking it for a sync", "from", node, "have", s.ver[node], "sent", msg.Ver, "in_sync", s.inSync[node])
	if s.resync != nil {
		s.resync(node)
	}
}

// receipt returns what turns a time of a message made at sent, by the
// sender's clock, into the receiver's clock, received at now: now less
// the age the sender measured. A message that says no sent time (an
// older witness) keeps its sender's times.
func receipt(sent, now int64) func(t int64) int64 {
	if sent == 0 {
		return func(t int64) int64 { return t }
	}
	return func(t int64) int64 { return now - max(sent-t, 0) }
}

// put holds w under k in m, node's observations: in its slot when k was
// there, in a new slot at the end of the view when k is new. s.mu is held
// for writing.
func (s *observations) put(node string, m map[obsKey]int32, k obsKey, w wireObs) {
	o, a := s.policyObs(node, w), obsAside{at: w.At, rAt: w.rAt}
	if slot, had := m[k]; had {
		s.view[slot], s.aside[slot] = o, a
		return
	}
	if s.empty > len(s.view)/2 {
		// Keys that come and go with no read between (a witness that
		// restarts again and again) must not grow the view for good.
		s.build()
	}
	m[k] = int32(len(s.view))
	s.view, s.aside = append(s.view, o), append(s.aside, a)
	s.viewOK = false
}

// get is the observation held under k in m, as it was received: its
// times are the observer's, but for Since, which is this witness's
// (rSince) and the observer's only for this witness's own. s.mu is held.
func (s *observations) get(m map[obsKey]int32, k obsKey) (wireObs, bool) {
	slot, ok := m[k]
	if !ok {
		return wireObs{}, false
	}
	o, a := &s.view[slot], s.aside[slot]
	w := wireObs{Group: o.Group, Site: o.Site, Probe: k.probe, Since: o.Since.UnixNano(), At: a.at, Role: o.Role, LagBytes: o.LagBytes,
		LagSecond: o.LagSeconds, WAL: o.WAL, Replayed: o.Replayed, Detail: o.Detail, Node: o.Node, rAt: a.rAt,
		Timeline: o.Timeline, State: uint8(o.State), DB: o.IsDatabase, Streaming: o.Streaming}
	w.rSince = w.Since
	return w, true
}

// drop lets go of the observation held under k in m: its slot is emptied,
// and the next read closes the gap before the view is read. s.mu is held
// for writing.
func (s *observations) drop(m map[obsKey]int32, k obsKey) {
	slot, ok := m[k]
	if !ok {
		return
	}
	s.view[slot], s.aside[slot] = policy.Observation{}, obsAside{}
	delete(m, k)
	s.empty++
	s.viewOK = false
}

// refresh sets again the CheckedAt of node's observations in the view,
// after what vouches for their freshness (freshAt, inSync) changed. s.mu
// is held for writing.
func (s *observations) refresh(node string) {
	for _, slot := range s.byOf[node] {
		s.view[slot].CheckedAt = s.checkedAt(node, s.aside[slot].rAt)
	}
}

// checkedAt is when an observation of node checked at rAt (this witness's
// clock) was last vouched for: its own check, or for another witness in
// sync, its last heartbeat if later. s.mu is held.
func (s *observations) checkedAt(node string, rAt int64) time.Time {
	at := rAt
	if node != s.self && s.inSync[node] {
		at = max(at, s.freshAt[node])
	}
	if at == 0 {
		return time.Time{}
	}
	return time.Unix(0, at)
}

// policyObs is w, an observation of node, in the policy's form. s.mu is
// held.
func (s *observations) policyObs(node string, w wireObs) policy.Observation {
	return policy.Observation{Observer: node, ObserverSite: s.sites[node], Group: w.Group, Site: w.Site, State: policy.State(w.State),
		Since: time.Unix(0, w.rSince), CheckedAt: s.checkedAt(node, w.rAt), IsDatabase: w.DB, Role: w.Role, LagBytes: w.LagBytes,
		LagSeconds: w.LagSecond, Streaming: w.Streaming, WAL: w.WAL, Replayed: w.Replayed, Timeline: w.Timeline, Detail: w.Detail, Node: w.Node}
}

// build sorts the view again, by observer name, then group, site and
// probe, without the empty slots, and gives every observation its new
// slot; it refreshes what depends on the observer (its site, the
// freshness its heartbeats vouch for). s.mu is held for writing.
func (s *observations) build() {
	total := 0
	for _, m := range s.byOf {
		total += len(m)
	}
	view := make([]policy.Observation, 0, total)
	aside := make([]obsAside, 0, total)
	var keys []obsKey
	for _, node := range slices.Sorted(maps.Keys(s.byOf)) {
		m := s.byOf[node]
		keys = slices.AppendSeq(keys[:0], maps.Keys(m))
		slices.SortFunc(keys, func(a, b obsKey) int {
			return cmp.Or(strings.Compare(a.group, b.group), strings.Compare(a.site, b.site), strings.Compare(a.probe, b.probe))
		})
		site := s.sites[node]
		for _, k := range keys {
			slot := m[k]
			o, a := s.view[slot], s.aside[slot]
			o.ObserverSite, o.CheckedAt = site, s.checkedAt(node, a.rAt)
			m[k] = int32(len(view))
			view, aside = append(view, o), append(aside, a)
		}
	}
	s.view, s.aside, s.empty, s.viewOK = view, aside, 0, true
}

// read calls f with every observation held, in the policy's form: by
// observer name, then group, site and probe, so each (group, site)'s
// observations come in observer order, which is all the policy's
// counting sort by group keeps. f runs under s.mu (the view is not
// copied): it must not keep the slice nor call into s, and changes of
// observations wait until it returns.
func (s *observations) read(f func([]policy.Observation)) {
	s.mu.RLock()
	if s.viewOK {
		defer s.mu.RUnlock()
		f(s.view)
		return
	}
	s.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.viewOK {
		s.build()
	}
	f(s.view)
}

// snapshot is a copy of what read gives.
func (s *observations) snapshot() []policy.Observation {
	var out []policy.Observation
	s.read(func(v []policy.Observation) { out = slices.Clone(v) })
	return out
}

type broadcast []byte

func (b broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b broadcast) Message() []byte                       { return b }
func (b broadcast) Finished()                             {}

// probeSpec converts a replicated probe spec to the probes package's.
func probeSpec(p *witnessv1.ProbeSpec) probes.Spec {
	s := probes.Spec{
		Kind:             probes.Kind(p.GetKind()),
		Interval:         time.Duration(p.GetIntervalMs()) * time.Millisecond,
		Timeout:          time.Duration(p.GetTimeoutMs()) * time.Millisecond,
		FailThreshold:    int(p.GetFailThreshold()),
		RecoverThreshold: int(p.GetRecoverThreshold()),
	}
	switch s.Kind {
	case probes.KindHTTP:
		s.HTTP = &probes.HTTPSpec{URL: p.GetUrl(), StatusMin: int(p.GetExpectStatusMin()), StatusMax: int(p.GetExpectStatusMax()), BodyContains: p.GetBodyContains(), CAFile: p.GetCaFile()}
	case probes.KindTCP:
		s.TCP = &probes.TCPSpec{Address: p.GetAddress()}
	case probes.KindDNS:
		s.DNS = &probes.DNSSpec{Server: p.GetServer(), Name: p.GetQueryName(), Type: p.GetQueryType(), Expect: p.GetExpect()}
	case probes.KindPostgres:
		s.Postgres = &probes.PostgresSpec{DSN: p.GetDsn(), Role: p.GetRole()}
	case probes.KindExec:
		s.Exec = &probes.ExecSpec{Command: p.GetCommand(), Args: p.GetArgs()}
	}
	return s.WithDefaults()
}

// probeName names the i-th probe p of a site: "0-http"; a probe of one
// of several PostgreSQL nodes at the site says which: "1-postgres@west-b".
func probeName(i int, p *witnessv1.ProbeSpec) string {
	if p.GetNode() != "" {
		return fmt.Sprintf("%d-%s@%s", i, p.GetKind(), p.GetNode())
	}
	return fmt.Sprintf("%d-%s", i, p.GetKind())
}

// probeNode is the node a probe name says, or "".
func probeNode(name string) string {
	_, node, _ := strings.Cut(name, "@")
	return node
}

// targets lists every probe of every group at every site.
func targets(groups []*witnessv1.Group) []probes.Target {
	var out []probes.Target
	for _, g := range groups {
		for _, site := range g.GetSpec().GetSites() {
			for i, p := range site.GetProbes() {
				out = append(out, probes.Target{Group: g.GetSpec().GetName(), Site: site.GetName(), Name: probeName(i, p), Spec: probeSpec(p)})
			}
		}
	}
	return out
}

// probeLoop runs the scheduler and keeps its targets in step with the
// replicated groups.
func (n *Node) probeLoop() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := n.sched.Run(n.ctx); err != nil {
			n.log.Error("probe scheduler", keyErr, err)
		}
	}()
	defer func() { <-done }()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var applied uint64
	// Identical probes of many groups run once for all of them.
	shared := &probes.Shared{Clock: n.clock}
	for {
		// The targets come from the specs alone: step results and
		// transitions do not rebuild 20,000 of them.
		if idx := n.fsm.SpecGeneration(); idx != applied {
			ts, err := shared.Targets(n.probeTargets())
			if err == nil {
				err = n.sched.SetTargets(ts)
			}
			if err != nil {
				n.log.Error("probe targets", keyErr, err)
			} else {
				n.obs.setTargets(ts)
				applied = idx
			}
		}
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// live lists the witnesses gossip sees alive, this one included.
func (n *Node) live() []policy.Witness {
	out := []policy.Witness{{Name: n.cfg.Name, Site: n.cfg.Site}}
	if n.gossip == nil {
		return out
	}
	for name, p := range n.gossip.alive() {
		if name != n.cfg.Name {
			out = append(out, policy.Witness{Name: name, Site: p.Meta.Site})
		}
	}
	return out
}

// observerSites are the configured observer sites over which the policy
// counts its majorities: the sites of the witnesses in the Raft
// configuration, also those gone now (their sites are kept in data_dir).
// A witness removed from the cluster no longer counts.
func (n *Node) observerSites() []string {
	members := map[string]bool{}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			members[string(s.ID)] = true
		}
	}
	var out []string
	for name, site := range n.sitesSeen() {
		if (len(members) == 0 || members[name]) && site != "" && !slices.Contains(out, site) {
			out = append(out, site)
		}
	}
	slices.Sort(out)
	return out
}

// evaluate runs the policy on what this witness sees now.
func (n *Node) evaluate(now time.Time) policy.Output {
	var out policy.Output
	n.withInput(now, func(in policy.Input) { out = policy.Evaluate(in) })
	return out
}

// decisions is evaluate without the per-site views (Decision.Sites is
// nil), which the leader's loop, evaluating every 250 ms, never reads.
func (n *Node) decisions(now time.Time) policy.Output {
	var out policy.Output
	n.withInput(now, func(in policy.Input) {
		in.DecisionsOnly = true
		out = policy.Evaluate(in)
	})
	return out
}

// primaryAt is where this witness knows the active primary of group
// (fresh observations, gossip, Raft), as a move records it.
func (n *Node) primaryAt(group string, now time.Time) *witnessv1.PrimaryPosition {
	g, ok := n.fsm.Group(group)
	if !ok {
		return nil
	}
	var p policy.Position
	n.withInput(now, func(in policy.Input) { p = policy.PrimaryAt(in, group) })
	return p.Proto(g.GetStatus().GetActiveSite())
}

// targetNode is the node of site that a move of group there promotes:
// the most advanced eligible of several, judged for j; "" for a site's
// only node, or when none is eligible (an operator's forced failover then
// promotes the site's first node).
func (n *Node) targetNode(group, site string, j policy.Judge) string {
	var node string
	n.withInput(n.clock.Now(), func(in policy.Input) { node, _, _ = policy.EligibleNode(in, group, site, j) })
	return node
}

// eligible reports whether site of group may take the group over now,
// judged for j, or why not.
func (n *Node) eligible(group, site string, j policy.Judge) (ok bool, why string) {
	n.withInput(n.clock.Now(), func(in policy.Input) { ok, why = policy.Eligible(in, group, site, j) })
	return ok, why
}

// withInput calls f with what the policy decides on, now. The
// observations are read where they are held (see observations.read): f
// must only decide, and keep nothing of in.Observations.
func (n *Node) withInput(now time.Time, f func(policy.Input)) {
	in := policy.Input{Now: now, Groups: n.fsm.Groups(), Live: n.live(), ObserverSites: n.observerSites(), Primaries: n.obs.primaryPositions()}
	n.obs.read(func(obs []policy.Observation) {
		in.Observations = obs
		f(in)
	})
}
