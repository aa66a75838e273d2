//go:build integration

package integration

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/sitewitness/witness/integration/harness"
)

// listServices lists a witness's services through server reflection, as
// grpcurl list does.
func listServices(addr string, creds grpc.DialOption) ([]string, error) {
	conn, err := grpc.NewClient(addr, creds)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}}); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names, nil
}

// checkAdminTLS: every witness of the environment lists its services to
// the harness's client certificate, and refuses a plaintext client.
func checkAdminTLS(t *testing.T, env *harness.Env) {
	t.Helper()
	cfg, err := env.ClientTLS()
	must(t, err)
	for _, w := range env.Witnesses {
		names, err := listServices(w.AdminAddr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil || !slices.Contains(names, "witness.v1.Admin") {
			t.Fatalf("%s: services listed with the client certificate: %v, %v", w.Name, names, err)
		}
		if names, err := listServices(w.AdminAddr(), grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
			t.Fatalf("%s: a plaintext client listed %v", w.Name, names)
		}
	}
}
