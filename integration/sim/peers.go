package sim

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// adminHub finds the current incarnation of each witness's admin API by
// address.
type adminHub struct {
	net *network
	mu  sync.Mutex
	by  map[string]adminEnd
}

type adminEnd struct {
	name string
	srv  witnessv1.AdminServer
	ctx  context.Context // ends when the witness stops
}

func (h *adminHub) get(addr string) (adminEnd, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.by[addr]
	return e, ok
}

// peers is one witness's cluster.Peers: calls go straight to the other
// witness's admin server, through the generated service table, so every
// RPC the API has (today's and those added later) is served, each taking
// the network's fate there and back.
type peers struct {
	hub  *adminHub
	from string
}

func (p *peers) Client(addr string) (witnessv1.AdminClient, error) {
	return witnessv1.NewAdminClient(&conn{p: p, addr: addr}), nil
}

func (p *peers) Close() error { return nil }

// conn is a grpc.ClientConnInterface that calls a witness in process.
type conn struct {
	p    *peers
	addr string
}

func (c *conn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "sim: no streams")
}

func (c *conn) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	end, ok := c.p.hub.get(c.addr)
	to := c.addr
	if ok {
		to = end.name
	}
	nw := c.p.hub.net
	f := nw.fate(c.p.from, to, kindRPC)
	if err := wait(ctx, f.delay); err != nil {
		return status.FromContextError(err).Err()
	}
	if f.drop || !ok || end.ctx.Err() != nil {
		// A lost request: the caller learns nothing until its deadline or
		// the connection attempt gives up.
		if err := wait(ctx, lostAfter); err != nil {
			return status.FromContextError(err).Err()
		}
		return status.Error(codes.Unavailable, "sim: "+to+" unreachable")
	}
	name := method[strings.LastIndex(method, "/")+1:]
	var handler func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error)
	for _, m := range witnessv1.Admin_ServiceDesc.Methods {
		if m.MethodName == name {
			handler = m.Handler
		}
	}
	if handler == nil {
		return status.Errorf(codes.Unimplemented, "sim: method %s", method)
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	sctx, cancel := context.WithCancel(metadata.NewIncomingContext(ctx, md))
	defer cancel()
	stop := context.AfterFunc(end.ctx, cancel)
	defer stop()
	dec := func(in any) error {
		proto.Merge(in.(proto.Message), args.(proto.Message))
		return nil
	}
	serve := func() (any, error) { return handler(end.srv, sctx, dec, nil) }
	if f.dup {
		// A retried request served twice: the first answer is lost.
		_, _ = serve()
	}
	out, err := serve()
	back := nw.fate(to, c.p.from, kindRPC)
	if werr := wait(ctx, back.delay); werr != nil {
		return status.FromContextError(werr).Err()
	}
	if back.drop {
		if werr := wait(ctx, lostAfter); werr != nil {
			return status.FromContextError(werr).Err()
		}
		return status.Error(codes.Unavailable, "sim: answer of "+to+" lost")
	}
	if err != nil {
		if _, isStatus := status.FromError(err); !isStatus {
			err = status.Error(codes.Unknown, err.Error())
		}
		return err
	}
	r, ok := out.(proto.Message)
	if !ok {
		return fmt.Errorf("sim: answer of type %T", out)
	}
	proto.Reset(reply.(proto.Message))
	proto.Merge(reply.(proto.Message), r)
	return nil
}
