package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"
)

func TestResolve(t *testing.T) {
	records := []string{
		appName + " 60 IN A 192.0.2.1",
		appName + " 30 IN A 192.0.2.2",
		"www.example.test. 90 IN CNAME App.example.test.",
		`txt.example.test. 45 IN TXT "hello world"`,
	}
	// Enough A records that the answer does not fit a 1232-byte UDP reply.
	for i := range 100 {
		records = append(records, fmt.Sprintf("big.example.test. 10 IN A 10.0.%d.%d", i/250, i%250+1))
	}
	s := startZone(t, records...)
	var big []string
	for i := range 100 {
		big = append(big, fmt.Sprintf("10.0.%d.%d", i/250, i%250+1))
	}
	slices.Sort(big) // Resolve sorts as text
	tests := []struct {
		name, qname, qtype string
		want               []string
		wantTTL            uint32
	}{
		{"A rrset, lowest ttl", "app.example.test", "A", []string{"192.0.2.1", "192.0.2.2"}, 30},
		{"through cname", "www.example.test.", "a", []string{"192.0.2.1", "192.0.2.2"}, 30},
		{"cname itself", "www.example.test.", "CNAME", []string{"app.example.test."}, 90},
		{"txt", "txt.example.test.", "TXT", []string{`"hello world"`}, 45},
		{"nodata", "app.example.test.", "AAAA", nil, 0},
		{"nxdomain", "gone.example.test.", "A", nil, 0},
		{"truncated over udp, complete over tcp", "big.example.test.", "A", big, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ttl, err := Resolve(t.Context(), s.Addr(), tt.qname, tt.qtype)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b []string) bool { return cmp.Equal(nilIfEmpty(a), nilIfEmpty(b)) })); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
			if ttl != tt.wantTTL {
				t.Errorf("ttl = %d, want %d", ttl, tt.wantTTL)
			}
		})
	}
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// TestResolveSeesSwitch is the settle check: after a switch, the server
// answers with the value Record.Rdata gives for the new site.
func TestResolveSeesSwitch(t *testing.T) {
	s := startZone(t)
	r := Record{Name: "www.example.test.", Type: "CNAME", TTL: 20,
		Values: map[string]string{"east": "App-East.example.test", "west": "app-west.example.test."}}
	if _, err := newClient(s.Addr()).Switch(t.Context(), r, "east", 1); err != nil {
		t.Fatal(err)
	}
	want, err := r.Rdata("east")
	if err != nil {
		t.Fatal(err)
	}
	got, ttl, err := Resolve(t.Context(), s.Addr(), r.Name, r.Type)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{want}, got); diff != "" || ttl != 20 {
		t.Errorf("Resolve ttl %d, values (-want +got):\n%s", ttl, diff)
	}
}

func TestResolveErrors(t *testing.T) {
	s := startZone(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })

	var rc *RcodeError
	if _, _, err := Resolve(t.Context(), s.Addr(), "example.org.", "A"); !errors.As(err, &rc) || rc.Rcode != mdns.RcodeRefused {
		t.Errorf("out-of-zone name: %v, want REFUSED as *RcodeError", err)
	}
	if _, _, err := Resolve(t.Context(), s.Addr(), "app.example.test.", "BOGUS"); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown type: %v, want ErrInvalid", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, _, err := Resolve(ctx, pc.LocalAddr().String(), "app.example.test.", "A"); !errors.Is(err, ErrUnreachable) {
		t.Errorf("silent resolver: %v, want ErrUnreachable", err)
	}
}
