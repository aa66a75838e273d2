package harness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	mdns "github.com/miekg/dns"

	"github.com/sitewitness/witness/actions/dns"
)

// Answer is what BIND said of the group's record at one moment.
type Answer struct {
	At    time.Time
	Value string // the A record
	Token uint64 // from the fence TXT
	Site  string // from the fence TXT
}

func querySOA(server string) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(Zone, mdns.TypeSOA)
	c := &mdns.Client{Timeout: 500 * time.Millisecond}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return nil, err
	}
	if r.Rcode != mdns.RcodeSuccess {
		return nil, fmt.Errorf("SOA %s: %s", Zone, mdns.RcodeToString[r.Rcode])
	}
	return r, nil
}

// queryRecord asks server for the group's A record and its fence TXT. The
// two are separate queries, so the fence is read before and after the
// record: an update between them (they change together, in one update)
// shows as two different fences, and the reading is taken again.
func queryRecord(server string) (Answer, error) {
	c := &mdns.Client{Timeout: 500 * time.Millisecond}
	for range 5 {
		before, err := queryFence(c, server)
		if err != nil {
			return Answer{}, err
		}
		m := new(mdns.Msg)
		m.SetQuestion(RecordName, mdns.TypeA)
		r, _, err := c.Exchange(m, server)
		if err != nil {
			return Answer{}, err
		}
		a := Answer{At: time.Now()}
		for _, rr := range r.Answer {
			if x, ok := rr.(*mdns.A); ok {
				a.Value = x.A.String()
			}
		}
		after, err := queryFence(c, server)
		if err != nil {
			return Answer{}, err
		}
		if before == after {
			a.Token, a.Site = after.Token, after.Site
			return a, nil
		}
	}
	return Answer{}, fmt.Errorf("the fence of %s kept changing while it was read", RecordName)
}

// queryFence reads the record's fence TXT (zero when there is none).
func queryFence(c *mdns.Client, server string) (dns.Fence, error) {
	m := new(mdns.Msg)
	m.SetQuestion("_witness."+RecordName, mdns.TypeTXT)
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return dns.Fence{}, err
	}
	for _, rr := range r.Answer {
		if x, ok := rr.(*mdns.TXT); ok && len(x.Txt) > 0 {
			f, err := dns.ParseFence(x.Txt[0])
			if err != nil {
				return dns.Fence{}, fmt.Errorf("fence TXT %q: %w", x.Txt, err)
			}
			return f, nil
		}
	}
	return dns.Fence{}, nil
}

// DNSRecorder asks BIND for the record every 20 ms and keeps every change.
type DNSRecorder struct {
	mu      sync.Mutex
	changes []Answer
	errs    int
	cancel  context.CancelFunc
	done    chan struct{}
}

func startDNSRecorder(server string) *DNSRecorder {
	ctx, cancel := context.WithCancel(context.Background())
	r := &DNSRecorder{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			a, err := queryRecord(server)
			r.mu.Lock()
			if err != nil {
				r.errs++
			} else if n := len(r.changes); n == 0 || r.changes[n-1].Value != a.Value || r.changes[n-1].Token != a.Token || r.changes[n-1].Site != a.Site {
				r.changes = append(r.changes, a)
			}
			r.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return r
}

func (r *DNSRecorder) stop() {
	r.cancel()
	<-r.done
}

// Changes returns the answers seen, one per change.
func (r *DNSRecorder) Changes() []Answer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Answer(nil), r.changes...)
}

// FirstAt returns when BIND first answered site's value after t.
func (r *DNSRecorder) FirstAt(site string, after time.Time) (time.Time, bool) {
	for _, a := range r.Changes() {
		if a.At.After(after) && a.Value == recordValue[site] {
			return a.At, true
		}
	}
	return time.Time{}, false
}

// Check returns the DNS invariants' violations: the fence token never
// decreases, and the record always answers the fence's site.
func (r *DNSRecorder) Check() []string {
	var bad []string
	var last uint64
	for _, a := range r.Changes() {
		if a.Token < last {
			bad = append(bad, fmt.Sprintf("DNS fence token went down from %d to %d at %s", last, a.Token, a.At.Format(time.StampMilli)))
		}
		last = max(last, a.Token)
		if a.Token != 0 && a.Value != recordValue[a.Site] {
			bad = append(bad, fmt.Sprintf("DNS answered %s while its fence says token %d site %s at %s", a.Value, a.Token, a.Site, a.At.Format(time.StampMilli)))
		}
	}
	return bad
}

// AppRole is the application role the write recorder logs in as, and the
// group's fenced role: a fence must keep it from writing whatever it does.
const AppRole = "harness_app"

// BypassRole is a second application role of the group, the one a
// scenario's client tries every way around a read-only default with
// (AppWrite), so that the write recorder keeps writing as an ordinary
// client.
const BypassRole = "harness_bypass"

// writesTable is where the write recorder writes, and the application role
// it writes as; made on the primary before the standby is cloned. The role
// reads the node's token through harness_token, which runs as its owner:
// Witness's token table is not the application's to read.
const writesTable = `CREATE TABLE harness_writes (
	id bigserial PRIMARY KEY,
	node text NOT NULL,
	token bigint NOT NULL,
	at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE ROLE ` + AppRole + ` LOGIN;
CREATE ROLE ` + BypassRole + ` LOGIN IN ROLE ` + AppRole + `;
GRANT SELECT, INSERT ON harness_writes TO ` + AppRole + `;
GRANT USAGE ON SEQUENCE harness_writes_id_seq TO ` + AppRole + `;
CREATE FUNCTION harness_token(g text) RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER AS $fn$
DECLARE t bigint := 0;
BEGIN
	IF to_regclass('witness.fence') IS NOT NULL THEN
		EXECUTE 'SELECT coalesce(max(token), 0) FROM witness.fence WHERE group_name = $1' INTO t USING g;
	END IF;
	RETURN t;
END $fn$;
GRANT EXECUTE ON FUNCTION harness_token(text) TO ` + AppRole

