package harness

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const pgBin = "/usr/lib/postgresql/15/bin"

// pgConf is appended to the primary's postgresql.conf; the standby inherits
// it through pg_basebackup.
const pgConf = `
max_connections = 40
shared_buffers = 16MB
fsync = off
full_page_writes = on
wal_log_hints = on
wal_level = replica
max_wal_senders = 8
wal_keep_size = 128MB
hot_standby = on
wal_receiver_status_interval = 1s
wal_retrieve_retry_interval = 500ms
wal_receiver_timeout = 2s
wal_sender_timeout = 2s
log_line_prefix = '%m [%p] %b '
logging_collector = off
`

// Postgres is one PostgreSQL 15 server in a site's namespace, listening on
// the site's address and loopback, port 5432.
type Postgres struct {
	Site string
	Addr string
	Data string
	// Name is the node's name, its site's for the site's first node;
	// Port is where it listens (5432 for a site's first node).
	Name string
	Port int
	proc *Process
	uid  int
	gid  int
	sock string
}

// DSN connects as the superuser over TCP from anywhere on the harness's
// network.
func (p *Postgres) DSN() string {
	return fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=disable&connect_timeout=2", p.Addr, p.Port)
}

// appDSN is how the application (the write recorder) connects: as the
// group's application role, which the fence blocks.
func (p *Postgres) appDSN() string {
	return p.roleDSN(AppRole)
}

func (p *Postgres) roleDSN(role string) string {
	return fmt.Sprintf("postgres://%s@%s:%d/postgres?sslmode=disable&connect_timeout=15", role, p.Addr, p.Port)
}

// harnessDSN is DSN with a connect timeout long enough for a loaded
// machine, for the harness's own queries; the caller's context bounds
// them. Witness's probes and actions keep DSN.
func (p *Postgres) harnessDSN() string {
	return fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=disable&connect_timeout=15", p.Addr, p.Port)
}

func newPostgres(dir, site, addr string) (*Postgres, error) {
	return newPostgresNode(dir, site, site, addr, 5432)
}

// newPostgresNode is a further node of site, named name, on port.
func newPostgresNode(dir, name, site, addr string, port int) (*Postgres, error) {
	uid, gid, err := userIDs("postgres")
	if err != nil {
		return nil, err
	}
	base := filepath.Join(dir, "pg-"+name)
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, err
	}
	sock := filepath.Join(base, "sock")
	if err := os.MkdirAll(sock, 0o700); err != nil {
		return nil, err
	}
	for _, d := range []string{base, sock} {
		if err := os.Chown(d, uid, gid); err != nil {
			return nil, err
		}
	}
	p := &Postgres{Site: site, Name: name, Port: port, Addr: addr, Data: filepath.Join(base, "data"), uid: uid, gid: gid, sock: sock}
	p.proc = &Process{Name: "postgres " + name, Site: site, Log: filepath.Join(dir, "postgres-"+name+".log"), user: "postgres",
		env:  []string{"LC_ALL=C", "TZ=UTC"},
		argv: []string{filepath.Join(pgBin, "postgres"), "-D", p.Data, "-k", sock, "-p", strconv.Itoa(port), "-c", "listen_addresses=" + addr + ",127.0.0.1"}}
	return p, nil
}

// asPostgres runs a PostgreSQL program as the postgres OS user in the
// host's namespace.
func (p *Postgres) asPostgres(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(pgBin, name), args...)
	cmd.Dir = filepath.Dir(p.Data)
	cmd.Env = []string{"HOME=" + filepath.Dir(p.Data), "LC_ALL=C", "TZ=UTC", "PATH=" + os.Getenv("PATH")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(p.uid), Gid: uint32(p.gid)}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// initPrimary makes a new cluster that trusts the harness's subnet.
func (p *Postgres) initPrimary() error {
	if err := p.asPostgres("initdb", "-D", p.Data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		return err
	}
	if err := appendFile(filepath.Join(p.Data, "postgresql.conf"), pgConf); err != nil {
		return err
	}
	return appendFile(filepath.Join(p.Data, "pg_hba.conf"),
		"host all all "+subnet+".0/24 trust\nhost replication all "+subnet+".0/24 trust\n")
}

// initStandby clones primary with pg_basebackup -R from the host.
func (p *Postgres) initStandby(primary *Postgres) error {
	conninfo := fmt.Sprintf("host=%s port=%d user=postgres application_name=%s", primary.Addr, primary.Port, p.Name)
	return p.asPostgres("pg_basebackup", "-d", conninfo, "-D", p.Data, "-R", "-X", "stream", "-c", "fast", "--no-sync")
}

// ownConf writes the server's addresses into its own postgresql.conf, so
// that a start by pg_ctl (a witness reinstating the node) listens where
// the harness's start does.
func (p *Postgres) ownConf() error {
	return appendFile(filepath.Join(p.Data, "postgresql.conf"), fmt.Sprintf(
		"\n# harness: this node's own addresses\nport = %d\nlisten_addresses = '%s,127.0.0.1'\nunix_socket_directories = '%s'\n", p.Port, p.Addr, p.sock))
}

