package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Raft RPC timing on the simulated network.
const (
	// lostAfter is how long a sender waits for a message the network lost
	// before it sees an error (a TCP timeout in the real transport).
	lostAfter = 500 * time.Millisecond
	// rpcTimeout bounds the wait for a delivered RPC's answer.
	rpcTimeout = 5 * time.Second
)

var (
	errUnreachable = errors.New("sim: peer unreachable")
	errClosed      = errors.New("sim: transport closed")
)

// raftRegistry finds the current incarnation of each witness's transport
// by Raft address.
type raftRegistry struct {
	mu sync.Mutex
	by map[raft.ServerAddress]*raftTransport
}

func (r *raftRegistry) get(a raft.ServerAddress) *raftTransport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.by[a]
}

func (r *raftRegistry) set(a raft.ServerAddress, t *raftTransport) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t == nil {
		delete(r.by, a)
		return
	}
	r.by[a] = t
}

// raftTransport is one witness's raft.Transport on the simulated network.
// Every RPC and its answer take the network's fate on their way; a
// heartbeat takes the fast path, as on the real NetworkTransport, so it
// can overtake log entries sent before it.
type raftTransport struct {
	net  *network
	reg  *raftRegistry
	name string
	addr raft.ServerAddress
	ch   chan raft.RPC

	hbMu sync.Mutex
	hb   func(raft.RPC)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	_ raft.Transport   = (*raftTransport)(nil)
	_ raft.WithClose   = (*raftTransport)(nil)
	_ raft.WithPreVote = (*raftTransport)(nil)
)

func newRaftTransport(nw *network, reg *raftRegistry, name string, addr raft.ServerAddress) *raftTransport {
	ctx, cancel := context.WithCancel(context.Background())
	t := &raftTransport{net: nw, reg: reg, name: name, addr: addr, ch: make(chan raft.RPC), ctx: ctx, cancel: cancel}
	reg.set(addr, t)
	return t
}

func (t *raftTransport) Consumer() <-chan raft.RPC     { return t.ch }
func (t *raftTransport) LocalAddr() raft.ServerAddress { return t.addr }
func (t *raftTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}
func (t *raftTransport) EncodePeer(_ raft.ServerID, a raft.ServerAddress) []byte { return []byte(a) }
func (t *raftTransport) DecodePeer(b []byte) raft.ServerAddress                  { return raft.ServerAddress(b) }
func (t *raftTransport) SetHeartbeatHandler(cb func(raft.RPC)) {
	t.hbMu.Lock()
	t.hb = cb
	t.hbMu.Unlock()
}

// Close stops the transport: calls in flight end, and no more arrive.
func (t *raftTransport) Close() error {
	t.cancel()
	t.reg.mu.Lock()
	if t.reg.by[t.addr] == t {
		delete(t.reg.by, t.addr)
	}
	t.reg.mu.Unlock()
	t.wg.Wait()
	return nil
}

func (t *raftTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	return call(t, id, target, func() any { c := *args; return &c }, nil, resp)
}

func (t *raftTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return call(t, id, target, func() any { c := *args; return &c }, nil, resp)
}

func (t *raftTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return call(t, id, target, func() any { c := *args; return &c }, nil, resp)
}

func (t *raftTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return call(t, id, target, func() any { c := *args; return &c }, nil, resp)
}

func (t *raftTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	b, err := io.ReadAll(data)
	if err != nil {
		return err
	}
	return call(t, id, target, func() any { c := *args; return &c }, b, resp)
}

// call sends one RPC to target and copies its answer into resp.
func call[R any](t *raftTransport, id raft.ServerID, target raft.ServerAddress, args func() any, data []byte, resp *R) error {
	to := string(id)
	f := t.net.fate(t.name, to, kindRaft)
	if err := wait(t.ctx, f.delay); err != nil {
		return errClosed
	}
	peer := t.reg.get(target)
	if f.drop || peer == nil {
		if wait(t.ctx, lostAfter) != nil {
			return errClosed
		}
		return fmt.Errorf("%s to %s: %w", t.name, to, errUnreachable)
	}
	if f.dup {
		// The copy is delivered too; its answer is lost.
		c := args()
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			_, _ = peer.deliver(t.ctx, c, data)
		}()
	}
	out, err := peer.deliver(t.ctx, args(), data)
	back := t.net.fate(to, t.name, kindRaft)
	if werr := wait(t.ctx, back.delay); werr != nil {
		return errClosed
	}
	if back.drop {
		if wait(t.ctx, lostAfter) != nil {
			return errClosed
		}
		return fmt.Errorf("answer of %s to %s: %w", to, t.name, errUnreachable)
	}
	if err != nil {
		return err
	}
	r, ok := out.(*R)
	if !ok {
		return fmt.Errorf("sim: answer of type %T", out)
	}
	*resp = *r
	return nil
}

// deliver hands one RPC to this transport's Raft and waits for its answer.
func (t *raftTransport) deliver(ctx context.Context, cmd any, data []byte) (any, error) {
	respCh := make(chan raft.RPCResponse, 1)
	rpc := raft.RPC{Command: cmd, RespChan: respCh}
	if data != nil {
		rpc.Reader = bytes.NewReader(data)
	}
	timer := time.NewTimer(rpcTimeout)
	defer timer.Stop()
	t.hbMu.Lock()
	hb := t.hb
	t.hbMu.Unlock()
	if a, ok := cmd.(*raft.AppendEntriesRequest); ok && hb != nil && heartbeat(a) {
		hb(rpc)
	} else {
		select {
		case t.ch <- rpc:
		case <-ctx.Done():
			return nil, errClosed
		case <-t.ctx.Done():
			return nil, errUnreachable
		case <-timer.C:
			return nil, errUnreachable
		}
	}
	select {
	case r := <-respCh:
		return r.Response, r.Error
	case <-ctx.Done():
		return nil, errClosed
	case <-t.ctx.Done():
		return nil, errUnreachable
	case <-timer.C:
		return nil, errUnreachable
	}
}

// heartbeat is the real NetworkTransport's test for its fast path.
func heartbeat(a *raft.AppendEntriesRequest) bool {
	leader := a.RPCHeader.Addr
	if len(leader) == 0 {
		//lint:ignore SA1019 the real transport falls back to it too
		leader = a.Leader
	}
	return a.Term != 0 && leader != nil && a.PrevLogEntry == 0 && a.PrevLogTerm == 0 && len(a.Entries) == 0 && a.LeaderCommitIndex == 0
}
