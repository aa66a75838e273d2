package main

import (
	"bytes"
	"strings"
	"testing"
)

// A key set again by a narrower logger or by the record replaces the wider
// one: each key appears once per line.
func TestLogKeysOnce(t *testing.T) {
	var b bytes.Buffer
	log := newLogger(&b, "info").With("component", "witnessd", "node", "east-1")
	log.With("component", "raft").Info("hello", "term", 2)
	log.With("component", "probes").Info("again", "component", "probes")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines: %q", lines)
	}
	for i, want := range []string{"component=raft", "component=probes"} {
		l := lines[i]
		if strings.Count(l, "component=") != 1 || !strings.Contains(l, want) || strings.Count(l, "node=east-1") != 1 {
			t.Errorf("line %d: %s (want %s once, node once)", i, l, want)
		}
	}
	if !strings.Contains(lines[0], "term=2") {
		t.Errorf("record attribute lost: %s", lines[0])
	}
}
