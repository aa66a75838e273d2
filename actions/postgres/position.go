package postgres

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Position reads the node's WAL position: pg_current_wal_lsn() on a
// primary, pg_last_wal_replay_lsn() on a standby (what it has replayed, so
// what it would open with if promoted now), in bytes from 0/0.
func (c *Client) Position(ctx context.Context, dsn string) (lsn uint64, inRecovery bool, err error) {
	conn, err := c.connect(ctx, dsn)
	if err != nil {
		return 0, false, fmt.Errorf("read WAL position: %w", err)
	}
	defer closeConn(conn)
	var pos int64
	err = conn.QueryRow(ctx, `SELECT pg_is_in_recovery(),
		COALESCE(pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, '0/0'), 0)::bigint`).
		Scan(&inRecovery, &pos)
	if err != nil {
		return 0, false, fmt.Errorf("read WAL position: %w", contextError(ctx, err))
	}
	return uint64(max(pos, 0)), inRecovery, nil
}

// FinalPosition reads, with pg_controldata, the location of the stopped
// node's latest checkpoint: after a clean (fast) shutdown, the shutdown
// checkpoint, which follows every commit the node acknowledged. A standby
// that has replayed up to it has all of them. It is 0 with an error when
// the node did not shut down cleanly: its last checkpoint may precede
// commits.
func (d *Demoter) FinalPosition(ctx context.Context) (uint64, error) {
	out, err := d.controlData(ctx)
	if err != nil {
		return 0, err
	}
	return finalCheckpoint(out)
}

// controlData runs pg_controldata on DataDir (as its owner when Witness
// runs as root) and returns its output.
func (d *Demoter) controlData(ctx context.Context) ([]byte, error) {
	pgCtl := d.PgCtl
	if pgCtl == "" {
		pgCtl = DefaultPgCtl
	}
	cmd := exec.CommandContext(ctx, filepath.Join(filepath.Dir(pgCtl), "pg_controldata"), "-D", d.DataDir)
	cmd.Dir = d.DataDir
	cmd.Env = []string{"LC_ALL=C", "PATH=" + os.Getenv("PATH")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 {
		uid, gid, err := d.owner()
		if err != nil {
			return nil, err
		}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("pg_controldata: %w: %s", contextError(ctx, err), bytes.TrimSpace(out.Bytes()))
	}
	return out.Bytes(), nil
}

// stoppedInRecovery reads from pg_controldata's output whether a stopped
// node was a standby when it stopped (shut down in recovery, or stopped
// at once while in recovery); an unknown state is an error.
func stoppedInRecovery(out []byte) (bool, error) {
	switch state := parseControlData(string(out))["Database cluster state"]; state {
	case "shut down", "in production", "shutting down", "in crash recovery":
		return false, nil
	case "shut down in recovery", "in archive recovery", "starting up":
		return true, nil
	default:
		return false, fmt.Errorf("pg_controldata: cluster state %q: %w", state, ErrInvalid)
	}
}

// StoppedPrimary reports whether the node at DataDir is a demoted
// primary: no postmaster runs, standby.signal is in place, and the control
// file says it was not in recovery when it stopped. That is what Demote
// leaves; a stopped standby is not one.
func (d *Demoter) StoppedPrimary(ctx context.Context) (bool, error) {
	stopped, standby, err := d.stopped(ctx)
	return stopped && !standby, err
}

// StoppedStandby reports whether the node at DataDir is a stopped
// standby that stays one: no postmaster runs, standby.signal is in place,
// and the control file says it was in recovery when it stopped. Started,
// it is the standby it was.
func (d *Demoter) StoppedStandby(ctx context.Context) (bool, error) {
	stopped, standby, err := d.stopped(ctx)
	return stopped && standby, err
}

// stopped reports whether no postmaster runs at DataDir and
// standby.signal is in place, and if so whether the node was in recovery
// when it stopped.
func (d *Demoter) stopped(ctx context.Context) (stopped, inRecovery bool, err error) {
	if d.DataDir == "" {
		return false, false, fmt.Errorf("no data directory: %w", ErrInvalid)
	}
	pid, err := d.postmaster()
	if err != nil || pid != 0 {
		return false, false, err
	}
	if _, err := os.Stat(filepath.Join(d.DataDir, "standby.signal")); err != nil {
		if os.IsNotExist(err) {
			return false, false, nil
		}
		return false, false, err
	}
	out, err := d.controlData(ctx)
	if err != nil {
		return false, false, err
	}
	standby, err := stoppedInRecovery(out)
	if err != nil {
		return false, false, err
	}
	return true, standby, nil
}

// finalCheckpoint reads the latest checkpoint location of a cleanly shut
// down cluster from pg_controldata's output (LC_ALL=C).
func finalCheckpoint(out []byte) (uint64, error) {
	fields := parseControlData(string(out))
	state := fields["Database cluster state"]
	if state != "shut down" && state != "shut down in recovery" {
		return 0, fmt.Errorf("pg_controldata: cluster state %q, not shut down cleanly: %w", state, ErrInvalid)
	}
	lsn, err := ParseLSN(fields["Latest checkpoint location"])
	if err != nil {
		return 0, fmt.Errorf("pg_controldata: latest checkpoint location: %w", err)
	}
	return lsn, nil
}

// ParseLSN reads a WAL position written as PostgreSQL does (0/3A000000).
func ParseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("WAL position %q: %w", s, ErrInvalid)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("WAL position %q: %w", s, ErrInvalid)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("WAL position %q: %w", s, ErrInvalid)
	}
	return h<<32 | l, nil
}

// FormatLSN writes a WAL position as PostgreSQL does; 0 is "unknown".
func FormatLSN(lsn uint64) string {
	if lsn == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn))
}
