package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// StopMode is how Demote stops PostgreSQL: a pg_ctl shutdown mode.
type StopMode string

// Stop modes.
const (
	// StopImmediate ends every process at once, without a checkpoint; the
	// next start runs crash recovery. For the self-fence of an isolated
	// site: a fast shutdown of an isolated primary can wait for its
	// walsenders up to wal_sender_timeout.
	StopImmediate StopMode = "immediate"
	// StopFast disconnects the sessions and writes a shutdown checkpoint,
	// which connected standbys receive before the primary stops. For a
	// switchover.
	StopFast StopMode = "fast"
)

// Defaults for the zero fields of Demoter.
const (
	DefaultPgCtl         = "/usr/lib/postgresql/15/bin/pg_ctl"
	DefaultDemoteTimeout = 10 * time.Second
	DefaultStartTimeout  = 60 * time.Second
)

// Environment of Demoter.Command and Demoter.StartCommand.
const (
	EnvDataDir  = "WITNESS_DATA_DIR"  // Demoter.DataDir
	EnvStopMode = "WITNESS_STOP_MODE" // "immediate" or "fast"; stop only
)

// killWait bounds the wait for processes to go after SIGKILL.
const killWait = 5 * time.Second

// Demoter stops the PostgreSQL of its own host so that it can only start
// again as a standby: the local layer of the fence, run by the witness at
// the site. It needs to run on the database host, as root or as the data
// directory's owner. The zero value is not usable: DataDir is required.
type Demoter struct {
	// DataDir is the node's data directory; it holds postmaster.pid, and
	// standby.signal is written there.
	DataDir string
	// PgCtl is the pg_ctl program; empty means DefaultPgCtl. When Witness
	// runs as root, pg_ctl runs as the owner of DataDir, since PostgreSQL
	// refuses to run as root.
	PgCtl string
	// Command, when set, stops PostgreSQL instead of pg_ctl stop: argv,
	// run without a shell and as Witness's own user (for systemctl or
	// pg_ctlcluster), with WITNESS_DATA_DIR and WITNESS_STOP_MODE set.
	// Whatever it does or returns, Demote then waits for the postmaster
	// to go, and kills it when Timeout runs out.
	Command []string
	// StartCommand, when set, starts PostgreSQL instead of pg_ctl start,
	// as Command runs. Debian clusters whose configuration lives in
	// /etc/postgresql need it (pg_ctlcluster 15 main start).
	StartCommand []string
	// LogFile is where pg_ctl start sends the server's output; empty means
	// log/witness-start.log in DataDir.
	LogFile string
	// Timeout bounds Demote: when the postmaster has not exited this long
	// after Demote began, it is killed (SIGKILL, and its children too).
	// Zero means DefaultDemoteTimeout.
	Timeout time.Duration
	// StartTimeout bounds StartAsStandby and StartAsPrimary until the
	// server accepts connections; zero means DefaultStartTimeout.
	StartTimeout time.Duration
	// ConnectTimeout bounds each connection attempt of the checks; zero
	// means one second.
	ConnectTimeout time.Duration
}

// Demote makes the node at DataDir unable to take writes and unable to
// start as a primary, and returns once that holds: first it writes
// standby.signal (owned by the data directory's owner, synced), so that any
// later start comes up as a standby; then it stops the server with pg_ctl
// stop -m mode, or Command; if the postmaster has not exited within
// Timeout it kills it and its children. Demote is done when the postmaster
// named by postmaster.pid is gone and dsn refuses connections, whatever
// the stop command returned. Demoting a stopped node writes standby.signal
// and checks the same.
func (d *Demoter) Demote(ctx context.Context, dsn string, mode StopMode) error {
	if err := d.demote(ctx, dsn, mode); err != nil {
		return fmt.Errorf("demote database: %w", err)
	}
	return nil
}

func (d *Demoter) demote(ctx context.Context, dsn string, mode StopMode) error {
	if mode != StopImmediate && mode != StopFast {
		return fmt.Errorf("stop mode %q: %w", mode, ErrInvalid)
	}
	if err := d.check(dsn); err != nil {
		return err
	}
	deadline := time.Now().Add(d.timeout())
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := d.writeStandbySignal(); err != nil {
		return err
	}
	pid, err := d.postmaster()
	if err != nil {
		return err
	}
	var stopErr error
	if pid != 0 {
		stopErr = d.stop(ctx, mode, deadline)
		if !waitGone(ctx, pid, deadline) {
			// Once the stop is under way it is carried through, even
			// when ctx ends: the kill and the checks are bounded.
			if err := killPostmaster(pid); err != nil {
				return errors.Join(err, stopErr)
			}
			if !waitGone(context.WithoutCancel(ctx), pid, time.Now().Add(killWait)) {
				return fmt.Errorf("postmaster %d survived SIGKILL: %w", pid, ErrStillRunning)
			}
		}
	}
	if err := d.refuses(context.WithoutCancel(ctx), dsn); err != nil {
		return errors.Join(err, stopErr)
	}
	return nil
}

