package exec

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBoundedOutput(t *testing.T) {
	tests := []struct {
		name     string
		limit    int
		writes   []string
		want     string
		wantLast string
	}{
		{
			name:     "within the limit",
			limit:    20,
			writes:   []string{"abc\n", "def\n"},
			want:     "abc\ndef\n",
			wantLast: "def",
		},
		{
			name:     "exactly the limit",
			limit:    8,
			writes:   []string{"abc\n", "def\n"},
			want:     "abc\ndef\n",
			wantLast: "def",
		},
		{
			name:     "head and tail kept, middle counted",
			limit:    8,
			writes:   []string{"0123", "4567", "89ab", "cdef"},
			want:     "0123\n[witness: 8 bytes of output dropped]\ncdef",
			wantLast: "cdef",
		},
		{
			name:     "one large write",
			limit:    8,
			writes:   []string{"0123456789abcdef"},
			want:     "0123\n[witness: 8 bytes of output dropped]\ncdef",
			wantLast: "cdef",
		},
		{
			name:     "many small writes",
			limit:    6,
			writes:   strings.Split("abcdefghijklmnopqrstuvwxyz", ""),
			want:     "abc\n[witness: 20 bytes of output dropped]\nxyz",
			wantLast: "xyz",
		},
		{
			name:  "a rune cut at either edge is dropped",
			limit: 6,
			// "é" is two bytes: the head ends in the middle of one and
			// the tail starts in the middle of another.
			writes:   []string{"abé", "------", "éyz"},
			want:     "ab\n[witness: 8 bytes of output dropped]\nyz",
			wantLast: "yz",
		},
		{
			name:     "last line skips trailing blank lines",
			limit:    100,
			writes:   []string{"error: disk full\n\n  \n"},
			want:     "error: disk full\n\n  \n",
			wantLast: "error: disk full",
		},
		{
			name:     "nothing written",
			limit:    10,
			want:     "",
			wantLast: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBoundedOutput(tt.limit)
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if diff := cmp.Diff(tt.want, b.String()); diff != "" {
				t.Errorf("String() (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantLast, b.lastLine()); diff != "" {
				t.Errorf("lastLine() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBoundedOutputLongLastLine(t *testing.T) {
	b := newBoundedOutput(1000)
	b.Write([]byte(strings.Repeat("y", 400)))
	got := b.lastLine()
	if want := strings.Repeat("y", maxLastLine) + "…"; got != want {
		t.Errorf("lastLine() = %q (%d bytes), want %d y and an ellipsis", got, len(got), maxLastLine)
	}
}
