// Package pgharness starts real PostgreSQL 15 servers for tests.
//
// StartPrimary runs initdb and starts a primary; StartStandby clones a
// primary with pg_basebackup -R and starts a streaming hot standby. Every
// server listens on 127.0.0.1 only, on a free TCP port, with a unix socket
// directory of its own, and accepts the superuser "postgres" (also for
// replication) with trust authentication. Servers are tuned for fast start
// (small shared_buffers, fsync off) and are not durable across a machine
// crash; a process crash (Kill) keeps committed data, because commits still
// reach the kernel before they are acknowledged.
//
// HandOver lets the code under test stop and start a server itself (pg_ctl
// as the data directory's owner, a demote command); the harness then
// cleans up whatever postmaster postmaster.pid names. BinDir, PostmasterPID
// and Alive help such tests.
//
// A server is stopped and its directory removed at the test's cleanup; when
// the test failed, the server's log is written to the test log. When the test
// runs as root, the PostgreSQL programs run as the "postgres" OS user, since
// PostgreSQL refuses to run as root. The binaries are looked up in
// /usr/lib/postgresql/15/bin, then through pg_config --bindir; when they are
// missing the test fails and says to run `make deps`.
//
// A Server's methods are safe for concurrent use. The harness starts one
// goroutine per running postmaster, which waits for the process and ends
// when it exits; Stop, Kill and the cleanup wait for it.
package pgharness