// StandbyRunning reports whether the node runs as a standby that stays
// one: it answers at dsn in recovery, and standby.signal is in place (a
// node in targeted recovery, with recovery.signal, becomes a primary when
// it ends). Such a node takes no write; stopping it fences nothing.
func (d *Demoter) StandbyRunning(ctx context.Context, dsn string) (bool, error) {
	if err := d.check(dsn); err != nil {
		return false, err
	}
	in, err := d.inRecovery(ctx, dsn)
	if err != nil || !in {
		return false, err
	}
	if _, err := os.Stat(filepath.Join(d.DataDir, "standby.signal")); err != nil {
		if os.IsNotExist(err) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// StartAsStandby starts the node with standby.signal in place and waits
// until dsn accepts connections and the node is in recovery. A node that
// already runs as a standby is left alone; one that runs as a primary is
// ErrNotStandby.
func (d *Demoter) StartAsStandby(ctx context.Context, dsn string) error {
	if err := d.start(ctx, dsn, true); err != nil {
		return fmt.Errorf("start as standby: %w", err)
	}
	return nil
}

// StartAsPrimary removes standby.signal, starts the node and waits until
// dsn accepts connections and the node is out of recovery. Whether the
// node may run as a primary is the caller's decision: only after a
// linearizable read says its site is active for the group. The node then
// holds its last token; the reconciler's Promote records the current one.
// A node that already runs as a primary is left alone; one that runs as a
// standby, or that was in recovery when it stopped (its control file says
// so), is ErrNotPrimary (Promote it instead).
func (d *Demoter) StartAsPrimary(ctx context.Context, dsn string) error {
	if err := d.start(ctx, dsn, false); err != nil {
		return fmt.Errorf("start as primary: %w", err)
	}
	return nil
}

func (d *Demoter) start(ctx context.Context, dsn string, standby bool) error {
	if err := d.check(dsn); err != nil {
		return err
	}
	pid, err := d.postmaster()
	if err != nil {
		return err
	}
	if pid != 0 {
		return d.checkRunning(ctx, dsn, standby)
	}
	d.waitReaped(ctx)
	if !standby {
		// Without standby.signal, a node that was a standby when it
		// stopped would come up promoted: a promotion outside the
		// group's rules. Promote is the way for such a node.
		out, err := d.controlData(ctx)
		if err != nil {
			return err
		}
		if rec, err := stoppedInRecovery(out); err != nil || rec {
			if err == nil {
				err = fmt.Errorf("%w: it was in recovery when it stopped", ErrNotPrimary)
			}
			return err
		}
	}
	if standby {
		err = d.writeStandbySignal()
	} else {
		err = d.removeStandbySignal()
	}
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, d.startTimeout())
	defer cancel()
	if len(d.StartCommand) > 0 {
		err = d.runCommand(sctx, d.StartCommand, nil)
	} else {
		err = d.pgCtlStart(sctx)
	}
	if err != nil {
		return err
	}
	var inRecovery bool
	var last error
	ok, err := waitUntil(sctx, time.Now().Add(d.startTimeout()), func() (bool, error) {
		inRecovery, last = d.inRecovery(sctx, dsn)
		return last == nil, nil
	})
	if err != nil || !ok {
		return fmt.Errorf("not accepting connections after start: %w", errors.Join(last, err))
	}
	return wantRecovery(inRecovery, standby)
}

// checkRunning is start on a node whose postmaster runs already.
func (d *Demoter) checkRunning(ctx context.Context, dsn string, standby bool) error {
	inRecovery, err := d.inRecovery(ctx, dsn)
	if err != nil {
		return fmt.Errorf("postmaster runs: %w", err)
	}
	return wantRecovery(inRecovery, standby)
}

func wantRecovery(inRecovery, standby bool) error {
	switch {
	case standby && !inRecovery:
		return ErrNotStandby
	case !standby && inRecovery:
		return ErrNotPrimary
	}
	return nil
}

func (d *Demoter) inRecovery(ctx context.Context, dsn string) (bool, error) {
	conn, err := d.connect(ctx, dsn)
	if err != nil {
		return false, err
	}
	defer closeConn(conn)
	var in bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&in); err != nil {
		return false, fmt.Errorf("check recovery state: %w", contextError(ctx, err))
	}
	return in, nil
}

