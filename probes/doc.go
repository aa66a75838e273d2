// Package probes answers, for every (group, site) target, "does this group's
// service work at this site, from where this witness stands?".
//
// A [Spec] describes one probe (http, tcp, dns, postgres or exec) with its
// interval, timeout and thresholds; [New] turns a valid Spec into a [Probe].
// A check never returns an error: it returns a [Result] that is healthy or
// failing with a short detail ("status 503", "timeout after 2s"), and it
// never runs past its timeout.
//
// A [Tracker] turns single results into a state: a target is healthy after
// RecoverThreshold consecutive successes, failing after FailThreshold
// consecutive failures, and unknown before either.
//
// A [Scheduler] runs every target's check every interval, spreads the start
// times over the interval, bounds how many checks run at once, and hands
// each [Observation] to a callback on its own goroutine so a slow consumer
// never holds up the checks. Time comes from an injected [clock.Clock]; nil means
// real time, and the scheduler also runs inside testing/synctest bubbles.
//
// Observations are soft state: they are published through gossip and read
// by the policy engine, never stored in Raft.
package probes
