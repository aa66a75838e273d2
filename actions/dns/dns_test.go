package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"

	"github.com/sitewitness/witness/actions/dns/zoneserver"
	"github.com/sitewitness/witness/cluster/clustertest"
)

const (
	testZone   = "example.test."
	testKey    = "witness-key."
	testSecret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="
	appName    = "app.example.test."
	fenceName  = "_witness.app.example.test."
)

func mustRR(t testing.TB, s string) mdns.RR {
	t.Helper()
	rr, err := mdns.NewRR(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return rr
}

func startZone(t testing.TB, records ...string) *zoneserver.Server {
	t.Helper()
	var rrs []mdns.RR
	for _, s := range records {
		rrs = append(rrs, mustRR(t, s))
	}
	s, err := zoneserver.New(zoneserver.Config{Zone: testZone, Keys: map[string]string{testKey: testSecret}, Records: rrs})
	if err != nil {
		t.Fatalf("zoneserver.New: %v", err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("zoneserver.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("zoneserver.Close: %v", err)
		}
	})
	return s
}

func newClient(addr string) *Client {
	return &Client{
		Server:  addr,
		Zone:    testZone,
		Key:     &Key{Name: testKey, Secret: testSecret},
		Timeout: 5 * time.Second,
	}
}

func appRecord() Record {
	return Record{
		Name:   appName,
		Type:   "A",
		TTL:    60,
		Values: map[string]string{"east": "192.0.2.1", "west": "198.51.100.1"},
	}
}

// held renders what the zone server holds at the record, then at its fence.
func held(s *zoneserver.Server) []string {
	var out []string
	for _, name := range []string{appName, fenceName} {
		for _, rr := range s.Records(name, mdns.TypeANY) {
			out = append(out, rr.String())
		}
	}
	return out
}

func line(name string, ttl int, typ, rdata string) string {
	return fmt.Sprintf("%s\t%d\tIN\t%s\t%s", name, ttl, typ, rdata)
}

// handUpdate changes the zone the way an operator's nsupdate would.
func handUpdate(t *testing.T, addr string, build func(m *mdns.Msg)) {
	t.Helper()
	m := new(mdns.Msg)
	m.SetUpdate(testZone)
	build(m)
	m.SetTsig(testKey, mdns.HmacSHA256, 300, time.Now().Unix())
	c := &mdns.Client{Net: "tcp", TsigSecret: map[string]string{testKey: testSecret}, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil || r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("hand update: %v %v", r, err)
	}
}

// TestSwitchSequence walks one record through the life Witness gives it,
// each step against the state the previous one left.
func TestSwitchSequence(t *testing.T) {
	s := startZone(t)
	c := newClient(s.Addr())
	ctx := t.Context()
	steps := []struct {
		name        string
		before      func(t *testing.T) // hand edits before the step
		record      func(r *Record)
		site        string
		token       uint64
		want        Outcome
		wantErr     error
		wantHeld    []string
		wantUpdated bool // the zone's serial moved
	}{
		{
			name: "first switch creates the fence", site: "east", token: 1, want: OutcomeSwitched,
			wantHeld:    []string{line(appName, 60, "A", "192.0.2.1"), line(fenceName, 60, "TXT", `"token=1 site=east"`)},
			wantUpdated: true,
		},
		{
			name: "repeat is unchanged and sends nothing", site: "east", token: 1, want: OutcomeUnchanged,
			wantHeld: []string{line(appName, 60, "A", "192.0.2.1"), line(fenceName, 60, "TXT", `"token=1 site=east"`)},
		},
		{
			name: "next token moves to west", site: "west", token: 2, want: OutcomeSwitched,
			wantHeld:    []string{line(appName, 60, "A", "198.51.100.1"), line(fenceName, 60, "TXT", `"token=2 site=west"`)},
			wantUpdated: true,
		},
		{
			name: "lower token is never written", site: "east", token: 1, wantErr: ErrLowerToken,
			wantHeld: []string{line(appName, 60, "A", "198.51.100.1"), line(fenceName, 60, "TXT", `"token=2 site=west"`)},
		},
		{
			name: "hand-edited value is drift, corrected",
			before: func(t *testing.T) {
				handUpdate(t, s.Addr(), func(m *mdns.Msg) {
					m.RemoveRRset([]mdns.RR{mustRR(t, appName+" 0 IN A 0.0.0.0")})
					m.Insert([]mdns.RR{mustRR(t, appName+" 60 IN A 203.0.113.9"), mustRR(t, appName+" 60 IN A 203.0.113.10")})
				})
			},
			site: "west", token: 2, want: OutcomeDriftCorrected,
			wantHeld:    []string{line(appName, 60, "A", "198.51.100.1"), line(fenceName, 60, "TXT", `"token=2 site=west"`)},
			wantUpdated: true,
		},
		{
			name: "deleted record is drift, corrected",
			before: func(t *testing.T) {
				handUpdate(t, s.Addr(), func(m *mdns.Msg) {
					m.RemoveRRset([]mdns.RR{mustRR(t, appName+" 0 IN A 0.0.0.0")})
				})
			},
			site: "west", token: 2, want: OutcomeDriftCorrected,
			wantHeld:    []string{line(appName, 60, "A", "198.51.100.1"), line(fenceName, 60, "TXT", `"token=2 site=west"`)},
			wantUpdated: true,
		},
		{
			name: "new TTL in the spec is drift, corrected", record: func(r *Record) { r.TTL = 30 },
			site: "west", token: 2, want: OutcomeDriftCorrected,
			wantHeld:    []string{line(appName, 30, "A", "198.51.100.1"), line(fenceName, 30, "TXT", `"token=2 site=west"`)},
			wantUpdated: true,
		},
		{
			name: "a token may skip numbers", record: func(r *Record) { r.TTL = 30 },
			site: "east", token: 7, want: OutcomeSwitched,
			wantHeld:    []string{line(appName, 30, "A", "192.0.2.1"), line(fenceName, 30, "TXT", `"token=7 site=east"`)},
			wantUpdated: true,
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.before != nil {
				st.before(t)
			}
			r := appRecord()
			if st.record != nil {
				st.record(&r)
			}
			serial := s.Serial()
			got, err := c.Switch(ctx, r, st.site, st.token)
			if !errors.Is(err, st.wantErr) {
				t.Fatalf("Switch error = %v, want %v", err, st.wantErr)
			}
			if got != st.want {
				t.Errorf("outcome = %q, want %q", got, st.want)
			}
			if diff := cmp.Diff(st.wantHeld, held(s)); diff != "" {
				t.Errorf("zone (-want +got):\n%s", diff)
			}
			if updated := s.Serial() != serial; updated != st.wantUpdated {
				t.Errorf("zone updated = %v, want %v", updated, st.wantUpdated)
			}
		})
	}
}

