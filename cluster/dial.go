package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// Raft and gossip dial their peers with a timeout of their own (5 s and
// gossipTCPTimeout). Towards a peer whose packets are dropped, every dial
// and every read waits that long, and raft.Shutdown waits for all of them:
// an isolated witness took up to 10 s to stop. The dialers here stop when
// the node closes: a dial in progress is abandoned and the connections
// they made are closed, so Close does not wait for the network.

// closingConns remembers the connections a dialer made, to close them all
// when its context ends.
type closingConns struct {
	ctx   context.Context
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

func newClosingConns(ctx context.Context) *closingConns {
	c := &closingConns{ctx: ctx, conns: map[*trackedConn]struct{}{}}
	context.AfterFunc(ctx, func() {
		c.mu.Lock()
		conns := c.conns
		c.conns = nil
		c.mu.Unlock()
		for tc := range conns {
			_ = tc.Conn.Close()
		}
	})
	return c
}

// dial connects to address within timeout, or fails as soon as the
// context ends.
func (c *closingConns) dial(network, address string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(c.ctx, network, address)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: conn, owner: c}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conns == nil { // closed while dialling
		_ = conn.Close()
		return nil, fmt.Errorf("dial %s: %w", address, net.ErrClosed)
	}
	c.conns[tc] = struct{}{}
	return tc, nil
}

type trackedConn struct {
	net.Conn
	owner *closingConns
	once  sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.owner.mu.Lock()
		delete(t.owner.conns, t)
		t.owner.mu.Unlock()
	})
	return t.Conn.Close()
}

// raftStream is Raft's TCP stream layer with dials that stop at Close.
type raftStream struct {
	net.Listener
	advertise net.Addr
	conns     *closingConns
}

func newRaftStream(ctx context.Context, bind string, advertise *net.TCPAddr) (*raftStream, error) {
	if advertise.IP == nil || advertise.IP.IsUnspecified() {
		return nil, errors.New("raft_addr must be an address peers can reach, not " + advertise.String())
	}
	lis, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	return &raftStream{Listener: lis, advertise: advertise, conns: newClosingConns(ctx)}, nil
}

func (s *raftStream) Addr() net.Addr { return s.advertise }

func (s *raftStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.conns.dial("tcp", string(address), timeout)
}

// gossipTransport is memberlist's network transport with dials that stop
// at Close.
type gossipTransport struct {
	*memberlist.NetTransport
	conns *closingConns
}

func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.conns.dial("tcp", addr, timeout)
}

func (t *gossipTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}
