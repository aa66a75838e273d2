package policy

import "testing"

func TestMajority(t *testing.T) {
	tests := []struct {
		configured, votes int
		want              bool
	}{
		{0, 0, false},
		{1, 1, false}, // one site alone never decides
		{2, 1, false},
		{2, 2, true},
		{3, 1, false},
		{3, 2, true},
		{4, 2, false},
		{4, 3, true},
		{5, 2, false},
		{5, 3, true},
	}
	for _, tt := range tests {
		if got := wins(tt.votes, tt.configured); got != tt.want {
			t.Errorf("wins(%d of %d) = %v, want %v", tt.votes, tt.configured, got, tt.want)
		}
	}
}
