package pgharness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Time limits of the harness. They are generous: on a loaded machine a
// start can take seconds, and a limit only matters when something is wrong.
const (
	startTimeout     = 60 * time.Second
	stopTimeout      = 60 * time.Second
	commandTimeout   = 2 * time.Minute
	pollInterval     = 20 * time.Millisecond
	portAttempts     = 5
	logTailOnFailure = 64 << 10
)

// serverConf is appended to postgresql.conf of every primary; standbys
// inherit it through pg_basebackup. Port, socket directory and listen
// address are given on the postgres command line instead, because they
// differ between a primary and its standbys.
const serverConf = `
# pgharness: small, fast, not crash-safe test server
max_connections = 40
shared_buffers = 16MB
fsync = off
full_page_writes = on
wal_level = replica
wal_log_hints = on
max_wal_senders = 8
max_replication_slots = 8
wal_keep_size = 128MB
hot_standby = on
wal_receiver_status_interval = 1s
wal_retrieve_retry_interval = 100ms
log_line_prefix = '%m [%p] %b '
`

// Server is one running PostgreSQL instance started by the harness.
type Server struct {
	// Name tells servers apart in logs: "primary", "standby".
	Name string
	// Host is the address the server listens on, always 127.0.0.1.
	Host string
	// Port is the server's TCP port.
	Port int
	// DataDir is the server's data directory (owned by the postgres OS
	// user when the test runs as root).
	DataDir string
	// SocketDir is the server's unix socket directory.
	SocketDir string

	env *env
	dir string // base directory holding DataDir and SocketDir

	mu   sync.Mutex
	proc *process // nil when the server is not running
	log  logBuffer
}

// process is one running postmaster.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the postmaster has exited
	err  error         // exit status, valid after done is closed
}

// StartPrimary runs initdb and starts a primary with wal_level=replica and
// room for standbys. The superuser "postgres" may connect, also for
// replication, from loopback without a password. The server is stopped and
// its directory removed at t.Cleanup.
func StartPrimary(t testing.TB) *Server {
	t.Helper()
	s := newServer(t, "primary")
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	s.run(t, ctx, "initdb", "-D", s.DataDir, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	conf := filepath.Join(s.DataDir, "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("pgharness: open %s: %v", conf, err)
	}
	_, err = f.WriteString(serverConf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("pgharness: write %s: %v", conf, err)
	}
	s.startNewPort(t)
	return s
}

// StartStandby clones primary with pg_basebackup -R, starts the clone as a
// hot standby and waits until its WAL receiver is streaming from primary.
// The server is stopped and its directory removed at t.Cleanup.
func StartStandby(t testing.TB, primary *Server) *Server {
	t.Helper()
	s := newServer(t, "standby")
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	conninfo := fmt.Sprintf("host=%s port=%d user=postgres application_name=%s",
		primary.Host, primary.Port, filepath.Base(s.dir))
	s.run(t, ctx, "pg_basebackup", "-d", conninfo, "-D", s.DataDir,
		"-R", "-X", "stream", "-c", "fast", "--no-sync")
	s.startNewPort(t)
	s.WaitStreaming(t)
	return s
}

// DSN returns a URL that connects to database as the superuser "postgres"
// over TCP without TLS.
func (s *Server) DSN(database string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable",
		net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), database)
}

// Stop shuts the server down with a fast shutdown (SIGINT: sessions are
// disconnected, a checkpoint is written). Stopping a stopped server does
// nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("pgharness: stop %s: %v", s.Name, err)
	}
}

// Start starts the server again, on the same port, after Stop or Kill, and
// waits until it accepts connections. A standby resumes streaming on its
// own; call WaitStreaming to wait for it. Starting a running server does
// nothing.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return
	}
	if err := s.launchLocked(); err != nil {
		t.Fatalf("pgharness: start %s: %v\n%s", s.Name, err, s.log.tail(logTailOnFailure))
	}
}

// Kill crashes the server: SIGKILL to the postmaster and every process of
// its process group, with no shutdown checkpoint. The next Start runs crash
// recovery. Killing a stopped server does nothing.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return
	}
	pid := p.cmd.Process.Pid
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("pgharness: kill %s: %v", s.Name, err)
	}
	<-p.done
	s.proc = nil
	waitGroupGone(pid)
}

