package cluster

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	gproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// TestAdminTakesLargeDocuments: a group document larger than gRPC's
// default 4 MiB (what 10,000 groups make) reaches the admin API, through
// the leader, instead of being refused for
// its size.
func TestAdminTakesLargeDocuments(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	doc := strings.Repeat("# a large group file\n", 6<<20/21) + twoGroups
	// A loaded machine may change leaders under the call: ask again, of
	// whoever leads then (as witnessctl's caller would).
	var resp *witnessv1.ApplyGroupsResponse
	var err error
	for range 5 {
		_, l := tc.leader()
		var conn *grpc.ClientConn
		conn, err = grpc.NewClient(l.AdminAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()), AdminCallOptions())
		if err != nil {
			t.Fatal(err)
		}
		resp, err = witnessv1.NewAdminClient(conn).ApplyGroups(ctx(t), &witnessv1.ApplyGroupsRequest{Document: []byte(doc), By: "test"})
		conn.Close()
		if status.Code(err) != codes.Unavailable {
			break
		}
	}
	if err != nil {
		t.Fatalf("a %d MiB document: %v", len(doc)>>20, err)
	}
	if !resp.GetApplied() || len(resp.GetChanges()) != 2 {
		t.Fatalf("response %v", resp)
	}
}

// recordingPool counts what reaches the pool under smallBuffers.
type recordingPool struct{ gets, puts int }

func (p *recordingPool) Get(n int) *[]byte { p.gets++; b := make([]byte, n); return &b }
func (p *recordingPool) Put(*[]byte)       { p.puts++ }

// TestAdminPoolsSmallBuffersOnly: the buffer of a large answer (a list of
// 10,000 groups) is not kept in the pool once sent; small ones are.
func TestAdminPoolsSmallBuffersOnly(t *testing.T) {
	base := &recordingPool{}
	p := smallBuffers{base}
	small := p.Get(512)
	large := p.Get(6 << 20)
	if len(*small) != 512 || len(*large) != 6<<20 {
		t.Fatalf("buffers of %d and %d bytes, want 512 and %d", len(*small), len(*large), 6<<20)
	}
	p.Put(small)
	p.Put(large)
	if base.gets != 1 || base.puts != 1 {
		t.Errorf("the pool gave %d and took back %d buffers, want only the small one each way", base.gets, base.puts)
	}
}

// TestAdminCodecMarshalsLargeAnswersWhole: an answer above the pooling
// bound is marshaled into a buffer of its own, and reads back the same;
// a small one goes through gRPC's codec as before.
func TestAdminCodecMarshalsLargeAnswersWhole(t *testing.T) {
	c := largeUnpooled{encoding.GetCodecV2(gproto.Name)}
	large := &witnessv1.ListGroupsResponse{}
	for i := range 60_000 {
		large.Groups = append(large.Groups, &witnessv1.Group{Spec: &witnessv1.GroupSpec{Name: fmt.Sprintf("svc-%05d", i)},
			Status: &witnessv1.GroupStatus{ActiveSite: "east", Token: uint64(i)}})
	}
	for _, m := range []proto.Message{large, &witnessv1.StatusRequest{}} {
		data, err := c.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if m == large {
			if _, own := data[0].(mem.SliceBuffer); len(data) != 1 || data.Len() <= pooledBufferMax || !own {
				t.Errorf("a %d-byte answer marshaled into %d buffers, the first a %T, want one of its own", data.Len(), len(data), data[0])
			}
		}
		got := m.ProtoReflect().New().Interface()
		if err := c.Unmarshal(data, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(m, got) {
			t.Errorf("%T does not read back the same", m)
		}
		data.Free()
	}
}