func (d *Demoter) connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	c := Client{ConnectTimeout: d.connectTimeout(), MaxConnectTimeout: d.connectTimeout()}
	return c.connect(ctx, dsn)
}

// refuses checks that no server answers at dsn: the attempt must fail as
// unreachable (refused, no socket, or the server shutting down). A server
// that answers, even to refuse the role, is still running.
func (d *Demoter) refuses(ctx context.Context, dsn string) error {
	conn, err := d.connect(ctx, dsn)
	if err == nil {
		closeConn(conn)
		return fmt.Errorf("%w: a server accepts connections at the dsn", ErrStillRunning)
	}
	if errors.Is(err, ErrUnreachable) && ctx.Err() == nil {
		return nil
	}
	return fmt.Errorf("%w: a server answers at the dsn: %w", ErrStillRunning, err)
}

func (d *Demoter) check(dsn string) error {
	if d.DataDir == "" {
		return fmt.Errorf("no data directory: %w", ErrInvalid)
	}
	if dsn == "" {
		return fmt.Errorf("no dsn: %w", ErrInvalid)
	}
	fi, err := os.Stat(d.DataDir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data directory %s is not a directory: %w", d.DataDir, ErrInvalid)
	}
	return nil
}

// owner returns the owner of DataDir, which PostgreSQL runs as.
func (d *Demoter) owner() (uid, gid int, err error) {
	fi, err := os.Stat(d.DataDir)
	if err != nil {
		return 0, 0, fmt.Errorf("data directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, fmt.Errorf("owner of %s unknown", d.DataDir)
	}
	return int(st.Uid), int(st.Gid), nil
}

// writeStandbySignal creates standby.signal, owned by the data directory's
// owner, and syncs it and the directory: it must survive a power cut.
func (d *Demoter) writeStandbySignal() error {
	path := filepath.Join(d.DataDir, "standby.signal")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("write standby.signal: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write standby.signal: %w", err)
	}
	if os.Geteuid() == 0 {
		uid, gid, err := d.owner()
		if err != nil {
			return err
		}
		if err := os.Chown(path, uid, gid); err != nil {
			return fmt.Errorf("write standby.signal: %w", err)
		}
	}
	return d.syncDir()
}

func (d *Demoter) removeStandbySignal() error {
	err := os.Remove(filepath.Join(d.DataDir, "standby.signal"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove standby.signal: %w", err)
	}
	return d.syncDir()
}

func (d *Demoter) syncDir() error {
	dir, err := os.Open(d.DataDir)
	if err != nil {
		return fmt.Errorf("sync data directory: %w", err)
	}
	err = dir.Sync()
	if cerr := dir.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync data directory: %w", err)
	}
	return nil
}

// postmaster returns the pid of the running postmaster of DataDir, or 0
// when none runs: no postmaster.pid, or the pid in it is gone, or belongs
// to a process that is not a postmaster of DataDir (a stale file after a
// crash, its pid since reused).
func (d *Demoter) postmaster() (int, error) {
	data, err := os.ReadFile(filepath.Join(d.DataDir, "postmaster.pid"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read postmaster.pid: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		// Being written by a starting postmaster, or damaged: the
		// caller's DSN check still decides whether a server runs.
		return 0, nil
	}
	if !alive(pid) || !d.isPostmaster(pid) {
		return 0, nil
	}
	return pid, nil
}

// isPostmaster tells whether pid is a postgres process whose working
// directory is DataDir: a postmaster changes into its data directory.
func (d *Demoter) isPostmaster(pid int) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
		return false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return true // not ours to read: trust the name
	}
	want, err := filepath.EvalSymlinks(d.DataDir)
	if err != nil {
		want = d.DataDir
	}
	return filepath.Clean(cwd) == filepath.Clean(want)
}

// stop runs the stop command; its failure is reported only if the
// postmaster does not go by itself.
func (d *Demoter) stop(ctx context.Context, mode StopMode, deadline time.Time) error {
	sctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if len(d.Command) > 0 {
		return d.runCommand(sctx, d.Command, []string{EnvStopMode + "=" + string(mode)})
	}
	secs := max(1, int(time.Until(deadline).Seconds()))
	return d.runPgCtl(sctx, "stop", "-D", d.DataDir, "-m", string(mode), "-w", "-t", strconv.Itoa(secs))
}

func (d *Demoter) pgCtlStart(ctx context.Context) error {
	logFile := d.LogFile
	if logFile == "" {
		dir := filepath.Join(d.DataDir, "log")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("make log directory: %w", err)
		}
		if os.Geteuid() == 0 {
			uid, gid, err := d.owner()
			if err != nil {
				return err
			}
			if err := os.Chown(dir, uid, gid); err != nil {
				return fmt.Errorf("make log directory: %w", err)
			}
		}
		logFile = filepath.Join(dir, "witness-start.log")
	}
	secs := max(1, int(d.startTimeout().Seconds()))
	return d.runPgCtl(ctx, "start", "-D", d.DataDir, "-l", logFile, "-w", "-t", strconv.Itoa(secs))
}