// Write is one write a database accepted.
type Write struct {
	Site       string
	Token      uint64 // the group's token in the node's witness.fence table (0: none)
	Sent, Done time.Time
}

// WriteRecorder writes to every database every 50 ms, as an application
// that does not know which one is the primary would, stamping each write
// with the token the node holds for the group.
type WriteRecorder struct {
	mu     sync.Mutex
	writes []Write
	tries  map[string]int
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startWriteRecorder(pgs map[string]*Postgres) *WriteRecorder {
	ctx, cancel := context.WithCancel(context.Background())
	r := &WriteRecorder{cancel: cancel, tries: map[string]int{}}
	for site, pg := range pgs {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.loop(ctx, site, pg)
		}()
	}
	return r
}

func (r *WriteRecorder) loop(ctx context.Context, site string, pg *Postgres) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if conn == nil || conn.IsClosed() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c, err := pgx.Connect(cctx, pg.appDSN())
			cancel()
			if err != nil {
				continue
			}
			conn = c
		}
		sent := time.Now()
		// A write cut short may have committed unseen: the bound is
		// generous so that a slow machine loses few.
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		tok, err := writeOnce(wctx, conn, site)
		cancel()
		done := time.Now()
		r.mu.Lock()
		r.tries[site]++
		if err == nil {
			r.writes = append(r.writes, Write{Site: site, Token: tok, Sent: sent, Done: done})
		}
		r.mu.Unlock()
		if err != nil && !isSQLError(err) {
			conn.Close(context.Background())
			conn = nil
		}
	}
}

func isSQLError(err error) bool {
	var pe interface{ SQLState() string }
	return errors.As(err, &pe)
}

// writeOnce inserts one row stamped with the node's token for the group.
func writeOnce(ctx context.Context, c *pgx.Conn, site string) (uint64, error) {
	tx, err := c.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.Background())
	var tok int64
	if err := tx.QueryRow(ctx, "SELECT harness_token($1)", Group).Scan(&tok); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO harness_writes (node, token) VALUES ($1, $2)", site, tok); err != nil {
		return 0, err
	}
	return uint64(tok), tx.Commit(ctx)
}

func (r *WriteRecorder) stop() {
	r.cancel()
	r.wg.Wait()
}

// Writes returns the accepted writes.
func (r *WriteRecorder) Writes() []Write {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Write(nil), r.writes...)
}

// LastAt returns the last accepted write at site, if any.
func (r *WriteRecorder) LastAt(site string) (Write, bool) {
	ws := r.Writes()
	for i := len(ws) - 1; i >= 0; i-- {
		if ws[i].Site == site {
			return ws[i], true
		}
	}
	return Write{}, false
}

// FirstAt returns the first accepted write at site after t.
func (r *WriteRecorder) FirstAt(site string, after time.Time) (Write, bool) {
	for _, w := range r.Writes() {
		if w.Site == site && w.Sent.After(after) {
			return w, true
		}
	}
	return Write{}, false
}

// Check returns the database invariant's violations: no token is accepted
// by two nodes, and once a node accepted a write stamped with some token,
// no write stamped lower is accepted anywhere afterwards (a write that
// surely began after the other ended).
func (r *WriteRecorder) Check() []string {
	ws := r.Writes()
	var bad []string
	// One line per token that more than one node took writes for: each
	// node's first such write and how many it took.
	type taken struct {
		token uint64
		site  string
	}
	var tokens []uint64
	sites := map[uint64][]string{}
	first := map[taken]Write{}
	count := map[taken]int{}
	for _, w := range ws {
		k := taken{w.Token, w.Site}
		if count[k] == 0 {
			if len(sites[w.Token]) == 0 {
				tokens = append(tokens, w.Token)
			}
			sites[w.Token] = append(sites[w.Token], w.Site)
			first[k] = w
		}
		count[k]++
	}
	for _, tok := range tokens {
		if len(sites[tok]) < 2 {
			continue
		}
		var each []string
		for _, site := range sites[tok] {
			k := taken{tok, site}
			each = append(each, fmt.Sprintf("%s: %d, the first sent at %s", site, count[k], first[k].Sent.Format(time.StampMilli)))
		}
		bad = append(bad, fmt.Sprintf("token %d accepted writes at both %s (%s)", tok, strings.Join(sites[tok], " and "), strings.Join(each, "; ")))
	}
	for i, a := range ws {
		for _, b := range ws[i+1:] {
			// b surely after a, yet stamped lower, at another node.
			if b.Site != a.Site && b.Sent.After(a.Done) && b.Token < a.Token {
				bad = append(bad, fmt.Sprintf("%s accepted a write stamped %d at %s after %s accepted one stamped %d at %s",
					b.Site, b.Token, b.Sent.Format(time.StampMilli), a.Site, a.Token, a.Done.Format(time.StampMilli)))
				return bad
			}
		}
	}
	return bad
}

// Overlap returns, when both nodes accepted writes in interleaved order
// (one at old, then at new, then at old again), the first such write at
// the old one: a window in which two nodes took writes.
func (r *WriteRecorder) Overlap(oldSite, newSite string) (Write, bool) {
	first, ok := r.FirstAt(newSite, time.Time{})
	if !ok {
		return Write{}, false
	}
	for _, w := range r.Writes() {
		if w.Site == oldSite && w.Sent.After(first.Done) {
			return w, true
		}
	}
	return Write{}, false
}
