package cluster

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/config"
	"github.com/sitewitness/witness/policy"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// dial returns a real gRPC client of a node's admin API.
func dial(t *testing.T, addr string) witnessv1.AdminClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return witnessv1.NewAdminClient(conn)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func groupNames(gs []*witnessv1.Group) map[string]string {
	out := map[string]string{}
	for _, g := range gs {
		out[g.GetSpec().GetName()] = g.GetStatus().GetActiveSite()
	}
	return out
}

func TestAdminAPI(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	tc.leader()
	follower := tc.follower()
	// Every call goes to a follower: writes must reach the leader anyway.
	c := dial(t, follower.AdminAddr())
	eventually(t, "follower to know the leader's admin address", func() bool { _, a := follower.Leader(); return a != "" })

	t.Run("dry run applies nothing", func(t *testing.T) {
		resp, err := c.ApplyGroups(ctx(t), &witnessv1.ApplyGroupsRequest{Document: []byte(twoGroups), DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetApplied() || len(resp.GetChanges()) != 2 || resp.GetChanges()[0].GetChange() != witnessv1.ChangeKind_CHANGE_KIND_CREATE {
			t.Fatalf("dry run response %v", resp)
		}
		list, err := c.ListGroups(ctx(t), &witnessv1.ListGroupsRequest{})
		if err != nil || len(list.GetGroups()) != 0 {
			t.Fatalf("after dry run: %v groups, err %v", len(list.GetGroups()), err)
		}
	})

	t.Run("apply on a follower, then list", func(t *testing.T) {
		resp, err := c.ApplyGroups(ctx(t), &witnessv1.ApplyGroupsRequest{Document: []byte(twoGroups)})
		if err != nil {
			t.Fatal(err)
		}
		if !resp.GetApplied() {
			t.Fatal("not applied")
		}
		eventually(t, "follower to apply the groups", func() bool { return len(follower.FSM().Groups()) == 2 })
		list, err := c.ListGroups(ctx(t), &witnessv1.ListGroupsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]string{"app": "east", "db": "west"}, groupNames(list.GetGroups())); diff != "" {
			t.Errorf("groups (-want +got):\n%s", diff)
		}
		again, err := c.ApplyGroups(ctx(t), &witnessv1.ApplyGroupsRequest{Document: []byte(twoGroups), DryRun: true})
		if err != nil || again.GetChanges()[0].GetChange() != witnessv1.ChangeKind_CHANGE_KIND_UNCHANGED {
			t.Fatalf("re-apply dry run: %v %v", again, err)
		}
	})

	t.Run("bad spec refused whole with field paths", func(t *testing.T) {
		bad := twoGroups + `
  - name: broken
    sites:
      - {name: east, probes: [{kind: ping}]}
      - {name: north}
`
		_, err := c.ApplyGroups(ctx(t), &witnessv1.ApplyGroupsRequest{Document: []byte(bad)})
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument {
			t.Fatalf("code = %v, want InvalidArgument (%v)", st.Code(), err)
		}
		var fields []string
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					fields = append(fields, v.GetField())
				}
			}
		}
		if diff := cmp.Diff([]string{"groups[2].sites[0].probes[0].kind", "groups[2].sites[1].probes"}, fields); diff != "" {
			t.Errorf("field violations (-want +got):\n%s", diff)
		}
		if _, err := c.GetGroup(ctx(t), &witnessv1.GetGroupRequest{Name: "broken"}); status.Code(err) != codes.NotFound {
			t.Errorf("broken group exists after refusal: %v", err)
		}
	})

	t.Run("switchover refused and changing nothing", func(t *testing.T) {
		g, err := c.GetGroup(ctx(t), &witnessv1.GetGroupRequest{Name: "app"})
		if err != nil {
			t.Fatal(err)
		}
		tok := g.GetGroup().GetStatus().GetToken()
		for _, tt := range []struct {
			name, to string
			code     codes.Code
		}{
			{"unknown site", "north", codes.InvalidArgument},
			{"active site", "east", codes.FailedPrecondition},
			// West's probe fails: no majority sees it working.
			{"site not seen working", "west", codes.FailedPrecondition},
		} {
			_, err := c.Switchover(ctx(t), &witnessv1.SwitchoverRequest{Group: "app", ToSite: tt.to})
			if status.Code(err) != tt.code {
				t.Errorf("%s: %v, want %v", tt.name, err, tt.code)
			}
		}
		g2, err := c.GetGroup(ctx(t), &witnessv1.GetGroupRequest{Name: "app", Linearizable: true})
		if err != nil {
			t.Fatal(err)
		}
		if st := g2.GetGroup().GetStatus(); st.GetToken() != tok || st.GetActiveSite() != "east" || st.GetPending() != nil {
			t.Errorf("after refused switchovers app is %s/%d pending %v", st.GetActiveSite(), st.GetToken(), st.GetPending())
		}
	})

	t.Run("switchover with stale token is Aborted and changes nothing", func(t *testing.T) {
		// West's probe now answers: once a majority of sites sees it
		// working, it is a switchover target.
		doc := strings.Replace(twoGroups, "127.0.0.1:2", answering(t), 1)
		if _, err := c.ApplyGroups(ctx(t), &witnessv1.ApplyGroupsRequest{Document: []byte(doc)}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "west seen working", func() bool {
			_, leader := tc.leader()
			ok, _ := leader.eligible("app", "west", policy.JudgePlanned)
			return ok
		})
		g, err := c.GetGroup(ctx(t), &witnessv1.GetGroupRequest{Name: "app"})
		if err != nil {
			t.Fatal(err)
		}
		tok := g.GetGroup().GetStatus().GetToken()
		resp, err := c.Switchover(ctx(t), &witnessv1.SwitchoverRequest{Group: "app", ToSite: "west", ExpectedToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetToken() <= tok || resp.GetFromSite() != "east" {
			t.Fatalf("switchover response %v (old token %d)", resp, tok)
		}
		// The first phase keeps the group at east; with no database to
		// fence, the leader commits the move at the next token.
		_, leader := tc.leader()
		eventually(t, "the switchover's move", func() bool {
			g, _ := leader.FSM().Group("app")
			return g.GetStatus().GetActiveSite() == "west" && g.GetStatus().GetToken() == resp.GetToken()+1
		})
		_, err = c.Switchover(ctx(t), &witnessv1.SwitchoverRequest{Group: "app", ToSite: "east", ExpectedToken: tok})
		if status.Code(err) != codes.Aborted {
			t.Fatalf("stale switchover: %v, want Aborted", err)
		}
		g2, _ := leader.FSM().Group("app")
		if g2.GetStatus().GetActiveSite() != "west" || g2.GetStatus().GetToken() != resp.GetToken()+1 {
			t.Errorf("after stale switchover app is %s/%d", g2.GetStatus().GetActiveSite(), g2.GetStatus().GetToken())
		}
	})

	t.Run("status", func(t *testing.T) {
		var st *witnessv1.StatusResponse
		eventually(t, "every member alive in status", func() bool {
			var err error
			st, err = c.Status(ctx(t), &witnessv1.StatusRequest{})
			if err != nil {
				t.Fatal(err)
			}
			alive := 0
			for _, m := range st.GetMembers() {
				if m.GetAlive() && m.GetVoter() && m.GetSite() != "" {
					alive++
				}
			}
			return alive == 3
		})
		_, leader := tc.leader()
		if st.GetLeader() != leader.Name() || len(st.GetGroups()) != 2 {
			t.Errorf("status leader %q groups %d", st.GetLeader(), len(st.GetGroups()))
		}
	})

	t.Run("mode, arm and delete", func(t *testing.T) {
		if _, err := c.SetMode(ctx(t), &witnessv1.SetModeRequest{Group: "db", Mode: witnessv1.Mode_MODE_OBSERVE}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.SetArmed(ctx(t), &witnessv1.SetArmedRequest{Group: "db", Armed: false}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.DeleteGroup(ctx(t), &witnessv1.DeleteGroupRequest{Name: "nope"}); status.Code(err) != codes.NotFound {
			t.Errorf("delete unknown: %v", err)
		}
		if _, err := c.DeleteGroup(ctx(t), &witnessv1.DeleteGroupRequest{Name: "db"}); err != nil {
			t.Fatal(err)
		}
		_, leader := tc.leader()
		if _, ok := leader.FSM().Group("db"); ok {
			t.Error("db still there")
		}
	})

	t.Run("health and reflection", func(t *testing.T) {
		conn, err := grpc.NewClient(follower.AdminAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx(t), &healthpb.HealthCheckRequest{Service: witnessv1.Admin_ServiceDesc.ServiceName})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health: %v %v", resp, err)
		}
	})
}

func TestJoinRemoveAndNameClash(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	_, leader := tc.leader()

	// A fourth witness joins through a follower's admin API.
	jc := nodeConfig(t, "west-4", "west")
	jc.Join = []string{tc.follower().AdminAddr()}
	joined, err := Start(context.Background(), Options{Config: jc, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer joined.Close()
	if joined.ClusterID() != leader.ClusterID() {
		t.Errorf("joined cluster id %q, want %q", joined.ClusterID(), leader.ClusterID())
	}
	applyDoc(t, leader, twoGroups)
	eventually(t, "joined node to replicate", func() bool { return len(joined.FSM().Groups()) == 2 })
	eventually(t, "joined node alive in the leader's view", func() bool {
		ms, _ := leader.Members()
		for _, m := range ms {
			if m.Name == "west-4" {
				return m.Alive && m.Voter && m.Site == "west"
			}
		}
		return false
	})

	// Another witness claiming an existing name at another address is
	// refused at start.
	clash := nodeConfig(t, "west-4", "west")
	clash.Join = []string{leader.AdminAddr()}
	if n, err := Start(context.Background(), Options{Config: clash, Logger: testLogger(t)}); !errors.Is(err, ErrNameClash) && status.Code(errors.Unwrap(err)) != codes.AlreadyExists {
		if n != nil {
			n.Close()
		}
		t.Fatalf("name clash: err = %v, want AlreadyExists", err)
	}

	// Remove it again through the API of another follower.
	c := dial(t, tc.follower().AdminAddr())
	if _, err := c.RemoveMember(ctx(t), &witnessv1.RemoveMemberRequest{Name: "west-4"}); err != nil {
		t.Fatal(err)
	}
	// The removal is committed; every replica's configuration, the
	// leader's of the moment included, comes to drop it.
	for _, n := range tc.nodes {
		eventually(t, n.Name()+" to drop west-4 from its configuration", func() bool {
			ms, err := n.Members()
			return err == nil && !slices.ContainsFunc(ms, func(m Member) bool { return m.Name == "west-4" && m.Voter })
		})
	}
}

func TestBadNodeConfigRefused(t *testing.T) {
	c := nodeConfig(t, "east-1", "east")
	c.RaftAddr = "0.0.0.0:7300"
	_, err := Start(context.Background(), Options{Config: c})
	var es config.Errors
	if !errors.As(err, &es) {
		t.Fatalf("err = %v, want config.Errors", err)
	}
}

// answering returns the address of a loopback listener that accepts every
// connection and closes it: a TCP probe's working target. It is closed
// when the test ends.
func answering(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	return ln.Addr().String()
}
