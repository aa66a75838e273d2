package main

import "runtime/debug"

// defaultGCPercent is the collector's target when GOGC is not set: a
// collection starts once the heap has grown by half of what the last one
// left live, not by all of it. What a witness holds is mostly long-lived
// (the groups, the observations, the probes' state), so at 10,000 groups
// this keeps a witness 50–60 MiB smaller for a collection every second
// instead of every two, about 1 % of a core (docs/benchmarks.md).
const defaultGCPercent = 50

// setGCDefault applies defaultGCPercent unless the environment sets GOGC,
// and reports whether it did.
func setGCDefault(getenv func(string) string) bool {
	if getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(defaultGCPercent)
	return true
}
