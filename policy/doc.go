// Package policy is Witness's decision engine: from the replicated groups,
// the witnesses' latest observations and the current time it decides which
// groups must fail over, which would (observe mode), which wait for an
// operator (manual mode) and which may be re-armed.
//
// [Evaluate] is a pure function of its [Input]: no I/O, no clock reads, no
// goroutines, no randomness and no memory between calls, so a freshly
// elected leader reaches the same decisions from the same gossip. Only the
// Raft leader runs it, on every tick; it is linear in the number of
// observations.
//
// The rules, for a group active at site S:
//
//   - An observer site's verdict on (group, site) is Failing when every one
//     of its live witnesses with a fresh observation sees Failing (since the
//     latest of their Since), Healthy when every one sees Healthy, and
//     Unknown otherwise or when it has no fresh observation. An observation
//     older than StaleAfter, or from a witness that is not live, is left
//     out. Several observations of one witness on one (group, site), one
//     per probe, combine: Failing if any probe fails, Healthy if all pass.
//   - The observer sites are the configured ones (Input.ObserverSites:
//     every site of the cluster that runs witnesses) and those of the live
//     witnesses. Every count below is over them, by one rule (majority.go):
//     a verdict wins when more than half of the observer sites report it,
//     and never on the word of one site alone. A site none of whose
//     witnesses reports is a vote not given, not a smaller electorate.
//   - S is down when a majority of the observer sites other than S see it
//     Failing, and that majority has held for the group's
//     failover_after. The time it has held is computed from the Since
//     values alone (the need-th earliest), never remembered. Since comes
//     from each observer's clock, so clock skew between witnesses shifts
//     that time by as much.
//   - A target T is eligible when a majority of the observer sites, T
//     included (so one at least other than T), see it Healthy, and the
//     data-loss guard holds: when T has a postgres probe or database
//     observations, the standby at T no longer streams from a primary, and
//     when max_lag_bytes or max_lag_ms is set its worst reported lag is
//     within the limit (an unknown lag is not). The first eligible site in
//     the group's priority order is chosen.
//   - A disarmed group is never failed over. With rearm auto it is re-armed
//     once hold_down has passed since the failover that disarmed it and its
//     active site is seen Healthy as a target would be.
//   - Mode auto proposes a FAILOVER move expecting the current token; all
//     groups down at the same site move in one TransitionCommand, moves
//     sorted by group name. Mode observe only reports what it would do;
//     mode manual reports a pending proposal for an operator.
//
// Every group gets a [Decision] with a human-readable reason and a view of
// which observer site sees each of its sites how, for the admin API.
package policy
