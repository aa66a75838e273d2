package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// Defaults of a Batcher's zero fields.
const (
	// DefaultBatchNames bounds the records of one update.
	DefaultBatchNames = 200
	// DefaultBatchBytes bounds the size of one update: below the 64 KiB
	// of a DNS message over TCP, with room for the TSIG record.
	DefaultBatchBytes = 60000
	// DefaultBatchLinger is how long the first record of a batch waits
	// for others before the batch is read and sent.
	DefaultBatchLinger = 10 * time.Millisecond
	// DefaultBatchConns bounds the connections, and so the batches in
	// flight, per server, zone and key.
	DefaultBatchConns = 2
)

// Batcher switches the records of many groups in one zone with a few RFC
// 2136 updates instead of one per record: the requests that arrive
// together for the same server, zone and key are read over one reused
// TCP connection and sent as one update, with a prerequisite on every
// record's fence as read, bounded by size. An update is atomic: when the
// server refuses it because a fence changed (NXRRSET, YXRRSET, which do not
// say which one), or for its size, the batch is split in two, each half
// read again and sent on its own, until the stale record is alone and
// refused alone; the rest goes through.
//
// Each request gets the outcome Switch would have given it. A Batcher is
// safe for concurrent use; its zero value is ready. Its goroutines run
// only while requests are queued, and Close waits for them.
type Batcher struct {
	// MaxNames and MaxBytes bound one update; zero means DefaultBatchNames
	// and DefaultBatchBytes.
	MaxNames int
	MaxBytes int
	// Linger is how long a batch's first request waits for more; zero
	// means DefaultBatchLinger.
	Linger time.Duration
	// Conns bounds the batches in flight per server, zone and key; zero
	// means DefaultBatchConns.
	Conns int
	// Log receives one line per update sent; nil discards.
	Log *slog.Logger

	// afterRead, when set (by tests), runs between a batch's reads and
	// its update: a writer that changes a fence there makes the update stale.
	afterRead func()

	mu     sync.Mutex
	queues map[batchKey]*batchQueue
	wg     sync.WaitGroup
	stats  BatchStats
}

// BatchStats counts what a Batcher sent.
type BatchStats struct {
	// Updates is the update messages sent; Records the records they
	// carried; Splits the refused updates that were split.
	Updates, Records, Splits int
}

type batchKey struct {
	server, zone, keyName, algo, secret string
	timeout                             time.Duration
}

type batchQueue struct {
	client  *Client
	pending []*batchRequest
	workers int
}

type batchRequest struct {
	ctx   context.Context
	r     Record
	want  mdns.RR
	site  string
	token uint64
	done  chan batchResult // buffered: the worker never waits
}

type batchResult struct {
	out Outcome
	err error
}

// Switch is Client.Switch through the batcher: it returns once the batch
// carrying r has been answered.
func (b *Batcher) Switch(ctx context.Context, c *Client, r Record, site string, token uint64) (Outcome, error) {
	if token == 0 {
		return "", fmt.Errorf("switch %s: token 0: %w", r.Name, ErrInvalid)
	}
	if !validSite(site) {
		return "", fmt.Errorf("switch %s: bad site name %q: %w", r.Name, site, ErrInvalid)
	}
	want, err := r.rrFor(site)
	if err != nil {
		return "", err
	}
	if c.Key == nil {
		return "", fmt.Errorf("switch %s: no tsig key: %w", r.Name, ErrInvalid)
	}
	keyName, algo, secret, err := c.Key.parse()
	if err != nil {
		return "", err
	}
	if err := c.checkZone(want.Header().Name); err != nil {
		return "", err
	}
	if c.Server == "" {
		return "", fmt.Errorf("switch %s: no server: %w", r.Name, ErrInvalid)
	}
	req := &batchRequest{ctx: ctx, r: r, want: want, site: site, token: token, done: make(chan batchResult, 1)}
	key := batchKey{server: c.Server, zone: mdns.CanonicalName(c.Zone), keyName: keyName, algo: algo, secret: secret, timeout: c.Timeout}
	b.mu.Lock()
	if b.queues == nil {
		b.queues = map[batchKey]*batchQueue{}
	}
	q := b.queues[key]
	if q == nil {
		q = &batchQueue{client: &Client{Server: c.Server, Zone: c.Zone, Key: c.Key, Timeout: c.Timeout}}
		b.queues[key] = q
	}
	q.pending = append(q.pending, req)
	if q.workers < b.conns() {
		q.workers++
		b.wg.Add(1)
		go b.work(key, q)
	}
	b.mu.Unlock()
	select {
	case res := <-req.done:
		return res.out, res.err
	case <-ctx.Done():
		// The batch may still carry it: the step is idempotent and a
		// later one finds it switched (OutcomeUnchanged).
		return "", fmt.Errorf("switch %s: %w", r.Name, context.Cause(ctx))
	}
}

