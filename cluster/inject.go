package cluster

import (
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/sitewitness/witness/probes"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// What a node can be given instead of its real network and disk, so that a
// whole cluster runs in one process with no socket (the simulator in
// integration/sim). Every field left nil means what witnessd uses.

// RaftParts are Raft's transport and stores. A nil field means the real
// one: a TCP NetworkTransport on raft_addr, raft-boltdb/v2 in data_dir,
// file snapshots in data_dir. Stores given here are the caller's: Close
// does not close them, so that they outlive a node (its data_dir across a
// restart). A given transport is closed by Close when it has a Close
// method (raft.WithClose).
type RaftParts struct {
	Transport raft.Transport
	Logs      raft.LogStore
	Stable    raft.StableStore
	Snapshots raft.SnapshotStore
}

// Gossip is what a node uses of its gossip layer: memberlist by default.
type Gossip interface {
	// Join contacts the members at addrs; it returns how many answered.
	Join(addrs []string) (int, error)
	// NumMembers counts the members this one sees alive, itself included.
	NumMembers() int
	// Leave tells the others that this member goes, waiting up to timeout.
	Leave(timeout time.Duration) error
	// Shutdown stops the gossip layer.
	Shutdown() error
}

// GossipConfig is what a node gives its gossip layer. The delegates are
// memberlist's: the layer asks Delegate for this member's metadata, full
// state and queued broadcasts, hands it the others' messages and states,
// and tells Events who joins, changes and leaves. Its callbacks never
// block.
type GossipConfig struct {
	// Name and Addr (host:port) of this member.
	Name, Addr string
	// Label keeps clusters apart on a shared network.
	Label string
	// ProbeInterval is how often a member checks another's liveness.
	ProbeInterval time.Duration
	Delegate      memberlist.Delegate
	Conflict      memberlist.ConflictDelegate
	Events        memberlist.EventDelegate
}

// StartGossip starts a gossip layer; nil in Options means memberlist on
// gossip_addr.
type StartGossip func(GossipConfig) (Gossip, error)

// Peers reaches the admin API of other witnesses (lease renewals, lease
// status, read index, forwarded writes, hooks). The default is a gRPC
// client per address.
type Peers interface {
	// Client returns a client of the witness whose admin API is at addr.
	Client(addr string) (witnessv1.AdminClient, error)
	// Close releases what Client opened.
	Close() error
}

// ProbeChecker returns the check to run for a probe target instead of the
// probe its spec describes; the scheduler's timing and thresholds still
// apply. It must return the same Checker (a comparable value) each time it
// is asked for the same target, or the scheduler starts the target over.
// Nil in Options means the real probes.
type ProbeChecker func(t probes.Target) probes.Checker

// AdminServer is this node's admin API as a value, for a caller in the
// same process (Peers that call it directly).
func (n *Node) AdminServer() witnessv1.AdminServer { return &adminServer{n: n} }
