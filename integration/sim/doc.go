// Package sim is the deterministic-schedule simulator of a whole Witness
// cluster: real cluster.Node code (Raft, lease, grants, leader loop,
// policy, reconciler) for every witness, in one testing/synctest bubble on
// its fake clock, with no socket. Raft, gossip and the witnesses' calls to
// one another go through an in-memory network that the simulator cuts,
// delays, drops, duplicates and reorders; probes see what the simulator
// says; the targets (a PostgreSQL node per site, a DNS server with a
// token prerequisite, an application writing through DNS) are fakes that
// behave like the real ones in what matters for safety.
//
// Every witness runs on a clock of its own (clock.Skewed over the
// bubble's): a rate up to -drift fast or slow (half a per cent by default,
// so two witnesses differ by up to the 1 % that the timing margin allows)
// and a reading up to -offset ahead or behind (2 s). The seed draws both,
// and the schedule prints them. Witness decides on durations of one
// machine's clock, which the rate changes; where one machine's time is
// read on another (observation and transition times), the offset shows.
//
// A seed chooses the schedule: partitions and heals, message faults,
// kills and restarts of witnesses (their Raft stores survive), failing
// and flapping sites, slow and failing targets, operator switchovers and
// re-created groups. After every step the invariants are checked: at most
// one database per group takes writes; no target's token decreases or is
// overruled by a lower one; no failover unless a majority of the observer
// sites saw the old site failing; a committed decision survives restarts;
// once the faults stop, every committed transition is carried out.
//
// The simulator's own decisions (the schedule, each message's fate) are a
// function of the seed alone. Go's scheduler still interleaves the
// witnesses' goroutines as it likes, so a replay of a failing seed may take
// another path; TestSimReplay measures how often it does not.
//
//	go test ./integration/sim -run TestSim -seed 42 -v    # one seed
//	go test ./integration/sim -run TestSim -seeds 1000    # many
package sim