// Stats returns what the batcher has sent so far.
func (b *Batcher) Stats() BatchStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// Close waits for the batches in flight.
func (b *Batcher) Close() { b.wg.Wait() }

func (b *Batcher) conns() int {
	if b.Conns > 0 {
		return b.Conns
	}
	return DefaultBatchConns
}

func (b *Batcher) maxNames() int {
	if b.MaxNames > 0 {
		return b.MaxNames
	}
	return DefaultBatchNames
}

func (b *Batcher) maxBytes() int {
	if b.MaxBytes > 0 {
		return b.MaxBytes
	}
	return DefaultBatchBytes
}

func (b *Batcher) log() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.New(slog.DiscardHandler)
}

// work takes batches off q until it is empty, over one connection.
func (b *Batcher) work(key batchKey, q *batchQueue) {
	defer b.wg.Done()
	linger := b.Linger
	if linger <= 0 {
		linger = DefaultBatchLinger
	}
	s := &batchSession{b: b, c: q.client}
	defer s.close()
	for {
		time.Sleep(linger)
		b.mu.Lock()
		n := min(len(q.pending), b.maxNames())
		batch := q.pending[:n:n]
		q.pending = q.pending[n:]
		if n == 0 {
			q.workers--
			if q.workers == 0 && len(q.pending) == 0 {
				delete(b.queues, key)
			}
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		live := batch[:0:0]
		for _, req := range batch {
			if err := req.ctx.Err(); err != nil {
				req.done <- batchResult{err: fmt.Errorf("switch %s: %w", req.r.Name, context.Cause(req.ctx))}
				continue
			}
			live = append(live, req)
		}
		s.run(live)
	}
}

// batchSession is one worker's connection to the server.
type batchSession struct {
	b    *Batcher
	c    *Client
	conn *mdns.Conn
}

func (s *batchSession) close() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

func (s *batchSession) timeout() time.Duration {
	if s.c.Timeout > 0 {
		return s.c.Timeout
	}
	return DefaultTimeout
}

// exchange sends the query m over the session's connection, dialing it
// when needed. A connection the server closed (servers bound the queries
// of one connection) is dialed again once; a transport error drops it.
// Updates do not come here: each goes over its own connection (Client.
// exchange), since a TSIG-signed exchange on a reused connection would be
// signed as the continuation of the one before.
func (s *batchSession) exchange(m *mdns.Msg, op, name string) (*mdns.Msg, error, error) {
	timeout := s.timeout()
	mc := &mdns.Client{Net: "tcp", Timeout: timeout}
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		reused := s.conn != nil
		if s.conn == nil {
			conn, err := mc.DialContext(ctx, s.c.Server)
			if err != nil {
				cancel()
				return nil, nil, transportError(ctx, fmt.Sprintf("%s %s at %s", op, name, s.c.Server), err)
			}
			s.conn = conn
		}
		resp, _, err := mc.ExchangeWithConnContext(ctx, m, s.conn)
		if err == nil {
			cancel()
			return resp, nil, nil
		}
		s.close()
		if reused && attempt == 0 {
			cancel()
			continue
		}
		err = transportError(ctx, fmt.Sprintf("%s %s at %s", op, name, s.c.Server), err)
		cancel()
		return nil, nil, err
	}
}

// query is Client.query over the session's connection.
func (s *batchSession) query(name string, qtype uint16) ([]mdns.RR, error) {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	resp, verifyErr, err := s.exchange(m, "query", name)
	if err != nil {
		return nil, err
	}
	if err := responseError("query", name, resp, verifyErr); err != nil {
		var rc *RcodeError
		if !errors.As(err, &rc) || rc.Rcode != mdns.RcodeNameError {
			return nil, err
		}
	}
	if !resp.Authoritative {
		return nil, fmt.Errorf("query %s at %s: %w", name, s.c.Server, ErrNotAuthoritative)
	}
	var out []mdns.RR
	for _, rr := range resp.Answer {
		if h := rr.Header(); h.Rrtype == qtype && mdns.CanonicalName(h.Name) == name {
			out = append(out, rr)
		}
	}
	return out, nil
}

