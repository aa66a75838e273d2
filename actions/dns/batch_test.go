package dns

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	mdns "github.com/miekg/dns"
)

// groupRecord is the record of group i.
func groupRecord(i int) Record {
	return Record{
		Name:   fmt.Sprintf("svc-%04d.%s", i, testZone),
		Type:   "A",
		TTL:    30,
		Values: map[string]string{"east": "192.0.2.1", "west": "198.51.100.1"},
	}
}

// switchAll switches n records to west concurrently, one goroutine per
// record as the reconciler runs one per group, with record i at token
// tokens(i); it returns each one's outcome and error.
func switchAll(t *testing.T, b *Batcher, c *Client, n int, token func(i int) uint64) ([]Outcome, []error) {
	t.Helper()
	outs, errs := make([]Outcome, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			outs[i], errs[i] = b.Switch(context.Background(), c, groupRecord(i), "west", token(i))
		})
	}
	wg.Wait()
	return outs, errs
}

func heldValue(t *testing.T, s interface {
	Records(string, uint16) []mdns.RR
}, i int) (string, string) {
	t.Helper()
	r := groupRecord(i)
	var a, f string
	for _, rr := range s.Records(mdns.CanonicalName(r.Name), mdns.TypeA) {
		a = rr.(*mdns.A).A.String()
	}
	for _, rr := range s.Records(r.FenceName(), mdns.TypeTXT) {
		f = joinTXT(rr)
	}
	return a, f
}

// TestBatchedFailoverSendsFewUpdates: a site failover of many groups in
// one zone goes out in a few updates, not one per group, and every record
// and fence ends at west under its own token.
func TestBatchedFailoverSendsFewUpdates(t *testing.T) {
	const n = 500
	var records []string
	for i := range n {
		r := groupRecord(i)
		records = append(records,
			line(mdns.CanonicalName(r.Name), 30, "A", "192.0.2.1"),
			line(r.FenceName(), 30, "TXT", fmt.Sprintf("%q", Fence{Token: uint64(i + 1), Site: "east"}.String())))
	}
	zs := startZone(t, records...)
	b := &Batcher{}
	defer b.Close()
	outs, errs := switchAll(t, b, newClient(zs.Addr()), n, func(i int) uint64 { return uint64(n + i + 1) })
	for i := range n {
		if errs[i] != nil || outs[i] != OutcomeSwitched {
			t.Fatalf("record %d: %s, %v", i, outs[i], errs[i])
		}
		a, f := heldValue(t, zs, i)
		if want := (Fence{Token: uint64(n + i + 1), Site: "west"}).String(); a != "198.51.100.1" || f != want {
			t.Fatalf("record %d holds %s, fence %q; want 198.51.100.1, %q", i, a, f, want)
		}
	}
	// 500 records fit in 3 updates of DefaultBatchNames; allow for the
	// batches the linger cuts off early, never one per group.
	if got := zs.Updates(); got > n/20 {
		t.Errorf("the server answered %d updates for %d records, want at most %d", got, n, n/20)
	}
	if st := b.Stats(); st.Records != n || st.Splits != 0 {
		t.Errorf("stats %+v, want %d records and no split", st, n)
	}
}

// TestBatchStaleFenceRefusedAlone: when one fence changes between the
// batch's read and its update, the server refuses the whole update; the
// batch is split and read again until the stale record is refused alone,
// and every other record is switched.
func TestBatchStaleFenceRefusedAlone(t *testing.T) {
	const n, stale = 64, 17
	zs := startZone(t)
	c := newClient(zs.Addr())
	// Every record at east under token i+1.
	b := &Batcher{}
	defer b.Close()
	if _, errs := switchAll(t, b, c, n, func(i int) uint64 { return uint64(i + 1) }); errors.Join(errs...) != nil {
		t.Fatal(errors.Join(errs...))
	}
	for i := range n {
		if _, err := c.Switch(context.Background(), groupRecord(i), "east", uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	before := zs.Updates()
	var once sync.Once
	b = &Batcher{MaxNames: n}
	defer b.Close()
	b.afterRead = func() {
		once.Do(func() {
			// A newer leader moves the stale record to token 1000.
			if _, err := c.Switch(context.Background(), groupRecord(stale), "east", 1000); err != nil {
				t.Error(err)
			}
		})
	}
	outs, errs := switchAll(t, b, c, n, func(i int) uint64 { return uint64(n + i + 1) })
	for i := range n {
		a, f := heldValue(t, zs, i)
		if i == stale {
			if !errors.Is(errs[i], ErrLowerToken) {
				t.Errorf("stale record: %s, %v; want ErrLowerToken", outs[i], errs[i])
			}
			if want := (Fence{Token: 1000, Site: "east"}).String(); a != "192.0.2.1" || f != want {
				t.Errorf("stale record holds %s, fence %q; want 192.0.2.1, %q", a, f, want)
			}
			continue
		}
		if errs[i] != nil || outs[i] != OutcomeSwitched {
			t.Errorf("record %d: %s, %v", i, outs[i], errs[i])
		}
		if want := (Fence{Token: uint64(n + i + 1), Site: "west"}).String(); a != "198.51.100.1" || f != want {
			t.Errorf("record %d holds %s, fence %q; want 198.51.100.1, %q", i, a, f, want)
		}
	}
	if b.Stats().Splits == 0 {
		t.Error("no update was split")
	}
	// One refused update, then a split per level down to the stale
	// record: far fewer than one per record.
	if got := zs.Updates() - before - 1; got > 2*7+2 {
		t.Errorf("%d updates after the refusal, want at most %d", got, 2*7+2)
	}
}

// TestBatchBoundedBySize: a batch larger than one message's bound goes
// out in several updates, none of them dropped.
func TestBatchBoundedBySize(t *testing.T) {
	const n = 100
	zs := startZone(t)
	b := &Batcher{MaxBytes: 4000}
	defer b.Close()
	outs, errs := switchAll(t, b, newClient(zs.Addr()), n, func(i int) uint64 { return 1 })
	for i := range n {
		if errs[i] != nil || outs[i] != OutcomeSwitched {
			t.Fatalf("record %d: %s, %v", i, outs[i], errs[i])
		}
	}
	if got := zs.Updates(); got < 3 {
		t.Errorf("%d updates for %d records under a 4000-byte bound, want several", got, n)
	}
}