func TestRead(t *testing.T) {
	s := startZone(t,
		appName+" 60 IN A 192.0.2.1",
		appName+" 30 IN A 192.0.2.2",
		fenceName+` 60 IN TXT "token=5 site=east"`,
		"split.example.test. 60 IN A 192.0.2.3",
		`_witness.split.example.test. 60 IN TXT "token=6 " "site=west"`,
	)
	c := newClient(s.Addr())
	tests := []struct {
		name string
		rec  Record
		want Actual
	}{
		{"record and fence", appRecord(), Actual{HasFence: true, Token: 5, Site: "east", Values: []string{"192.0.2.1", "192.0.2.2"}, TTL: 30}},
		{"fence split in strings", Record{Name: "split.example.test", Type: "A"}, Actual{HasFence: true, Token: 6, Site: "west", Values: []string{"192.0.2.3"}, TTL: 60}},
		{"nothing there", Record{Name: "new.example.test.", Type: "AAAA"}, Actual{}},
		{"nodata", Record{Name: appName, Type: "TXT"}, Actual{HasFence: true, Token: 5, Site: "east"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Read(t.Context(), tt.rec)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Read (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSwitchFromSplitFence checks that the prerequisite repeats the fence
// exactly as the server holds it, even when its TXT is split in strings.
func TestSwitchFromSplitFence(t *testing.T) {
	s := startZone(t, appName+" 60 IN A 192.0.2.1", fenceName+` 60 IN TXT "token=6 " "site=east"`)
	c := newClient(s.Addr())
	got, err := c.Switch(t.Context(), appRecord(), "west", 7)
	if err != nil || got != OutcomeSwitched {
		t.Fatalf("Switch = %q, %v; want switched", got, err)
	}
	want := []string{line(appName, 60, "A", "198.51.100.1"), line(fenceName, 60, "TXT", `"token=7 site=west"`)}
	if diff := cmp.Diff(want, held(s)); diff != "" {
		t.Errorf("zone (-want +got):\n%s", diff)
	}
}

// TestStaleWriterRefusedByServer gives the writer a state read before
// someone else wrote, so that the client itself sees nothing wrong: the
// refusal, and its rcode, can only come from the server's prerequisite check.
func TestStaleWriterRefusedByServer(t *testing.T) {
	tests := []struct {
		name      string
		initial   []string
		other     uint64 // the token the other writer installs in between
		stale     uint64 // the token the stale writer tries
		wantRcode int
	}{
		{"fence changed", []string{appName + " 60 IN A 192.0.2.1", fenceName + ` 60 IN TXT "token=1 site=east"`}, 2, 3, mdns.RcodeNXRrset},
		{"fence created", nil, 1, 2, mdns.RcodeYXRrset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startZone(t, tt.initial...)
			stale, other := newClient(s.Addr()), newClient(s.Addr())
			ctx := t.Context()
			r := appRecord()
			before, err := stale.read(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := other.Switch(ctx, r, "west", tt.other); err != nil {
				t.Fatalf("other writer: %v", err)
			}
			serial := s.Serial()
			want, err := r.rrFor("east")
			if err != nil {
				t.Fatal(err)
			}
			_, err = stale.write(ctx, r, want, "east", tt.stale, before)
			if !errors.Is(err, ErrStaleToken) {
				t.Fatalf("stale write error = %v, want ErrStaleToken", err)
			}
			var rc *RcodeError
			if !errors.As(err, &rc) || rc.Rcode != tt.wantRcode {
				t.Fatalf("stale write error = %#v, want the server's %s", err, mdns.RcodeToString[tt.wantRcode])
			}
			if s.Serial() != serial {
				t.Error("refused update changed the zone")
			}
			wantHeld := []string{line(appName, 60, "A", "198.51.100.1"), line(fenceName, 60, "TXT", fmt.Sprintf(`"token=%d site=west"`, tt.other))}
			if diff := cmp.Diff(wantHeld, held(s)); diff != "" {
				t.Errorf("zone (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRacingWriters lets several writers read the same fence and then
// update at once: the server lets exactly one through.
func TestRacingWriters(t *testing.T) {
	s := startZone(t, appName+" 60 IN A 192.0.2.1", fenceName+` 60 IN TXT "token=1 site=east"`)
	r := appRecord()
	const writers = 8
	states := make([]state, writers)
	for i := range writers {
		st, err := newClient(s.Addr()).read(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		states[i] = st
	}
	want, err := r.rrFor("west")
	if err != nil {
		t.Fatal(err)
	}
	errs := make([]error, writers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range writers {
		wg.Go(func() {
			<-start
			_, errs[i] = newClient(s.Addr()).write(t.Context(), r, want, "west", uint64(i+2), states[i])
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("writers %d and %d both won", winner, i)
			}
			winner = i
		case !errors.Is(err, ErrStaleToken):
			t.Errorf("writer %d: %v, want ErrStaleToken", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	got, err := newClient(s.Addr()).Read(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	wantActual := Actual{HasFence: true, Token: uint64(winner + 2), Site: "west", Values: []string{"198.51.100.1"}, TTL: 60}
	if diff := cmp.Diff(wantActual, got); diff != "" {
		t.Errorf("after race (-want +got):\n%s", diff)
	}
}

func TestSwitchTSIGErrors(t *testing.T) {
	tests := []struct {
		name      string
		key       *Key
		wantTSIG  int // TSIG error the server answered; 0 when nothing was sent
		wantRcode int
	}{
		{"wrong secret", &Key{Name: testKey, Secret: "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA=="}, mdns.RcodeBadSig, mdns.RcodeNotAuth},
		{"unknown key name", &Key{Name: "stranger.", Secret: testSecret}, mdns.RcodeBadKey, mdns.RcodeNotAuth},
		{"secret not base64", &Key{Name: testKey, Secret: "not base64!"}, 0, 0},
		{"unsupported algorithm", &Key{Name: testKey, Algorithm: "hmac-md4", Secret: testSecret}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startZone(t, appName+" 60 IN A 192.0.2.1", fenceName+` 60 IN TXT "token=1 site=east"`)
			c := newClient(s.Addr())
			c.Key = tt.key
			serial := s.Serial()
			_, err := c.Switch(t.Context(), appRecord(), "west", 2)
			if !errors.Is(err, ErrTSIG) {
				t.Fatalf("Switch error = %v, want ErrTSIG", err)
			}
			var rc *RcodeError
			if tt.wantRcode != 0 {
				if !errors.As(err, &rc) || rc.Rcode != tt.wantRcode || rc.TSIGError != tt.wantTSIG {
					t.Errorf("error = %#v, want rcode %s with tsig %s", err, mdns.RcodeToString[tt.wantRcode], mdns.RcodeToString[tt.wantTSIG])
				}
			} else if errors.As(err, &rc) {
				t.Errorf("error %v came from the server, want a client-side refusal", err)
			}
			if s.Serial() != serial {
				t.Error("zone changed")
			}
		})
	}
}

func TestSwitchUnreachable(t *testing.T) {
	// A port nobody listens on: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()

	// A server that accepts connections and never answers.
	silent := clustertest.NewSilent(t)

	const timeout = 300 * time.Millisecond
	for _, tt := range []struct{ name, addr string }{{"refused", closedAddr}, {"silent", silent.Addr()}} {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(tt.addr)
			c.Timeout = timeout
			start := time.Now()
			_, err := c.Switch(t.Context(), appRecord(), "east", 1)
			elapsed := time.Since(start)
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("Switch error = %v, want ErrUnreachable", err)
			}
			if elapsed > timeout+time.Second {
				t.Errorf("took %v, want about the %v timeout", elapsed, timeout)
			}
			t.Logf("%s: failed in %v", tt.name, elapsed)
		})
	}
}

func TestSwitchCanceledContext(t *testing.T) {
	s := startZone(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := newClient(s.Addr()).Switch(ctx, appRecord(), "east", 1)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Switch error = %v, want context.Canceled", err)
	}
	if errors.Is(err, ErrUnreachable) {
		t.Errorf("the caller's cancellation was reported as ErrUnreachable: %v", err)
	}
}

func TestBadFenceStopsSwitch(t *testing.T) {
	tests := []struct {
		name  string
		fence []string
	}{
		{"garbage", []string{fenceName + ` 60 IN TXT "owner=someone"`}},
		{"two values", []string{fenceName + ` 60 IN TXT "token=1 site=east"`, fenceName + ` 60 IN TXT "token=2 site=west"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startZone(t, append([]string{appName + " 60 IN A 192.0.2.1"}, tt.fence...)...)
			serial := s.Serial()
			_, err := newClient(s.Addr()).Switch(t.Context(), appRecord(), "west", 9)
			if !errors.Is(err, ErrBadFence) {
				t.Fatalf("Switch error = %v, want ErrBadFence", err)
			}
			if s.Serial() != serial {
				t.Error("zone changed")
			}
		})
	}
}

func TestSwitchInvalid(t *testing.T) {
	s := startZone(t)
	tests := []struct {
		name   string
		client func(c *Client)
		record func(r *Record)
		site   string
		token  uint64
	}{
		{"token zero", nil, nil, "east", 0},
		{"unknown site", nil, nil, "north", 1},
		{"bad site name", nil, nil, "a b", 1},
		{"unsupported type", nil, func(r *Record) { r.Type = "MX" }, "east", 1},
		{"rdata of another type", nil, func(r *Record) { r.Values["east"] = "not-an-address" }, "east", 1},
		{"outside zone", nil, func(r *Record) { r.Name = "app.example.org." }, "east", 1},
		{"no key", func(c *Client) { c.Key = nil }, nil, "east", 1},
		{"no server", func(c *Client) { c.Server = "" }, nil, "east", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(s.Addr())
			if tt.client != nil {
				tt.client(c)
			}
			r := appRecord()
			if tt.record != nil {
				tt.record(&r)
			}
			if _, err := c.Switch(t.Context(), r, tt.site, tt.token); !errors.Is(err, ErrInvalid) {
				t.Errorf("Switch error = %v, want ErrInvalid", err)
			}
		})
	}
	if got := held(s); len(got) != 0 {
		t.Errorf("zone changed: %v", got)
	}
}

func TestSwitchOtherTypes(t *testing.T) {
	tests := []struct {
		name     string
		initial  []string
		record   Record
		wantHeld []string
	}{
		{
			name:    "A replaces a CNAME left at the name",
			initial: []string{appName + " 60 IN CNAME elsewhere.example.test."},
			record:  appRecord(),
			wantHeld: []string{line(appName, 60, "A", "198.51.100.1"),
				line(fenceName, 60, "TXT", `"token=1 site=west"`)},
		},
		{
			name: "CNAME",
			record: Record{Name: appName, Type: "cname", TTL: 20,
				Values: map[string]string{"east": "App-East.example.test.", "west": "app-west.example.test."}},
			wantHeld: []string{line(appName, 20, "CNAME", "app-west.example.test."),
				line(fenceName, 20, "TXT", `"token=1 site=west"`)},
		},
		{
			name: "AAAA",
			record: Record{Name: appName, Type: "AAAA", TTL: 20,
				Values: map[string]string{"east": "2001:db8::1", "west": "2001:db8::2"}},
			wantHeld: []string{line(appName, 20, "AAAA", "2001:db8::2"),
				line(fenceName, 20, "TXT", `"token=1 site=west"`)},
		},
		{
			name: "TXT",
			record: Record{Name: appName, Type: "TXT", TTL: 20,
				Values: map[string]string{"east": `"site is east"`, "west": `"site is west"`}},
			wantHeld: []string{line(appName, 20, "TXT", `"site is west"`),
				line(fenceName, 20, "TXT", `"token=1 site=west"`)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startZone(t, tt.initial...)
			c := newClient(s.Addr())
			if got, err := c.Switch(t.Context(), tt.record, "west", 1); err != nil || got != OutcomeSwitched {
				t.Fatalf("Switch = %q, %v; want switched", got, err)
			}
			if diff := cmp.Diff(tt.wantHeld, held(s)); diff != "" {
				t.Errorf("zone (-want +got):\n%s", diff)
			}
			if got, err := c.Switch(t.Context(), tt.record, "west", 1); err != nil || got != OutcomeUnchanged {
				t.Errorf("repeat Switch = %q, %v; want unchanged", got, err)
			}
		})
	}
}

// TestNotAuthoritative uses a server that answers without the AA bit, as a
// resolver would: Read must not take its word for the fence.
func TestNotAuthoritative(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{Listener: ln, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(req)
		w.WriteMsg(m)
	})}
	ready := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(ready) }
	var wg sync.WaitGroup
	wg.Go(func() { srv.ActivateAndServe() })
	t.Cleanup(func() {
		srv.Shutdown()
		wg.Wait()
	})
	<-ready
	_, err = newClient(ln.Addr().String()).Read(t.Context(), appRecord())
	if !errors.Is(err, ErrNotAuthoritative) {
		t.Fatalf("Read error = %v, want ErrNotAuthoritative", err)
	}
}

func TestRecordRdata(t *testing.T) {
	tests := []struct {
		typ, value, want string
	}{
		{"A", "192.0.2.1", "192.0.2.1"},
		{"AAAA", "2001:DB8:0::1", "2001:db8::1"},
		{"CNAME", "App.Example.Test", "app.example.test."},
		{"TXT", `"a b"`, `"a b"`},
		{"TXT", `plain`, `"plain"`},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"/"+tt.value, func(t *testing.T) {
			r := Record{Name: appName, Type: tt.typ, Values: map[string]string{"east": tt.value}}
			got, err := r.Rdata("east")
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Rdata = %q, want %q", got, tt.want)
			}
		})
	}
}

// BenchmarkSwitch measures one fenced switch (two TCP queries and one signed
// update) against the zone server on loopback.
func BenchmarkSwitch(b *testing.B) {
	benchmarkSwitch(b, startZone(b).Addr())
}

func benchmarkSwitch(b *testing.B, addr string) {
	c := newClient(addr)
	r := appRecord()
	sites := []string{"east", "west"}
	token := uint64(0)
	for b.Loop() {
		token++
		if got, err := c.Switch(b.Context(), r, sites[token%2], token); err != nil || got != OutcomeSwitched {
			b.Fatalf("Switch = %q, %v", got, err)
		}
	}
}

// Ensure says what the server held before it put the record right, so a
// periodic check can report drift.
func TestEnsureReportsWhatItFound(t *testing.T) {
	s := startZone(t,
		line(appName, 300, "A", "203.0.113.66"),
		line(fenceName, 60, "TXT", `"token=4 site=east"`))
	c := newClient(s.Addr())
	out, found, err := c.Ensure(t.Context(), appRecord(), "east", 4)
	if err != nil || out != OutcomeDriftCorrected {
		t.Fatalf("Ensure = %v, %v; want drift-corrected", out, err)
	}
	want := Actual{HasFence: true, Token: 4, Site: "east", Values: []string{"203.0.113.66"}, TTL: 300}
	if diff := cmp.Diff(want, found); diff != "" {
		t.Errorf("found (-want +got):\n%s", diff)
	}
	if got := found.String(); got != "fence token=4 site=east, values [203.0.113.66] ttl 300" {
		t.Errorf("String() = %q", got)
	}
	out, found, err = c.Ensure(t.Context(), appRecord(), "east", 4)
	if err != nil || out != OutcomeUnchanged || found.Values[0] != "192.0.2.1" {
		t.Errorf("second Ensure = %v, %+v, %v; want unchanged", out, found, err)
	}
	// A lower token is refused, with what the server holds.
	_, found, err = c.Ensure(t.Context(), appRecord(), "west", 3)
	if !errors.Is(err, ErrLowerToken) || found.Token != 4 {
		t.Errorf("Ensure at a lower token = %+v, %v; want ErrLowerToken and token 4 found", found, err)
	}
	if got := (Actual{}).String(); got != "no fence, no record" {
		t.Errorf("zero Actual String() = %q", got)
	}
}
