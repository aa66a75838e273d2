package cluster

import "google.golang.org/grpc"

// MaxAdminMessage bounds one admin message, each way. gRPC's default (4
// MiB received) refuses a group document of a few thousand groups and the
// answer of status or list with them; 10,000 groups take about 8 MiB.
// The bound keeps a bad input from taking the witness's memory.
const MaxAdminMessage = 64 << 20

// adminServerOptions are the admin server's message bounds.
func adminServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxAdminMessage), grpc.MaxSendMsgSize(MaxAdminMessage)}
}

// AdminCallOptions are what a client of the admin API needs to receive
// and send the largest admin messages.
func AdminCallOptions() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxAdminMessage), grpc.MaxCallSendMsgSize(MaxAdminMessage))
}