// Running reports whether the postmaster is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// Logs returns everything the server has written to stdout and stderr so
// far, over all its starts.
func (s *Server) Logs() string {
	return s.log.String()
}

// WaitStreaming waits until the server's WAL receiver reports "streaming".
// It fails the test if that does not happen within a minute.
func (s *Server) WaitStreaming(t testing.TB) {
	t.Helper()
	var status string
	err := s.poll(func(ctx context.Context, conn *pgx.Conn) (bool, error) {
		status = ""
		err := conn.QueryRow(ctx, "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), '')").Scan(&status)
		return status == "streaming", err
	})
	if err != nil {
		t.Fatalf("pgharness: %s: wal receiver not streaming (status %q): %v\n%s",
			s.Name, status, err, s.log.tail(logTailOnFailure))
	}
}

// CatchUp waits until the server, a standby, has replayed all WAL that
// primary had written when CatchUp was called. It fails the test if that
// does not happen within a minute.
func (s *Server) CatchUp(t testing.TB, primary *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, primary.DSN("postgres"))
	if err != nil {
		t.Fatalf("pgharness: connect to %s: %v", primary.Name, err)
	}
	var target string
	err = conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&target)
	conn.Close(ctx)
	if err != nil {
		t.Fatalf("pgharness: read wal position of %s: %v", primary.Name, err)
	}
	err = s.poll(func(ctx context.Context, conn *pgx.Conn) (bool, error) {
		var done bool
		err := conn.QueryRow(ctx,
			"SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)", target).Scan(&done)
		return done, err
	})
	if err != nil {
		t.Fatalf("pgharness: %s did not replay up to %s: %v", s.Name, target, err)
	}
}

// poll connects to the server and calls check every pollInterval until it
// reports done, or fails after startTimeout.
func (s *Server) poll(check func(context.Context, *pgx.Conn) (bool, error)) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	var last error
	for {
		if conn == nil {
			c, err := pgx.Connect(ctx, s.DSN("postgres"))
			if err == nil {
				conn = c
			}
			last = err
		}
		if conn != nil {
			done, err := check(ctx, conn)
			if err == nil && done {
				return nil
			}
			if err != nil {
				conn.Close(ctx)
				conn = nil
			}
			last = err
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return last
		case <-tick.C:
		}
	}
}

// env is where the PostgreSQL programs are and whom they run as.
type env struct {
	bin  string
	cred *syscall.Credential // nil: run as the current user
	uid  int                 // owner for directories, -1 to keep
	gid  int
}

var (
	envOnce sync.Once
	envVal  *env
	envErr  error
)

func lookupEnv() (*env, error) {
	envOnce.Do(func() { envVal, envErr = findEnv() })
	return envVal, envErr
}