// runPgCtl runs pg_ctl as the data directory's owner when Witness runs as
// root, from inside the data directory (the owner may not enter Witness's
// working directory).
func (d *Demoter) runPgCtl(ctx context.Context, args ...string) error {
	pgCtl := d.PgCtl
	if pgCtl == "" {
		pgCtl = DefaultPgCtl
	}
	cmd := exec.CommandContext(ctx, pgCtl, args...)
	cmd.Dir = d.DataDir
	cmd.Env = []string{"LC_ALL=C", "PATH=" + os.Getenv("PATH")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 {
		uid, gid, err := d.owner()
		if err != nil {
			return err
		}
		if uid == 0 {
			return fmt.Errorf("data directory %s is owned by root: %w", d.DataDir, ErrInvalid)
		}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	return runCmd(ctx, cmd)
}

// runCommand runs a configured argv as Witness's own user.
func (d *Demoter) runCommand(ctx context.Context, argv []string, env []string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), EnvDataDir+"="+d.DataDir)
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return runCmd(ctx, cmd)
}

// runCmd runs cmd and returns its output with its error. A child that
// keeps the output open (a server started without a log file) cannot hold
// it up past WaitDelay.
func runCmd(ctx context.Context, cmd *exec.Cmd) error {
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), contextError(ctx, err), bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// killPostmaster stops the postmaster (SIGSTOP, so it starts no new
// child), then kills its children and it (SIGKILL). A child of a killed
// postmaster would otherwise run on until it noticed, and a backend of it
// could still commit.
func killPostmaster(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("stop postmaster %d: %w", pid, err)
	}
	children := childrenOf(pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill postmaster %d: %w", pid, err)
	}
	for _, c := range children {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	// SIGKILL is delivered when the process next runs; on a loaded host
	// that takes a while. The demotion is done only when they are gone.
	deadline := time.Now().Add(killWait)
	for _, c := range children {
		for alive(c) {
			if time.Now().After(deadline) {
				return fmt.Errorf("child %d of postmaster %d survived SIGKILL: %w", c, pid, ErrStillRunning)
			}
			time.Sleep(pollInterval)
		}
	}
	return nil
}

// waitReaped waits a little for the zombie of a killed postmaster to be
// reaped by its parent. A zombie holds no memory and runs no code, so it
// counts as gone for a demotion; but until it is reaped its pid answers
// kill(pid, 0), and a postmaster started on the data directory takes the
// stale postmaster.pid for a live server and refuses to start.
func (d *Demoter) waitReaped(ctx context.Context) {
	data, err := os.ReadFile(filepath.Join(d.DataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	line, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return
	}
	_, _ = waitUntil(ctx, time.Now().Add(killWait), func() (bool, error) {
		return syscall.Kill(pid, 0) != nil, nil
	})
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var children []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(child); ok && ppid == pid {
			children = append(children, child)
		}
	}
	return children
}

// procStat returns the fields of /proc/pid/stat after the command name:
// state, ppid, …
func procStat(pid int) ([]string, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil, false
	}
	fields := strings.Fields(string(data[i+1:]))
	return fields, len(fields) >= 2
}

func parentOf(pid int) (int, bool) {
	fields, ok := procStat(pid)
	if !ok {
		return 0, false
	}
	ppid, err := strconv.Atoi(fields[1])
	return ppid, err == nil
}

// alive reports whether pid exists and is not a zombie: a postmaster that
// pg_ctl started has been reparented, and its zombie may linger until the
// new parent reaps it.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	fields, ok := procStat(pid)
	if !ok {
		// Gone between the two looks, or /proc unreadable: trust kill.
		return syscall.Kill(pid, 0) == nil
	}
	return fields[0] != "Z"
}

// waitGone waits until pid is gone, deadline passes or ctx ends; it
// reports whether pid is gone.
func waitGone(ctx context.Context, pid int, deadline time.Time) bool {
	gone, _ := waitUntil(ctx, deadline, func() (bool, error) { return !alive(pid), nil })
	return gone
}

func (d *Demoter) timeout() time.Duration      { return orDefault(d.Timeout, DefaultDemoteTimeout) }
func (d *Demoter) startTimeout() time.Duration { return orDefault(d.StartTimeout, DefaultStartTimeout) }
func (d *Demoter) connectTimeout() time.Duration {
	return orDefault(d.ConnectTimeout, time.Second)
}
