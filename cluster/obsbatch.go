package cluster

import (
	"sync"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
)

// Batched observation deltas. When a site fails, every group active there
// changes at once: a thousand groups are a thousand changes of this
// witness's vector within one probe interval. Sent one message each they
// overflow the gossip packets, reach the others out of order (which then
// wait for a push/pull to repair their copy) and arrive seconds apart,
// and the leader decides the groups of one outage in several entries.
// Instead the changes are staged in an outbox and flushed whenever
// memberlist gossips (every gossip interval): one message carries every
// change since the last flush, as versions From..Ver. A batch that does
// not fit in a gossip packet goes to every other witness over TCP.

// stageLocked puts the change of k, at version s.ver[s.self], in the
// outbox, replacing an unsent change of the same key. s.mu is held.
func (s *observations) stageLocked(k obsKey, w wireObs) {
	if s.outbox == nil {
		s.outbox = map[obsKey]wireObs{}
	}
	s.outbox[k] = w
}

// flush sends the outbox as one batched delta: through the broadcast
// queue when it fits in limit bytes, else over TCP (reliable); without
// reliable, in packets of limit bytes, which receivers may see out of
// order (push/pull repairs them).
func (s *observations) flush(limit int) {
	s.mu.Lock()
	if s.sentVer == s.ver[s.self] || s.queue == nil {
		s.mu.Unlock()
		return
	}
	// The message covers every version since the last one sent, also
	// those that changed nothing to send (a probe dropped by setTargets):
	// a receiver must not wait for a version nobody sends.
	msg := obsMsg{V: gossipVersion, Node: s.self, Site: s.site, Inc: s.inc, From: s.sentVer + 1, Ver: s.ver[s.self], Sent: s.now().UnixNano()}
	msg.Obs = make([]wireObs, 0, len(s.outbox))
	for _, w := range s.outbox {
		msg.Obs = append(msg.Obs, w)
	}
	if len(s.outbox) > 64 {
		// A map cleared keeps its room: after a burst (a site lost, 10,000
		// groups created) that would be room for every change of it.
		s.outbox = nil
	} else {
		clear(s.outbox)
	}
	s.sentVer = msg.Ver
	s.mu.Unlock()
	b := encodeObs(msg)
	if len(b) <= limit {
		s.queue.QueueBroadcast(broadcast(b))
		return
	}
	if s.reliable != nil {
		s.reliable(b)
		return
	}
	all := msg.Obs
	for len(all) > 0 {
		n := min(len(all), max(1, len(all)*limit/len(b)))
		part := msg
		part.Obs = all[:n]
		s.queue.QueueBroadcast(broadcast(encodeObs(part)))
		all = all[n:]
	}
}

// sendReliable returns the observations' reliable sender: it hands a large
// batch to one goroutine that sends it over TCP to every other member,
// in order; a batch that finds the previous one still being sent waits
// in a one-slot queue, replaced by a newer one (whose versions then leave
// a gap, which the receivers' next push/pull repairs).
func (n *Node) sendReliable(ml *atomic.Pointer[memberlist.Memberlist]) func([]byte) {
	slot := make(chan []byte, 1)
	var once sync.Once
	start := func() {
		if n.ctx.Err() != nil {
			return
		}
		n.wg.Add(1)
		go n.sendBatches(ml, slot)
	}
	return func(b []byte) {
		once.Do(start)
		for {
			select {
			case slot <- b:
				return
			default:
			}
			select {
			case <-slot: // drop the older one waiting
			default:
			}
		}
	}
}

// sendBatches sends each batch put in slot to every other member.
func (n *Node) sendBatches(ml *atomic.Pointer[memberlist.Memberlist], slot <-chan []byte) {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case b := <-slot:
			m := ml.Load()
			if m == nil {
				continue
			}
			for _, peer := range m.Members() {
				if peer.Name == n.cfg.Name {
					continue
				}
				if err := m.SendReliable(peer, b); err != nil {
					n.log.Debug("observation batch not sent", "peer", peer.Name, keyErr, err)
				}
			}
		}
	}
}
