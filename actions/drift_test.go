package actions_test

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/dns"
	"github.com/sitewitness/witness/actions/dns/zoneserver"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// driftLog collects what a reconciler's OnDrift is told.
type driftLog struct {
	mu     sync.Mutex
	drifts []actions.DNSDrift
}

func (d *driftLog) add(group string, x actions.DNSDrift) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if group != "app" {
		panic("drift of unknown group " + group)
	}
	d.drifts = append(d.drifts, x)
}

func (d *driftLog) get() []actions.DNSDrift {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]actions.DNSDrift(nil), d.drifts...)
}

// reconcileFor runs a reconciler with OnDrift until cond holds or 10 s pass.
func reconcileFor(t *testing.T, l actions.Leader, r actions.Runner, drifts *driftLog, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rec := &actions.Reconciler{Leader: l, Runner: r, Node: "n1", Log: slog.New(slog.DiscardHandler), Tick: 10 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond, OnDrift: drifts.add}
	done := make(chan struct{})
	go func() { rec.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDNSDriftCheckOnlyOnceStableAndEveryCheckEvery(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const checkEvery = 150 * time.Millisecond
		spec := pgDNSGroup("app")
		spec.Actions.Dns.CheckEveryMs = checkEvery.Milliseconds()
		l, r := setupSpec(t, spec)
		r.Block(actions.StepSettle)
		drifts := &driftLog{}
		f := startFake(t, &actions.Reconciler{Leader: l, Runner: r, OnDrift: drifts.add})
		defer f.stop()
		if got := okSteps(l, "app"); r.Tries(actions.StepSettle) != 0 || len(got) != 3 {
			t.Fatalf("waiting in settle, recorded %v", got)
		}
		f.advance(10 * f.rec.Tick)
		if n := len(r.Checks()); n != 0 {
			t.Fatalf("%d drift checks before the plan completed", n)
		}
		r.Release(actions.StepSettle)
		r.SetDrift(actions.DNSDrift{Record: "app.example.test. A", Found: "values [203.0.113.66]"})
		// The first check comes at once, then one every check_every.
		f.until(time.Second, func() bool { return len(r.Checks()) == 1 })
		for i := 1; i < 3; i++ {
			for range checkEvery/f.rec.Tick - 1 {
				f.advance(f.rec.Tick)
			}
			if n := len(r.Checks()); n != i {
				t.Fatalf("%d checks a tick short of %d check_every, want %d", n, i, i)
			}
			f.advance(f.rec.Tick)
			if n := len(r.Checks()); n != i+1 {
				t.Fatalf("%d checks after %d check_every, want %d", n, i, i+1)
			}
		}
		for _, c := range r.Checks() {
			if c.Token != 1 || c.Site != "east" {
				t.Errorf("check %v, want at token 1 for east", c)
			}
		}
		if n := len(drifts.get()); n != 3 {
			t.Errorf("OnDrift told of %d drifts in 3 checks", n)
		}

		// A new token's plan: no check until it completes again.
		r.Block(actions.StepSettle)
		tok := failover(t, l, "west")
		checks := len(r.Checks())
		f.until(time.Second, func() bool { return len(okSteps(l, "app")) == 3 })
		for range 2 * checkEvery / f.rec.Tick {
			f.advance(f.rec.Tick)
		}
		for _, c := range r.Checks()[checks:] {
			if c.Token == tok {
				t.Errorf("checked %v before the plan of token %d completed", c, tok)
			}
		}
		r.Release(actions.StepSettle)
	})
}

// A zone served by a real DNS server, a group switching app.example.test.
// in it, and a way to edit it by hand as an operator with nsupdate would.
type driftZone struct {
	zs     *zoneserver.Server
	secret string
}

func startDriftZone(t *testing.T) (*driftZone, *witnessv1.GroupSpec) {
	t.Helper()
	secret := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	keyFile := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(keyFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	zs, err := zoneserver.New(zoneserver.Config{Zone: "example.test.", Keys: map[string]string{"witness.": secret}})
	if err != nil {
		t.Fatal(err)
	}
	if err := zs.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zs.Close() })
	spec := &witnessv1.GroupSpec{
		Name:  "app",
		Sites: []*witnessv1.SiteSpec{{Name: "east"}, {Name: "west"}},
		Actions: &witnessv1.Actions{Dns: &witnessv1.DNSAction{Server: zs.Addr(), Zone: "example.test.", TsigKeyName: "witness.", TsigAlgorithm: "hmac-sha256",
			TsigSecretFile: keyFile, CheckEveryMs: 100,
			Records: []*witnessv1.DNSRecord{{Name: "app.example.test.", Type: "A", Ttl: 1, Values: map[string]string{"east": "192.0.2.10", "west": "198.51.100.10"}}}}},
	}
	return &driftZone{zs: zs, secret: secret}, spec
}

