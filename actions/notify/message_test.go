package notify

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSubject(t *testing.T) {
	tests := []struct {
		name string
		m    Message
		want string
	}{
		{
			name: "failover",
			m:    Message{Group: "app", From: "east", To: "west", Token: 8, Kind: KindFailover, Steps: []Step{{Name: "dns", OK: true}}},
			want: "[witness] app failed over east → west (token 8)",
		},
		{
			name: "switchover",
			m:    Message{Group: "billing", From: "west", To: "east", Token: 12, Kind: KindSwitchover},
			want: "[witness] billing switched over west → east (token 12)",
		},
		{
			name: "failback with two failed steps",
			m: Message{Group: "app", From: "west", To: "east", Token: 9, Kind: KindFailback,
				Steps: []Step{{Name: "a"}, {Name: "b", OK: true}, {Name: "c"}}},
			want: "[witness] app failed back west → east (token 9): 2 steps failed",
		},
		{
			name: "first activation",
			m:    Message{Group: "app", To: "east", Token: 1, Kind: KindFailover},
			want: "[witness] app failed over (none) → east (token 1)",
		},
		{
			name: "line breaks cannot add headers",
			m:    Message{Group: "app\r\nBcc: x@example.com", From: "east", To: "west", Token: 2, Kind: "other"},
			want: "[witness] app  Bcc: x@example.com moved east → west (token 2)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.m.subject()); diff != "" {
				t.Errorf("subject (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTextBodyBoundsFields(t *testing.T) {
	m := Message{
		Group: "app", From: "east", To: "west", Token: 3, Kind: KindSwitchover,
		At:     time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Reason: "operator request\nticket 42",
		Steps:  []Step{{Name: "hook", OK: false, Error: strings.Repeat("é", 1000), Duration: time.Second}},
	}
	body := m.textBody()
	if !strings.Contains(body, "Reason:  operator request ticket 42\n") {
		t.Errorf("reason not on one line:\n%s", body)
	}
	for i, line := range strings.Split(body, "\n") {
		if len(line) > maxFieldLen+20 {
			t.Errorf("line %d is %d bytes long", i+1, len(line))
		}
	}
	if !strings.Contains(body, "é…\n") || strings.Contains(body, "\uFFFD") {
		t.Errorf("long error not cut at a rune boundary with an ellipsis")
	}
}

func TestPayloadDurations(t *testing.T) {
	m := Message{Steps: []Step{{Name: "a", Duration: 1499 * time.Microsecond}, {Name: "b", Duration: 2 * time.Minute}}}
	var got []int64
	for _, s := range m.payload().Steps {
		got = append(got, s.DurationMS)
	}
	if diff := cmp.Diff([]int64{1, 120000}, got); diff != "" {
		t.Errorf("duration_ms (-want +got):\n%s", diff)
	}
}
