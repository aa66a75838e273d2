// Package clustertest holds helpers for tests that start witnesses on
// loopback.
package clustertest

import (
	"net"
	"testing"
)

// FreeAddr returns a 127.0.0.1 address whose port is free for both TCP and
// UDP at the time of the call (memberlist binds both on one port).
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return addr
	}
	t.Fatal("no free loopback port for TCP and UDP")
	return ""
}
