package cluster

import (
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"

	"github.com/sitewitness/witness/probes"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// grpcPeers is the real Peers: one gRPC connection per address, kept
// until Close.
type grpcPeers struct {
	creds func() grpc.DialOption // the node's TLS, or plaintext; read at each dial
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newGRPCPeers(creds func() grpc.DialOption) *grpcPeers {
	return &grpcPeers{creds: creds, conns: map[string]*grpc.ClientConn{}}
}

func (p *grpcPeers) Client(addr string) (witnessv1.AdminClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return witnessv1.NewAdminClient(c), nil
	}
	c, err := grpc.NewClient(addr, p.creds(), AdminCallOptions())
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	p.conns[addr] = c
	return witnessv1.NewAdminClient(c), nil
}

func (p *grpcPeers) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for addr, c := range p.conns {
		errs = append(errs, c.Close())
		delete(p.conns, addr)
	}
	return errors.Join(errs...)
}

// probeTargets lists the probe targets of the replicated groups, with the
// injected checks when Options.Probe is set.
func (n *Node) probeTargets() []probes.Target {
	ts := targets(n.fsm.Groups())
	if n.opts.Probe != nil {
		for i := range ts {
			ts[i].Checker = n.opts.Probe(ts[i])
		}
	}
	return ts
}
