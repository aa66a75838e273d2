// Package cluster runs one witness: its Raft replica of the state machine
// (raft-boltdb/v2 log and stable store, file snapshots, TCP transport under
// data_dir), memberlist gossip of who is alive and where, the admin gRPC
// API and the metrics endpoint.
//
// A new data_dir founds a cluster from the static initial_voters that every
// founding node shares (idempotent on restart), or joins a running one
// through the admin API of a member (join). A data_dir records which
// cluster and node made it and is refused by any other.
//
// Only the leader acts: OnLeader runs while this node leads, after a
// barrier has applied everything committed before, and its context ends
// when leadership is lost. Writes on a follower return *NotLeaderError; the
// admin API forwards them to the leader so callers never need to know who
// leads.
//
// Hooks whose run_on names a site reach a witness there through the
// internal RunHook call of the admin API; that witness checks the request
// against its own replica (token, site, step, leader) and runs the command
// of the spec it holds. The self-fencing lease runs local_fence hooks on
// the witnesses at an active site cut off from the majority.
package cluster