func findEnv() (*env, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	e := &env{bin: bin, uid: -1, gid: -1}
	if os.Geteuid() != 0 {
		return e, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the postgres OS user: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("uid of postgres user: %w", err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("gid of postgres user: %w", err)
	}
	e.uid, e.gid = uid, gid
	e.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return e, nil
}

func findBin() (string, error) {
	const debian = "/usr/lib/postgresql/15/bin"
	if isExecutable(filepath.Join(debian, "postgres")) {
		return debian, nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("postgresql server binaries not found in %s, pg_config --bindir or PATH", debian)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// newServer makes the server's base directory, owned by the user the
// server runs as, and registers the cleanup that stops the server and
// removes the directory.
func newServer(t testing.TB, name string) *Server {
	t.Helper()
	e, err := lookupEnv()
	if err != nil {
		t.Fatalf("pgharness: %v; run `make deps` to install PostgreSQL 15", err)
	}
	// t.TempDir is owned by root with mode 0700, which the postgres user
	// cannot enter, so the harness makes its own directory.
	dir, err := os.MkdirTemp("", "pgharness-"+name+"-")
	if err != nil {
		t.Fatalf("pgharness: %v", err)
	}
	s := &Server{
		Name:      name,
		Host:      "127.0.0.1",
		DataDir:   filepath.Join(dir, "data"),
		SocketDir: filepath.Join(dir, "sock"),
		env:       e,
		dir:       dir,
	}
	t.Cleanup(func() { s.cleanup(t) })
	if err := os.Mkdir(s.SocketDir, 0o700); err != nil {
		t.Fatalf("pgharness: %v", err)
	}
	for _, d := range []string{dir, s.SocketDir} {
		if e.uid >= 0 {
			if err := os.Chown(d, e.uid, e.gid); err != nil {
				t.Fatalf("pgharness: %v", err)
			}
		}
	}
	return s
}

func (s *Server) cleanup(t testing.TB) {
	if err := s.stop(); err != nil {
		t.Errorf("pgharness: stop %s: %v", s.Name, err)
	}
	if t.Failed() {
		t.Logf("pgharness: log of %s (%s):\n%s", s.Name, s.DataDir, s.log.tail(logTailOnFailure))
	}
	if err := os.RemoveAll(s.dir); err != nil {
		t.Errorf("pgharness: remove %s: %v", s.dir, err)
	}
}

// command prepares a PostgreSQL program to run as the server's user, in its
// own process group, with no PG* variables from the test's environment.
func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.env.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = []string{"HOME=" + s.dir, "LC_ALL=C", "TZ=UTC"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "PATH" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.env.cred, Setpgid: true}
	return cmd
}

// run runs a short-lived program and fails the test with its output if it
// fails.
func (s *Server) run(t testing.TB, ctx context.Context, name string, args ...string) {
	t.Helper()
	out, err := s.command(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pgharness: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// startNewPort starts the server on a free port, trying another port when
// some other process took the chosen one first.
func (s *Server) startNewPort(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for range portAttempts {
		s.Port, err = freePort()
		if err != nil {
			break
		}
		mark := s.log.Len()
		err = s.launchLocked()
		if err == nil {
			return
		}
		if !strings.Contains(s.log.since(mark), "could not bind") {
			break
		}
	}
	t.Fatalf("pgharness: start %s: %v\n%s", s.Name, err, s.log.tail(logTailOnFailure))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launchLocked starts the postmaster and waits until it accepts
// connections. s.mu must be held.
func (s *Server) launchLocked() error {
	// The postmaster outlives any one call; Stop and Kill end it.
	cmd := s.command(context.Background(), "postgres", "-D", s.DataDir, "-p", strconv.Itoa(s.Port),
		"-k", s.SocketDir, "-c", "listen_addresses="+s.Host)
	cmd.Stdout = &s.log
	cmd.Stderr = &s.log
	// If the test binary dies without running its cleanups, the
	// postmaster goes with it; its children follow on postmaster death.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run postgres: %w", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc = p
	if err := s.waitReady(p); err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		s.proc = nil
		waitGroupGone(cmd.Process.Pid)
		return err
	}
	return nil
}

// waitReady waits until the server accepts connections, or the postmaster
// exits, or startTimeout passes.
func (s *Server) waitReady(p *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(cctx, s.DSN("postgres"))
		if err == nil {
			err = conn.Ping(cctx)
			conn.Close(cctx)
		}
		ccancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-p.done:
			return fmt.Errorf("postgres exited during start: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections after %v: %w", startTimeout, last)
		case <-tick.C:
		}
	}
}

// stop is Stop without a testing.TB, for the cleanup.
func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return nil
	}
	pid := p.cmd.Process.Pid
	err := syscall.Kill(pid, syscall.SIGINT)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal postmaster: %w", err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
		err = fmt.Errorf("no fast shutdown within %v, killed", stopTimeout)
	}
	s.proc = nil
	waitGroupGone(pid)
	return err
}

// waitGroupGone waits a little for the processes of a killed postmaster's
// group to disappear, so that a restart does not find their shared memory
// still attached. Exited children that nobody reaps still count as members,
// so the wait is bounded.
func waitGroupGone(pgid int) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(pollInterval)
	}
}

// logBuffer collects a server's output; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// since returns what was written after the first n bytes.
func (b *logBuffer) since(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf.Bytes()[n:])
}

// tail returns at most the last n bytes.
func (b *logBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	data := b.buf.Bytes()
	if len(data) <= n {
		return string(data)
	}
	return "…" + string(data[len(data)-n:])
}
