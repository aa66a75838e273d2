package probes

import (
	"context"
	"net"
)

func newTCPCheck(t TCPSpec) func(context.Context) Result {
	var d net.Dialer
	return func(ctx context.Context) Result {
		conn, err := d.DialContext(ctx, "tcp", t.Address)
		if err != nil {
			return Result{Detail: err.Error()}
		}
		conn.Close()
		return Result{OK: true, Detail: "connected"}
	}
}
