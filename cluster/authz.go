package cluster

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/authz"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/config"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Roles on the admin API. Each role may call its own methods and those of
// the roles before it; a caller's identity gets its role from the policy
// file (config.AccessPolicy), the one source of roles. Witnesses of this
// cluster may call every method: they forward writes to the leader on the
// caller's behalf (naming the caller in callerKey) and make the calls
// between witnesses, which no role grants. A method missing here is
// refused to every client.
var roleMethods = map[string][]string{
	config.RoleViewer:   {"Status", "ListGroups", "GetGroup", "Watch"},
	config.RoleOperator: {"Switchover", "CancelSwitchover", "Failover", "SetMode", "SetArmed", "Reinstate"},
	config.RoleAdmin:    {"ApplyGroups", "DeleteGroup", "AddMember", "RemoveMember", "Keyring"},
}

// callerKey carries the identity of the client whose write a witness
// forwards to the leader; it is believed only from a witness.
const callerKey = "witness-caller"

// authzPolicy builds grpc-go's authorization policy (the JSON of
// google.golang.org/grpc/authz) for cluster from pol.
func authzPolicy(cluster string, pol config.AccessPolicy) (string, error) {
	type source struct {
		Principals []string `json:"principals"`
	}
	type request struct {
		Paths []string `json:"paths"`
	}
	type rule struct {
		Name    string   `json:"name"`
		Source  source   `json:"source"`
		Request *request `json:"request,omitempty"`
	}
	rules := []rule{
		{Name: "witnesses", Source: source{Principals: []string{WitnessIdentity(cluster, "") + "*"}}},
		// Any certificate of the CA may ask for health and list the
		// services (grpcurl).
		{Name: "health-and-reflection", Source: source{Principals: []string{"*"}}, Request: &request{Paths: []string{
			"/grpc.health.v1.Health/*", "/grpc.reflection.v1.ServerReflection/*", "/grpc.reflection.v1alpha.ServerReflection/*"}}},
	}
	var methods []string
	for _, role := range config.Roles {
		for _, m := range roleMethods[role] {
			methods = append(methods, "/"+witnessv1.Admin_ServiceDesc.ServiceName+"/"+m)
		}
		var ids []string
		for _, e := range pol.Identities {
			if e.Role == role {
				ids = append(ids, e.Identity)
			}
		}
		if len(ids) == 0 {
			continue // a rule with no principals would match everyone
		}
		rules = append(rules, rule{Name: role, Source: source{Principals: ids}, Request: &request{Paths: append([]string(nil), methods...)}})
	}
	b, err := json.Marshal(map[string]any{"name": "witness", "allow_rules": rules})
	return string(b), err
}

// securityOptions are the admin server's credentials and authorization:
// mutual TLS and the roles of the policy file when tls is set, nothing
// (plaintext, every call allowed) without it.
func (n *Node) securityOptions() ([]grpc.ServerOption, error) {
	if n.tls == nil {
		return nil, nil
	}
	var pol config.AccessPolicy
	if f := n.cfg.TLS.PolicyFile; f != "" {
		var err error
		if pol, err = config.LoadPolicy(f); err != nil {
			return nil, err
		}
	}
	js, err := authzPolicy(n.cfg.Cluster, pol)
	if err != nil {
		return nil, err
	}
	si, err := authz.NewStatic(js)
	if err != nil {
		return nil, fmt.Errorf("tls.policy_file %s: %w", n.cfg.TLS.PolicyFile, err)
	}
	log := n.log.With(keyComponent, "authz")
	denied := func(ctx context.Context, method string) {
		log.Warn("call denied", "identity", callerIdentity(ctx), "method", method)
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		passed := false
		resp, err := si.UnaryInterceptor(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			passed = true
			return handler(ctx, req)
		})
		if !passed && status.Code(err) == codes.PermissionDenied {
			denied(ctx, info.FullMethod)
		}
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		passed := false
		err := si.StreamInterceptor(srv, ss, info, func(srv any, ss grpc.ServerStream) error {
			passed = true
			return handler(srv, ss)
		})
		if !passed && status.Code(err) == codes.PermissionDenied {
			denied(ss.Context(), info.FullMethod)
		}
		return err
	}
	return []grpc.ServerOption{
		grpc.Creds(n.serverCredentials()),
		grpc.ChainUnaryInterceptor(unary),
		grpc.ChainStreamInterceptor(stream),
	}, nil
}

// caller is who made an admin call, for the history: the identity of the
// client's certificate (of the client a witness forwarded for), with the
// name the client gave after it; without TLS only the name given.
func (n *Node) caller(ctx context.Context, given string) string {
	id := callerIdentity(ctx)
	if _, ok := witnessName(n.cfg.Cluster, id); ok {
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(callerKey); len(v) > 0 {
				id = v[0]
			}
		}
	}
	switch {
	case id == "":
		return by(given)
	case given == "" || given == id:
		return id
	}
	return id + " (" + given + ")"
}

// forwardCaller names the caller of ctx on a call forwarded to the leader.
func (n *Node) forwardCaller(ctx context.Context) context.Context {
	if n.tls == nil {
		return ctx
	}
	id := callerIdentity(ctx)
	if _, ok := witnessName(n.cfg.Cluster, id); ok {
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(callerKey); len(v) > 0 {
				id = v[0]
			}
		}
	}
	return metadata.AppendToOutgoingContext(ctx, callerKey, id)
}