// edit replaces the RRset of name and type by rr, without prerequisite.
func (z *driftZone) edit(t *testing.T, name string, qtype uint16, rr string) {
	t.Helper()
	m := new(mdns.Msg)
	m.SetUpdate("example.test.")
	m.RemoveRRset([]mdns.RR{&mdns.ANY{Hdr: mdns.RR_Header{Name: name, Rrtype: qtype}}})
	if rr != "" {
		r, err := mdns.NewRR(rr)
		if err != nil {
			t.Fatal(err)
		}
		m.Insert([]mdns.RR{r})
	}
	m.SetTsig("witness.", mdns.HmacSHA256, 300, time.Now().Unix())
	c := &mdns.Client{Net: "tcp", TsigSecret: map[string]string{"witness.": z.secret}, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, z.zs.Addr())
	if err != nil || resp.Rcode != mdns.RcodeSuccess {
		t.Fatalf("hand edit: %v %v", resp, err)
	}
}

func (z *driftZone) read(t *testing.T) dns.Actual {
	t.Helper()
	a, err := (&dns.Client{Server: z.zs.Addr(), Zone: "example.test."}).Read(context.Background(), dns.Record{Name: "app.example.test.", Type: "A"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestDNSDriftPutBackUnderTheCurrentToken(t *testing.T) {
	t.Parallel()
	z, spec := startDriftZone(t)
	l, _ := setupSpec(t, spec)
	drifts := &driftLog{}
	reconcileFor(t, l, actions.Targets{}, drifts, func() bool { return len(okSteps(l, "app")) == 2 })
	want := dns.Actual{HasFence: true, Token: 1, Site: "east", Values: []string{"192.0.2.10"}, TTL: 1}
	if diff := cmp.Diff(want, z.read(t)); diff != "" {
		t.Fatalf("after the plan (-want +got):\n%s", diff)
	}
	// Settle waited the TTL after the switch, although both ran in one
	// pass of the reconciler.
	g, _ := l.FSM.Group("app")
	at := map[string]time.Time{}
	for _, s := range g.GetStatus().GetSteps() {
		at[s.GetStep()] = time.Unix(0, s.GetStartedUnixNano()+s.GetDurationMs()*int64(time.Millisecond))
	}
	// (Recorded durations are whole milliseconds.)
	if gap := at[actions.StepSettle].Sub(at[actions.StepDNS]); gap < time.Second-5*time.Millisecond {
		t.Errorf("settle done %v after the switch; the TTL is 1s", gap)
	}

	const fence = "_witness.app.example.test."
	edits := []struct {
		name  string
		owner string
		qtype uint16
		rr    string
	}{
		{"record changed", "app.example.test.", mdns.TypeA, `app.example.test. 300 IN A 203.0.113.66`},
		{"record removed", "app.example.test.", mdns.TypeA, ``},
		{"fence names another site", fence, mdns.TypeTXT, `_witness.app.example.test. 1 IN TXT "token=1 site=west"`},
		{"fence removed", fence, mdns.TypeTXT, ``},
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			before := len(drifts.get())
			z.edit(t, e.owner, e.qtype, e.rr)
			reconcileFor(t, l, actions.Targets{}, drifts, func() bool { return len(drifts.get()) > before })
			d := drifts.get()[before]
			if d.Err != nil || d.Record != "app.example.test. A" {
				t.Errorf("drift %+v, want app.example.test. A put back", d)
			}
			if diff := cmp.Diff(want, z.read(t)); diff != "" {
				t.Errorf("after the check (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("fence with a higher token is never lowered", func(t *testing.T) {
		before := len(drifts.get())
		z.edit(t, fence, mdns.TypeTXT, `_witness.app.example.test. 1 IN TXT "token=99 site=west"`)
		z.edit(t, "app.example.test.", mdns.TypeA, `app.example.test. 1 IN A 198.51.100.10`)
		reconcileFor(t, l, actions.Targets{}, drifts, func() bool { return len(drifts.get()) > before+1 })
		for _, d := range drifts.get()[before:] {
			if !errors.Is(d.Err, dns.ErrLowerToken) {
				t.Errorf("drift %+v, want ErrLowerToken", d)
			}
		}
		held := dns.Actual{HasFence: true, Token: 99, Site: "west", Values: []string{"198.51.100.10"}, TTL: 1}
		if diff := cmp.Diff(held, z.read(t)); diff != "" {
			t.Errorf("Witness wrote over a higher token (-want +got):\n%s", diff)
		}
	})
}
