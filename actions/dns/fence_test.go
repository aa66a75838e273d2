package dns

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseFence(t *testing.T) {
	tests := []struct {
		in      string
		want    Fence
		wantErr error
	}{
		{"token=1 site=east", Fence{1, "east"}, nil},
		{"token=18446744073709551615 site=dc-2.b_x", Fence{18446744073709551615, "dc-2.b_x"}, nil},
		{"token=0 site=west", Fence{0, "west"}, nil},
		{"", Fence{}, ErrBadFence},
		{"token=1", Fence{}, ErrBadFence},
		{"token=1 site=", Fence{}, ErrBadFence},
		{"token= site=east", Fence{}, ErrBadFence},
		{"token=01 site=east", Fence{}, ErrBadFence},
		{"token=+1 site=east", Fence{}, ErrBadFence},
		{"token=-1 site=east", Fence{}, ErrBadFence},
		{"token=18446744073709551616 site=east", Fence{}, ErrBadFence},
		{"token=1  site=east", Fence{}, ErrBadFence},
		{"token=1 site=east ", Fence{}, ErrBadFence},
		{"token=1 site=east site=west", Fence{}, ErrBadFence},
		{"site=east token=1", Fence{}, ErrBadFence},
		{"Token=1 site=east", Fence{}, ErrBadFence},
		{"token=1 site=e\"ast", Fence{}, ErrBadFence},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseFence(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseFence(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseFence(%q) (-want +got):\n%s", tt.in, diff)
			}
			if err == nil && got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

// FuzzParseFence checks that the parser never panics, that what it accepts
// is exactly its canonical text, and that what String writes parses back.
func FuzzParseFence(f *testing.F) {
	for _, s := range []string{"token=1 site=east", "token=0 site=w", "token=01 site=east", "token=1 site=", "token=1 site=a b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fence, err := ParseFence(s)
		if err != nil {
			if !errors.Is(err, ErrBadFence) {
				t.Fatalf("ParseFence(%q): error %v is not ErrBadFence", s, err)
			}
			return
		}
		if fence.String() != s {
			t.Fatalf("ParseFence(%q) accepted a non-canonical form: %q", s, fence.String())
		}
		again, err := ParseFence(fence.String())
		if err != nil {
			t.Fatalf("String() of %+v does not parse: %v", fence, err)
		}
		if diff := cmp.Diff(fence, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
