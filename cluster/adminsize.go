package cluster

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	gproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// MaxAdminMessage bounds one admin message, each way. gRPC's default (4
// MiB received) refuses a group document of a few thousand groups and the
// answer of status or list with them; 10,000 groups take about 8 MiB.
// The bound keeps a bad input from taking the witness's memory.
const MaxAdminMessage = 64 << 20

// adminServerOptions are the admin server's message bounds and buffers.
func adminServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxAdminMessage), grpc.MaxSendMsgSize(MaxAdminMessage),
		experimental.BufferPool(smallBuffers{mem.DefaultBufferPool()}),
		grpc.ForceServerCodecV2(largeUnpooled{encoding.GetCodecV2(gproto.Name)})}
}

// largeUnpooled is the proto codec, but marshals an answer larger than
// pooledBufferMax into a buffer of its own rather than one of gRPC's
// default pool, which the codec otherwise takes its buffers from whatever
// the server's pool is (see smallBuffers).
type largeUnpooled struct{ encoding.CodecV2 }

func (c largeUnpooled) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok || proto.Size(m) <= pooledBufferMax {
		return c.CodecV2.Marshal(v)
	}
	// The size was just computed, and an answer is not changed while it
	// is sent (the groups it holds never are).
	b, err := proto.MarshalOptions{UseCachedSize: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

// pooledBufferMax is the largest buffer the admin server keeps for reuse.
const pooledBufferMax = 1 << 20

// smallBuffers pools the buffers of small messages (lease renewals, reads,
// a group) and lets the large ones go once used: gRPC's default pool keeps
// every buffer until two collections have passed, and the answer of a
// list or status of 10,000 groups (6 MB each) kept so counts twice
// towards the heap's size.
type smallBuffers struct{ mem.BufferPool }

func (p smallBuffers) Get(n int) *[]byte {
	if n > pooledBufferMax {
		b := make([]byte, n)
		return &b
	}
	return p.BufferPool.Get(n)
}

func (p smallBuffers) Put(b *[]byte) {
	if cap(*b) > pooledBufferMax {
		return
	}
	p.BufferPool.Put(b)
}

// AdminCallOptions are what a client of the admin API needs to receive
// and send the largest admin messages.
func AdminCallOptions() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxAdminMessage), grpc.MaxCallSendMsgSize(MaxAdminMessage))
}
