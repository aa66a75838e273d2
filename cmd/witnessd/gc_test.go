package main

import (
	"runtime/debug"
	"testing"
)

// TestGCDefault: witnessd collects at 50 % growth unless GOGC says
// otherwise, and then leaves the runtime's own reading of GOGC alone.
func TestGCDefault(t *testing.T) {
	was := debug.SetGCPercent(100)
	defer debug.SetGCPercent(was)

	if !setGCDefault(func(string) string { return "" }) {
		t.Fatal("GOGC unset: the default was not applied")
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("GOGC unset: the collector's target is %d %%, want %d %%", got, defaultGCPercent)
	}
	env := map[string]string{"GOGC": "200"}
	if setGCDefault(func(k string) string { return env[k] }) {
		t.Error("GOGC=200: the default replaced the operator's setting")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC=200: the collector's target changed to %d %%", got)
	}
}
