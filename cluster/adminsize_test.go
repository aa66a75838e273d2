package cluster

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

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