// read is Client.read over the session's connection.
func (s *batchSession) read(r Record) (state, error) {
	name, qtype, err := r.check()
	if err != nil {
		return state{}, err
	}
	var st state
	fences, err := s.query(r.FenceName(), mdns.TypeTXT)
	if err != nil {
		return state{}, err
	}
	switch len(fences) {
	case 0:
	case 1:
		f, err := ParseFence(joinTXT(fences[0]))
		if err != nil {
			return state{}, fmt.Errorf("read %s: %w", r.FenceName(), err)
		}
		st.HasFence, st.Token, st.Site, st.fence = true, f.Token, f.Site, fences[0]
	default:
		return state{}, fmt.Errorf("read %s: %d values, want one: %w", r.FenceName(), len(fences), ErrBadFence)
	}
	st.records, err = s.query(name, qtype)
	if err != nil {
		return state{}, err
	}
	return st, nil
}

func joinTXT(rr mdns.RR) string {
	var out string
	for _, t := range rr.(*mdns.TXT).Txt {
		out += t
	}
	return out
}

// pending is a request with its change, ready to send.
type pendingChange struct {
	req *batchRequest
	out Outcome
	ch  *recordChange
}

// run reads every request's record, answers those that need no update,
// and sends the others in updates bounded by size.
func (s *batchSession) run(reqs []*batchRequest) {
	var todo []pendingChange
	for _, req := range reqs {
		st, err := s.read(req.r)
		if err != nil {
			req.done <- batchResult{err: err}
			continue
		}
		out, ch, err := change(req.r, req.want, req.site, req.token, st)
		if err != nil || ch == nil {
			req.done <- batchResult{out: out, err: err}
			continue
		}
		todo = append(todo, pendingChange{req: req, out: out, ch: ch})
	}
	if s.b.afterRead != nil && len(todo) > 0 {
		s.b.afterRead()
	}
	for len(todo) > 0 {
		n := s.fit(todo)
		s.send(todo[:n])
		todo = todo[n:]
	}
}

// fit is how many of todo, at least one, one update can carry.
func (s *batchSession) fit(todo []pendingChange) int {
	m := new(mdns.Msg)
	m.SetUpdate(mdns.CanonicalName(s.c.Zone))
	for i, p := range todo {
		if i == s.b.maxNames() {
			return i
		}
		m.Answer = append(m.Answer, p.ch.prereq...)
		m.Ns = append(m.Ns, p.ch.updates...)
		if i > 0 && m.Len() > s.b.maxBytes() {
			return i
		}
	}
	return len(todo)
}

// send sends one update carrying every change of batch. A refusal that a
// smaller update may not meet (a changed fence, the size) splits it.
func (s *batchSession) send(batch []pendingChange) {
	name := batch[0].req.want.Header().Name
	m := new(mdns.Msg)
	m.SetUpdate(mdns.CanonicalName(s.c.Zone))
	for _, p := range batch {
		m.Answer = append(m.Answer, p.ch.prereq...)
		m.Ns = append(m.Ns, p.ch.updates...)
	}
	start := time.Now()
	resp, verifyErr, err := s.c.exchange(context.Background(), m, s.c.Key, "update", name)
	if err == nil {
		err = responseError("update", name, resp, verifyErr)
		if err == nil && resp.IsTsig() == nil {
			err = fmt.Errorf("update %s: the server's answer is not signed: %w", name, ErrTSIG)
		}
	}
	s.b.mu.Lock()
	s.b.stats.Updates++
	s.b.stats.Records += len(batch)
	split := len(batch) > 1 && splittable(err)
	if split {
		s.b.stats.Splits++
	}
	s.b.mu.Unlock()
	s.b.log().Debug("dns batch", "server", s.c.Server, "zone", s.c.Zone, "records", len(batch),
		"bytes", m.Len(), "duration", time.Since(start), "error", err, "split", split)
	if split {
		// Which fence changed is not said: read each half again and
		// send it on its own.
		half := len(batch) / 2
		for _, part := range [][]pendingChange{batch[:half], batch[half:]} {
			reqs := make([]*batchRequest, len(part))
			for i, p := range part {
				reqs[i] = p.req
			}
			s.run(reqs)
		}
		return
	}
	for _, p := range batch {
		if err != nil {
			p.req.done <- batchResult{err: err}
			continue
		}
		p.req.done <- batchResult{out: p.out}
	}
}

// splittable says whether a smaller update may succeed where err failed:
// a prerequisite that failed for one of the records, or a message the
// server found too large or malformed.
func splittable(err error) bool {
	var rc *RcodeError
	if !errors.As(err, &rc) || rc.TSIGError != 0 {
		return false
	}
	switch rc.Rcode {
	case mdns.RcodeNXRrset, mdns.RcodeYXRrset, mdns.RcodeFormatError, mdns.RcodeServerFailure, mdns.RcodeYXDomain, mdns.RcodeNameError:
		return true
	}
	return false
}
