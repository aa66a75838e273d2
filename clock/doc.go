// Package clock is the one time source of every decision Witness makes
// with time: probes, gossip freshness, the leader loop, the lease and its
// grants, the reconciler's backoff, step deadlines and settling.
//
// Code that decides with time takes a [Clock] and reads it through [Or],
// so that nil means real time. [Real] calls the time package on every
// read and caches nothing, so inside a testing/synctest bubble it is the
// bubble's fake time. [Fake] moves only when a test calls [Fake.Advance]
// or [Fake.Set], firing due timers and tickers in order of their due
// times; [Fake.BlockUntil] waits until the code under test has armed
// enough of them, so a test advances only once that code is waiting.
//
// Durations measured only for logs, and I/O deadlines on sockets, may stay
// on the time package: nothing is decided from them.
package clock