// stopExternal stops a postmaster that something other than the harness
// started (pg_ctl, run by a witness), as the harness's own stop does.
func (p *Postgres) stopExternal() error {
	data, err := os.ReadFile(filepath.Join(p.Data, "postmaster.pid"))
	if err != nil {
		return nil
	}
	line, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return nil
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || filepath.Clean(cwd) != filepath.Clean(p.Data) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGQUIT)
	deadline := time.Now().Add(stopTimeout)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return fmt.Errorf("postgres %s (pid %d, started outside the harness) did not stop", p.Site, pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Start starts the server and waits until it takes connections.
func (p *Postgres) Start() error {
	if err := p.proc.Start(); err != nil {
		return err
	}
	return waitFor(startTimeout, "postgres at "+p.Site, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, p.harnessDSN())
		if err != nil {
			if !p.proc.Running() {
				return fmt.Errorf("postgres exited: %s", p.proc.Tail(2000))
			}
			return err
		}
		return c.Close(ctx)
	})
}

// Kill SIGKILLs the postmaster, as a power loss would; its children follow.
func (p *Postgres) Kill() error {
	if err := p.proc.Kill(); err != nil {
		return err
	}
	// The backends notice the postmaster's death and exit; wait for the
	// data directory's lock to be released so that Start works.
	return waitFor(stopTimeout, "postgres backends at "+p.Site+" to exit", func() error {
		out, _ := exec.Command("pgrep", "-u", "postgres", "-f", p.Data).Output()
		if len(strings.TrimSpace(string(out))) > 0 {
			return fmt.Errorf("still running: %s", out)
		}
		return nil
	})
}

// Stop shuts the server down fast.
func (p *Postgres) Stop() error { return p.proc.Terminate(syscall.SIGINT, stopTimeout) }

// Query runs one statement and scans its single row into dest.
func (p *Postgres) Query(ctx context.Context, sql string, dest ...any) error {
	c, err := pgx.Connect(ctx, p.harnessDSN())
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return c.QueryRow(ctx, sql).Scan(dest...)
}

// Exec runs statements.
func (p *Postgres) Exec(ctx context.Context, sql string) error {
	c, err := pgx.Connect(ctx, p.harnessDSN())
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, sql)
	return err
}

// NodeState is what a server says of itself.
type NodeState struct {
	InRecovery bool
	ReadOnly   bool
}

// State asks the server whether it is a standby and whether new
// transactions are read-only.
func (p *Postgres) State(ctx context.Context) (NodeState, error) {
	var st NodeState
	var ro string
	err := p.Query(ctx, "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')", &st.InRecovery, &ro)
	st.ReadOnly = ro == "on"
	return st, err
}

// AppWrite connects to the site's database as the bypassing application
// role (BypassRole), with
// the given run-time options (a connection string's options=, such as
// "-c default_transaction_read_only=off"), runs each statement of setup in
// its own round trip, then tries one write in a transaction that begins
// with begin ("BEGIN" or "BEGIN READ WRITE"). It returns nil only when the
// write committed: what a fence must never let through.
func (p *Postgres) AppWrite(ctx context.Context, options string, setup []string, begin string) error {
	dsn := p.roleDSN(BypassRole)
	if options != "" {
		dsn += "&options=" + strings.ReplaceAll(url.QueryEscape(options), "+", "%20")
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect as %s: %w", BypassRole, err)
	}
	defer c.Close(context.Background())
	for _, stmt := range setup {
		if _, err := c.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	if _, err := c.Exec(ctx, begin); err != nil {
		return fmt.Errorf("%s: %w", begin, err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO harness_writes (node, token) VALUES ('bypass', 0)"); err != nil {
		_, _ = c.Exec(ctx, "ROLLBACK")
		return fmt.Errorf("insert: %w", err)
	}
	_, err = c.Exec(ctx, "COMMIT")
	return err
}

// RestartDatabase starts site's database again as its service unit would
// after a power cut: first `witnessctl prepare-start` (the unit's
// ExecStartPre), which leaves it to start as a standby unless a
// linearizable read says site is the group's active site; then the server.
// It returns what prepare-start printed.
func (e *Env) RestartDatabase(site string) (string, error) {
	pg := e.PG[site]
	var addrs []string
	for _, w := range e.Witnesses {
		addrs = append(addrs, w.AdminAddr())
	}
	args := append(e.witnessctlTLS(), "--addr", strings.Join(addrs, ","), "--timeout", "5s",
		"prepare-start", Group, site, "--data-dir", pg.Data)
	cmd := exec.Command(filepath.Join(e.bin, "witnessctl"), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("prepare-start: %v: %s", err, out)
	}
	return string(out), pg.Start()
}
