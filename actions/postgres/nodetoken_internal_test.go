package postgres

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func FuzzNodeTokens(f *testing.F) {
	f.Add("app=5:fenced&b%26c=7:primary")
	f.Add("")
	f.Add("app=5")
	f.Add("app=-1:fenced")
	f.Fuzz(func(t *testing.T, value string) {
		tokens, err := parseNodeTokens(value)
		if err != nil {
			return
		}
		again, err := parseNodeTokens(formatNodeTokens(tokens))
		if err != nil {
			t.Fatalf("parse(format(%v)): %v", tokens, err)
		}
		if diff := cmp.Diff(tokens, again); diff != "" {
			t.Errorf("round trip of %q (-first +second):\n%s", value, diff)
		}
	})
}
