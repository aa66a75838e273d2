package postgres

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Reinstating turns an old primary, after its group moved away, into a
// streaming standby of the new primary, on the old primary's own host.
// The steps, each reported as a ReinstateStep:
//
//	check     the node is not a primary holding a higher token (a node
//	          that already streams from the new primary is left alone); the new
//	          primary is a primary, and its role may rewind (superuser or
//	          the function grants); the node can be rewound (wal_log_hints
//	          or data checksums)
//	repoint   a running standby (of the old primary) is pointed at the new
//	          one (ALTER SYSTEM SET primary_conninfo, reload); when it does
//	          not stream from it in time, it goes on as an old primary
//	stop      a running old primary is stopped (fast), standby.signal
//	          left in place
//	save      the old timeline's WAL past the fork point is copied aside,
//	          and its commits counted (how many, first and last time);
//	          when this cannot be done, nothing is rewound
//	rewind    pg_rewind against the new primary; when it cannot run, the
//	          data directory is moved aside (kept) and a fresh base backup
//	          taken (step "basebackup")
//	slot      the physical replication slot on the new primary
//	configure primary_conninfo and primary_slot_name in
//	          postgresql.auto.conf, standby.signal
//	start     the node starts as a standby
//	stream    its WAL receiver streams from the new primary; the token is
//	          recorded on it

// Defaults of Reinstater.
const (
	DefaultBinDir        = "/usr/lib/postgresql/15/bin"
	DefaultStreamTimeout = 60 * time.Second
)

// Errors of Reinstate, for errors.Is.
var (
	// ErrNotSaved means the commits past the fork could not be saved
	// first; nothing was rewound.
	ErrNotSaved = errors.New("diverged WAL not saved")
	// ErrSourceNotPrimary means the new primary named as the source is in
	// recovery (or is the node itself).
	ErrSourceNotPrimary = errors.New("source is not a primary")
	// ErrNotStreaming means the reinstated standby did not stream from the
	// new primary in time.
	ErrNotStreaming = errors.New("reinstated standby not streaming")
)

// Reinstater reinstates the node of its Demoter's DataDir as a standby.
// It runs on the database host, as root or as the data directory's owner.
type Reinstater struct {
	Demoter
	// BinDir holds pg_rewind, pg_basebackup, pg_controldata, pg_waldump
	// and postgres; empty means DefaultBinDir.
	BinDir string
	// SaveDir is where the old timeline's WAL past the fork is saved, in a
	// directory per token; empty means DataDir + "-witness-saved".
	SaveDir string
	// StreamTimeout bounds the wait for the WAL receiver to stream; zero
	// means DefaultStreamTimeout.
	StreamTimeout time.Duration
}

// ReinstateRequest says whom to follow.
type ReinstateRequest struct {
	Group string
	Token uint64 // the group's current token
	// LocalDSN reaches the node being reinstated once it runs.
	LocalDSN string
	// SourceDSN reaches the new primary, as a role with REPLICATION that
	// may rewind: it is pg_rewind's source and primary_conninfo.
	SourceDSN string
	// Slot is the replication slot to create on the new primary.
	Slot string
	// ApplicationName names the standby on the new primary.
	ApplicationName string
}

// ReinstateStep is the outcome of one step.
type ReinstateStep struct {
	Name     string
	Detail   string
	Err      error
	Started  time.Time
	Duration time.Duration
}

// SetAside describes the commits of the old timeline past the fork point,
// which the rewind discards, and where they were saved.
type SetAside struct {
	Fork         string // the fork LSN, 0/3000148
	Timeline     uint32 // the old timeline
	Transactions int    // commit records past the fork
	First, Last  time.Time
	Dir          string // the saved WAL segments and summary.txt
	Segments     int
}

func (s SetAside) String() string {
	if s.Transactions == 0 {
		return fmt.Sprintf("no transactions past the fork at %s on timeline %d; WAL saved to %s", s.Fork, s.Timeline, s.Dir)
	}
	txns := fmt.Sprintf("%d transactions", s.Transactions)
	if s.Transactions == 1 {
		txns = "1 transaction"
	}
	return fmt.Sprintf("%s committed %s to %s set aside past the fork at %s on timeline %d; WAL saved to %s (%d segments)",
		txns, s.First.UTC().Format(time.RFC3339Nano), s.Last.UTC().Format(time.RFC3339Nano), s.Fork, s.Timeline, s.Dir, s.Segments)
}

// ReinstateReport is what Reinstate did, step by step.
type ReinstateReport struct {
	Steps    []ReinstateStep
	Method   string // "rewind", "basebackup", "repoint" or "" when already a standby
	SetAside *SetAside
	// MovedAside is the old data directory kept by the base backup
	// fallback.
	MovedAside string
}

// Reinstate makes the node a streaming standby of the source. It is
// idempotent: a node that already streams from a primary is left alone.
// Every step is appended to the report, the failed one last.
func (r *Reinstater) Reinstate(ctx context.Context, req ReinstateRequest) (*ReinstateReport, error) {
	rep := &ReinstateReport{}
	err := r.reinstate(ctx, req, rep)
	if err != nil {
		return rep, fmt.Errorf("reinstate %s: %w", r.DataDir, err)
	}
	return rep, nil
}

func (r *Reinstater) step(ctx context.Context, rep *ReinstateReport, name string, fn func() (string, error)) error {
	began := time.Now()
	detail, err := fn()
	rep.Steps = append(rep.Steps, ReinstateStep{Name: name, Detail: detail, Err: err, Started: began, Duration: time.Since(began)})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return ctx.Err()
}

func (r *Reinstater) reinstate(ctx context.Context, req ReinstateRequest, rep *ReinstateReport) error {
	if req.Group == "" || req.Token == 0 || req.SourceDSN == "" || req.LocalDSN == "" {
		return fmt.Errorf("group, token, local and source dsn are required: %w", ErrInvalid)
	}
	if err := r.check(req.LocalDSN); err != nil {
		return err
	}
	var running, streaming, standby bool
	canRewind := true
	err := r.step(ctx, rep, "check", func() (string, error) {
		var notes []string
		st, err := r.localState(ctx, req)
		if err != nil {
			return "", err
		}
		running, standby = st.running, st.inRecovery
		if st.streaming && sameServer(st.sender, req.SourceDSN) {
			streaming = true
			return "already a streaming standby of " + st.sender, nil
		}
		if st.streaming {
			notes = append(notes, "a standby streaming from "+st.sender)
		}
		if err := r.checkSource(ctx, req.SourceDSN); err != nil {
			return "", err
		}
		if running && standby {
			past, err := pastFork(ctx, r.connect, req.LocalDSN, req.SourceDSN)
			if err != nil {
				return "", err
			}
			if past != "" {
				standby = false // rewound like an old primary
				notes = append(notes, past+": rewound, not repointed")
			}
		}
		hints, err := r.rewindable()
		if err != nil {
			return "", err
		}
		if hints != "" {
			canRewind = false
			notes = append(notes, hints+": a fresh base backup instead of pg_rewind")
		}
		return strings.Join(notes, "; "), nil
	})
	if err != nil || streaming {
		return err
	}
	if running && standby {
		// A standby of the old primary (or of nothing): point it at the
		// new one. When it cannot follow (it received WAL past the fork),
		// it is rewound like an old primary.
		err := r.step(ctx, rep, "repoint", func() (string, error) {
			if _, err := r.ensureSlot(ctx, req.SourceDSN, req.Slot); err != nil {
				return "", err
			}
			if err := repoint(ctx, req.LocalDSN, req.SourceDSN, req.ApplicationName, req.Slot); err != nil {
				return "", err
			}
			return r.waitStreaming(ctx, req, min(r.streamTimeout(), repointWait))
		})
		if err == nil {
			rep.Method = "repoint"
			return nil
		}
	}
	if running {
		err := r.step(ctx, rep, "stop", func() (string, error) {
			return "", r.Demote(ctx, req.LocalDSN, StopFast)
		})
		if err != nil {
			return err
		}
	}
	if err := r.ensureCleanShutdown(ctx); err != nil {
		return err
	}
	// pg_rewind and pg_basebackup bring the source's configuration; the
	// node keeps its own (its port, addresses, access rules).
	conf, err := r.readConfig()
	if err != nil {
		return err
	}
	rewound := false
	if canRewind {
		var fork *forkPoint
		err := r.step(ctx, rep, "save", func() (string, error) {
			var err error
			fork, err = r.dryRun(ctx, req.SourceDSN)
			if err != nil {
				return "", err
			}
			if fork == nil {
				return "no rewind required: the node has nothing past the new primary's history", nil
			}
			sa, err := r.save(ctx, req.Token, fork)
			if err != nil {
				return "", fmt.Errorf("%w: %w", ErrNotSaved, err)
			}
			rep.SetAside = sa
			return sa.String(), nil
		})
		if errors.Is(err, ErrNotSaved) {
			return err
		}
		if err == nil {
			err = r.step(ctx, rep, "rewind", func() (string, error) {
				return "", r.rewind(ctx, req.SourceDSN)
			})
			rewound = err == nil
		}
	}
	if rewound {
		rep.Method = "rewind"
	} else {
		err := r.step(ctx, rep, "basebackup", func() (string, error) {
			if rep.SetAside == nil {
				// Nothing saved by the rewind path: keep the whole old
				// data directory, which holds the old timeline.
				rep.SetAside = &SetAside{Dir: "(in the old data directory)"}
			}
			aside, err := r.baseBackup(ctx, req)
			rep.MovedAside = aside
			if err != nil {
				return "", err
			}
			return "old data directory kept at " + aside, nil
		})
		if err != nil {
			return err
		}
		rep.Method = "basebackup"
	}
	if err := r.writeConfig(conf); err != nil {
		return err
	}
	if err := r.step(ctx, rep, "slot", func() (string, error) {
		return r.ensureSlot(ctx, req.SourceDSN, req.Slot)
	}); err != nil {
		return err
	}
	if err := r.step(ctx, rep, "configure", func() (string, error) {
		return "", r.configure(req)
	}); err != nil {
		return err
	}
	if err := r.step(ctx, rep, "start", func() (string, error) {
		return "", r.StartAsStandby(ctx, req.LocalDSN)
	}); err != nil {
		return err
	}
	return r.step(ctx, rep, "stream", func() (string, error) {
		return r.waitStreaming(ctx, req, r.streamTimeout())
	})
}

// pastFork says how a running standby's history left the source's ("" when
// it has not): its timeline is not one the source's history holds, or it
// replayed past the point where the source's timeline forked from it. Such
// a node (an old primary that came back as a standby) connects to the
// source and never follows it: it is rewound at once rather than after a
// repoint times out. The source's history file is read with
// pg_read_binary_file, which a role that may rewind can execute.
func pastFork(ctx context.Context, connect func(context.Context, string) (*pgx.Conn, error), localDSN, sourceDSN string) (string, error) {
	conn, err := connect(ctx, localDSN)
	if err != nil {
		return "", err
	}
	var replayed string
	var tli int32
	err = conn.QueryRow(ctx, `SELECT coalesce(pg_last_wal_replay_lsn(), '0/0')::text,
		(SELECT timeline_id FROM pg_control_checkpoint())`).Scan(&replayed, &tli)
	closeConn(conn)
	if err != nil {
		return "", contextError(ctx, err)
	}
	src, err := connect(ctx, sourceDSN)
	if err != nil {
		return "", fmt.Errorf("new primary: %w", err)
	}
	defer closeConn(src)
	var srcTLI int32
	err = src.QueryRow(ctx, `SELECT ('x' || substr(pg_walfile_name(pg_current_wal_flush_lsn()), 1, 8))::bit(32)::int`).Scan(&srcTLI)
	if err != nil {
		return "", fmt.Errorf("new primary's timeline: %w", contextError(ctx, err))
	}
	switch {
	case tli == srcTLI:
		return "", nil
	case tli > srcTLI:
		return fmt.Sprintf("a standby on timeline %d, newer than the new primary's %d", tli, srcTLI), nil
	}
	var history string
	err = src.QueryRow(ctx, `SELECT convert_from(pg_read_binary_file(format('pg_wal/%s.history', lpad(upper(to_hex($1::int)), 8, '0'))), 'UTF8')`, srcTLI).Scan(&history)
	if err != nil {
		return "", fmt.Errorf("new primary's timeline history: %w", contextError(ctx, err))
	}
	at, ok, err := switchPoint(history, tli)
	if err != nil {
		return "", fmt.Errorf("new primary's timeline %d history: %w", srcTLI, err)
	}
	if !ok {
		return fmt.Sprintf("a standby on timeline %d, which the new primary's history (timeline %d) does not hold", tli, srcTLI), nil
	}
	pos, err := ParseLSN(replayed)
	if err != nil {
		return "", err
	}
	if pos > at {
		return fmt.Sprintf("a standby that replayed timeline %d to %s, past the fork at %s", tli, replayed, FormatLSN(at)), nil
	}
	return "", nil
}

// switchPoint reads where timeline tli ended in a timeline history file
// (lines of parent timeline, switch position and reason).
func switchPoint(history string, tli int32) (uint64, bool, error) {
	for line := range strings.Lines(history) {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		parent, err := strconv.ParseInt(f[0], 10, 32)
		if err != nil {
			return 0, false, fmt.Errorf("line %q: %w", strings.TrimSpace(line), err)
		}
		if int32(parent) != tli {
			continue
		}
		at, err := ParseLSN(f[1])
		return at, err == nil, err
	}
	return 0, false, nil
}

type localState struct {
	running, inRecovery, streaming bool
	sender                         string // host:port the WAL receiver streams from
}

// sameServer says whether sender (host:port) is the server of dsn.
func sameServer(sender, dsn string) bool {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return false
	}
	return sender == fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
}

// localState reads the node: running or not, a standby streaming or not,
// and refuses one that holds a higher token for the group.
func (r *Reinstater) localState(ctx context.Context, req ReinstateRequest) (localState, error) {
	pid, err := r.postmaster()
	if err != nil {
		return localState{}, err
	}
	if pid == 0 {
		tokens, err := r.offlineTokens()
		if err != nil {
			return localState{}, err
		}
		if held := tokens[req.Group]; held.Token > req.Token {
			return localState{}, &HigherTokenError{Group: req.Group, Held: held.Token, Offered: req.Token}
		}
		return localState{}, nil
	}
	st, err := (&Client{ConnectTimeout: r.connectTimeout()}).Status(ctx, req.LocalDSN)
	if err != nil {
		return localState{}, err
	}
	if held, _ := st.Token(req.Group); held > req.Token {
		return localState{}, &HigherTokenError{Group: req.Group, Held: held, Offered: req.Token}
	}
	ls := localState{running: true, inRecovery: st.InRecovery, streaming: st.InRecovery && st.Streaming}
	if ls.streaming {
		conn, err := r.connect(ctx, req.LocalDSN)
		if err != nil {
			return localState{}, err
		}
		defer closeConn(conn)
		err = conn.QueryRow(ctx, `SELECT coalesce((SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver), '')`).Scan(&ls.sender)
		if err != nil {
			return localState{}, contextError(ctx, err)
		}
	}
	return ls, nil
}

// offlineTokens reads witness.tokens from postgresql.auto.conf of a
// stopped node.
func (r *Reinstater) offlineTokens() (map[string]Record, error) {
	data, err := os.ReadFile(filepath.Join(r.DataDir, "postgresql.auto.conf"))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]Record{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read node tokens: %w", err)
	}
	var value string
	found := false
	for line := range strings.Lines(string(data)) {
		name, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(name) != nodeTokensSetting {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' {
			return nil, fmt.Errorf("%s: %q: %w", nodeTokensSetting, v, ErrNodeTokens)
		}
		value, found = strings.ReplaceAll(v[1:len(v)-1], "''", "'"), true
	}
	if !found {
		return map[string]Record{}, nil
	}
	return parseNodeTokens(value)
}

// checkSource checks that the source is a primary and that its role may
// rewind: superuser, or EXECUTE on the functions pg_rewind calls.
func (r *Reinstater) checkSource(ctx context.Context, dsn string) error {
	conn, err := r.connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("new primary: %w", err)
	}
	defer closeConn(conn)
	missing, inRecovery, err := sourceGrants(ctx, conn)
	if err != nil {
		return err
	}
	if inRecovery {
		return fmt.Errorf("new primary: %w", ErrSourceNotPrimary)
	}
	if len(missing) > 0 {
		return fmt.Errorf("new primary: role lacks %s: %w", strings.Join(missing, ", "), ErrAuth)
	}
	return nil
}

// rewindFunctions are the functions pg_rewind's source role must be able
// to execute when it is not a superuser (PostgreSQL 15 documentation).
var rewindFunctions = []string{
	"pg_catalog.pg_ls_dir(text, boolean, boolean)",
	"pg_catalog.pg_stat_file(text, boolean)",
	"pg_catalog.pg_read_binary_file(text)",
	"pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
}

func sourceGrants(ctx context.Context, conn *pgx.Conn) (missing []string, inRecovery bool, err error) {
	var super, repl bool
	err = conn.QueryRow(ctx, `SELECT pg_is_in_recovery(), rolsuper, rolreplication
		FROM pg_roles WHERE rolname = current_user`).Scan(&inRecovery, &super, &repl)
	if err != nil {
		return nil, false, fmt.Errorf("read source role: %w", contextError(ctx, err))
	}
	if !repl && !super {
		missing = append(missing, "REPLICATION")
	}
	if super {
		return missing, inRecovery, nil
	}
	for _, fn := range rewindFunctions {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT has_function_privilege($1, 'EXECUTE')", fn).Scan(&ok); err != nil {
			return nil, false, fmt.Errorf("check grant on %s: %w", fn, contextError(ctx, err))
		}
		if !ok {
			missing = append(missing, "EXECUTE on "+fn)
		}
	}
	return missing, inRecovery, nil
}

// CheckRewind says, for a node that runs, what stands in the way of a
// later pg_rewind with it as the target (asTarget) or the source: neither
// wal_log_hints nor data checksums on; a source role that is not a
// superuser and lacks REPLICATION or a function grant. Nil when nothing
// does. For checking a group's nodes when its configuration is applied,
// while there is time to fix them.
func CheckRewind(ctx context.Context, dsn string) ([]string, error) {
	c := Client{}
	conn, err := c.connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer closeConn(conn)
	var hints, sums, fpw string
	if err := conn.QueryRow(ctx, "SELECT current_setting('wal_log_hints'), current_setting('data_checksums'), current_setting('full_page_writes')").Scan(&hints, &sums, &fpw); err != nil {
		return nil, fmt.Errorf("read wal_log_hints: %w", contextError(ctx, err))
	}
	var problems []string
	if fpw != "on" {
		problems = append(problems, "full_page_writes is off: pg_rewind refuses such a source")
	}
	if hints != "on" && sums != "on" {
		problems = append(problems, "neither wal_log_hints nor data checksums are on (set wal_log_hints = on and restart, or enable checksums with pg_checksums while stopped): pg_rewind cannot run, a reinstate needs a full base backup")
	}
	missing, _, err := sourceGrants(ctx, conn)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		problems = append(problems, "the role of the dsn lacks "+strings.Join(missing, ", ")+": pg_rewind cannot use this node as its source")
	}
	return problems, nil
}

// rewindable reads pg_controldata: "" when wal_log_hints or data checksums
// were on, else what is missing.
func (r *Reinstater) rewindable() (string, error) {
	out, err := r.output(context.Background(), false, "pg_controldata", "-D", r.DataDir)
	if err != nil {
		return "", err
	}
	cd := parseControlData(out)
	if cd["wal_log_hints setting"] == "on" || (cd["Data page checksum version"] != "" && cd["Data page checksum version"] != "0") {
		return "", nil
	}
	return "neither wal_log_hints nor data checksums were on", nil
}

func parseControlData(out string) map[string]string {
	m := map[string]string{}
	for line := range strings.Lines(out) {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// ensureCleanShutdown runs the node in single-user mode once when it was
// not shut down cleanly (a self-fence stops it immediately), as pg_rewind
// would, so that its WAL is complete and the dry run can read it.
func (r *Reinstater) ensureCleanShutdown(ctx context.Context) error {
	out, err := r.output(ctx, false, "pg_controldata", "-D", r.DataDir)
	if err != nil {
		return err
	}
	state := parseControlData(out)["Database cluster state"]
	if state == "shut down" || state == "shut down in recovery" {
		return nil
	}
	// A single-user server cannot run in standby mode: standby.signal is
	// put back as soon as it has exited.
	sig := filepath.Join(r.DataDir, "standby.signal")
	_, serr := os.Stat(sig)
	if serr == nil {
		if err := os.Remove(sig); err != nil {
			return fmt.Errorf("clean shutdown: %w", err)
		}
		defer func() { _ = r.writeStandbySignal() }()
	}
	if _, err := r.output(ctx, true, "postgres", "--single", "-F", "-D", r.DataDir, "template1"); err != nil {
		return fmt.Errorf("clean shutdown in single-user mode (state %q): %w", state, err)
	}
	return nil
}

type forkPoint struct {
	lsn      uint64
	timeline uint32
}

var divergedRE = regexp.MustCompile(`servers diverged at WAL location ([0-9A-F]+)/([0-9A-F]+) on timeline (\d+)`)

// dryRun asks pg_rewind where the histories forked; nil when no rewind is
// needed.
func (r *Reinstater) dryRun(ctx context.Context, source string) (*forkPoint, error) {
	// pg_rewind reads the source's timeline from its control file, which
	// a freshly promoted primary updates only at its next checkpoint.
	if err := r.checkpoint(ctx, source); err != nil {
		return nil, err
	}
	out, err := r.output(ctx, true, "pg_rewind", "--dry-run", "--target-pgdata="+r.DataDir, "--source-server="+source)
	if err != nil {
		return nil, err
	}
	if strings.Contains(out, "no rewind required") {
		return nil, nil
	}
	m := divergedRE.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("pg_rewind --dry-run named no fork point: %s", lastLine(out))
	}
	hi, _ := strconv.ParseUint(m[1], 16, 32)
	lo, _ := strconv.ParseUint(m[2], 16, 32)
	tli, _ := strconv.ParseUint(m[3], 10, 32)
	return &forkPoint{lsn: hi<<32 | lo, timeline: uint32(tli)}, nil
}

// checkpoint runs CHECKPOINT on the source (superuser or pg_checkpoint).
func (r *Reinstater) checkpoint(ctx context.Context, source string) error {
	conn, err := r.connect(ctx, source)
	if err != nil {
		return fmt.Errorf("new primary: %w", err)
	}
	defer closeConn(conn)
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint on the new primary: %w", contextError(ctx, err))
	}
	return nil
}

func formatLSN(lsn uint64) string { return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn)) }

var segmentRE = regexp.MustCompile(`^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$`)

// save copies the old timeline's WAL segments from the one holding the
// fork point on, and every history file, into SaveDir/token-N, synced;
// then counts the commits in the copy with pg_waldump and writes
// summary.txt.
func (r *Reinstater) save(ctx context.Context, token uint64, fork *forkPoint) (*SetAside, error) {
	out, err := r.output(ctx, false, "pg_controldata", "-D", r.DataDir)
	if err != nil {
		return nil, err
	}
	segSize, err := strconv.ParseUint(parseControlData(out)["Bytes per WAL segment"], 10, 64)
	if err != nil || segSize == 0 {
		return nil, fmt.Errorf("wal segment size unknown")
	}
	perID := uint64(0x100000000) / segSize
	forkSeg := fork.lsn / segSize
	dir := filepath.Join(r.saveDir(), fmt.Sprintf("token-%d", token))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	walDir := filepath.Join(r.DataDir, "pg_wal")
	entries, err := os.ReadDir(walDir)
	if err != nil {
		return nil, err
	}
	sa := &SetAside{Fork: formatLSN(fork.lsn), Timeline: fork.timeline, Dir: dir}
	for _, e := range entries {
		name := e.Name()
		keep := strings.HasSuffix(name, ".history")
		if m := segmentRE.FindStringSubmatch(name); m != nil {
			tli, _ := strconv.ParseUint(m[1], 16, 32)
			id, _ := strconv.ParseUint(m[2], 16, 32)
			off, _ := strconv.ParseUint(m[3], 16, 32)
			if uint32(tli) == fork.timeline && id*perID+off >= forkSeg {
				keep = true
				sa.Segments++
			}
		}
		if keep {
			if err := copyFileSync(filepath.Join(walDir, name), filepath.Join(dir, name)); err != nil {
				return nil, err
			}
		}
	}
	if sa.Segments == 0 {
		return nil, fmt.Errorf("no WAL segment of timeline %d from %s in %s", fork.timeline, sa.Fork, walDir)
	}
	// Counted in the copy, which proves it readable.
	dump, _ := r.output(ctx, false, "pg_waldump", "--path="+dir, "--timeline="+strconv.FormatUint(uint64(fork.timeline), 10), "--start="+sa.Fork)
	sa.Transactions, sa.First, sa.Last = countCommits(dump)
	summary := sa.String() + "\n\nReplay or inspect with: pg_waldump --path=" + dir + " --timeline=" +
		strconv.FormatUint(uint64(fork.timeline), 10) + " --start=" + sa.Fork + "\n"
	if err := writeFileSync(filepath.Join(dir, "summary.txt"), []byte(summary)); err != nil {
		return nil, err
	}
	if err := syncPath(dir); err != nil {
		return nil, err
	}
	return sa, syncPath(filepath.Dir(dir))
}

// countCommits counts COMMIT records in pg_waldump's output and returns
// the first and last commit time.
func countCommits(dump string) (n int, first, last time.Time) {
	sc := bufio.NewScanner(strings.NewReader(dump))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "rmgr: Transaction") {
			continue
		}
		_, desc, ok := strings.Cut(line, "desc: COMMIT ")
		if !ok || len(desc) < len("2006-01-02 15:04:05.000000") {
			continue
		}
		n++
		at, err := time.ParseInLocation("2006-01-02 15:04:05.000000", desc[:26], time.UTC)
		if err != nil {
			continue
		}
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	return n, first, last
}

func (r *Reinstater) rewind(ctx context.Context, source string) error {
	_, err := r.output(ctx, true, "pg_rewind", "--target-pgdata="+r.DataDir, "--source-server="+source)
	return err
}

// baseBackup moves the data directory aside (kept, never removed) and
// clones the source into a fresh one.
func (r *Reinstater) baseBackup(ctx context.Context, req ReinstateRequest) (string, error) {
	uid, gid, err := r.owner()
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(r.DataDir)
	if err != nil {
		return "", err
	}
	aside := fmt.Sprintf("%s.witness-old-%d", r.DataDir, req.Token)
	if _, err := os.Stat(aside); err == nil {
		aside = fmt.Sprintf("%s.witness-old-%d-%d", r.DataDir, req.Token, time.Now().Unix())
	}
	if err := os.Rename(r.DataDir, aside); err != nil {
		return "", fmt.Errorf("move data directory aside: %w", err)
	}
	if err := os.Mkdir(r.DataDir, fi.Mode().Perm()); err != nil {
		return aside, err
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(r.DataDir, uid, gid); err != nil {
			return aside, err
		}
	}
	_, err = r.output(ctx, true, "pg_basebackup", "-d", req.SourceDSN, "-D", r.DataDir, "-X", "stream", "-c", "fast")
	if err != nil {
		return aside, err
	}
	return aside, nil
}

// ensureSlot creates the physical replication slot on the new primary
// (PostgreSQL 15 has no failover slots: the old one is not there).
func (r *Reinstater) ensureSlot(ctx context.Context, source, slot string) (string, error) {
	if slot == "" {
		return "no slot asked for", nil
	}
	conn, err := r.connect(ctx, source)
	if err != nil {
		return "", err
	}
	defer closeConn(conn)
	var created bool
	err = conn.QueryRow(ctx, `SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&created)
	if err != nil {
		return "", contextError(ctx, err)
	}
	if !created {
		return "slot " + slot + " exists", nil
	}
	if _, err := conn.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true)", slot); err != nil && !hasCode(err, "42710") {
		return "", fmt.Errorf("create slot %s: %w", slot, contextError(ctx, err))
	}
	return "created slot " + slot, nil
}

// configure writes primary_conninfo and primary_slot_name into
// postgresql.auto.conf (replacing earlier ones) and standby.signal.
func (r *Reinstater) configure(req ReinstateRequest) error {
	conninfo, err := primaryConninfo(req.SourceDSN, req.ApplicationName)
	if err != nil {
		return err
	}
	path := filepath.Join(r.DataDir, "postgresql.auto.conf")
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var b strings.Builder
	for line := range strings.Lines(string(data)) {
		name, _, _ := strings.Cut(line, "=")
		switch strings.TrimSpace(name) {
		case "primary_conninfo", "primary_slot_name":
			continue
		}
		b.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			b.WriteByte('\n')
		}
	}
	fmt.Fprintf(&b, "primary_conninfo = %s\n", quoteLiteral(conninfo))
	if req.Slot != "" {
		fmt.Fprintf(&b, "primary_slot_name = %s\n", quoteLiteral(req.Slot))
	}
	if err := writeFileSync(path, []byte(b.String())); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		uid, gid, err := r.owner()
		if err != nil {
			return err
		}
		if err := os.Chown(path, uid, gid); err != nil {
			return err
		}
	}
	return r.writeStandbySignal()
}

// primaryConninfo turns a DSN into libpq keywords for primary_conninfo,
// with application_name set.
func primaryConninfo(dsn, appName string) (string, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "", fmt.Errorf("source dsn: %w", ErrInvalid)
	}
	kv := [][2]string{{"host", cfg.Host}, {"port", strconv.Itoa(int(cfg.Port))}, {"user", cfg.User}}
	if cfg.Password != "" {
		kv = append(kv, [2]string{"password", cfg.Password})
	}
	if cfg.TLSConfig == nil {
		kv = append(kv, [2]string{"sslmode", "disable"})
	}
	if appName != "" {
		kv = append(kv, [2]string{"application_name", appName})
	}
	var parts []string
	for _, p := range kv {
		v := strings.ReplaceAll(strings.ReplaceAll(p[1], `\`, `\\`), `'`, `\'`)
		parts = append(parts, p[0]+"='"+v+"'")
	}
	return strings.Join(parts, " "), nil
}

// waitStreaming waits until the WAL receiver streams, then records the
// group's token on the node.
func (r *Reinstater) waitStreaming(ctx context.Context, req ReinstateRequest, timeout time.Duration) (string, error) {
	// Streaming is not enough: a standby past the fork connects, then
	// cannot follow the new timeline. It must receive the source's
	// timeline and replay what the source had flushed.
	src, err := r.connect(ctx, req.SourceDSN)
	if err != nil {
		return "", fmt.Errorf("new primary: %w", err)
	}
	var target string
	var tli int32
	err = src.QueryRow(ctx, `SELECT pg_current_wal_flush_lsn()::text,
		('x' || substr(pg_walfile_name(pg_current_wal_flush_lsn()), 1, 8))::bit(32)::int`).Scan(&target, &tli)
	closeConn(src)
	if err != nil {
		return "", fmt.Errorf("new primary's position: %w", contextError(ctx, err))
	}
	var status, sender string
	var got int32
	var caughtUp bool
	var last error
	ok, err := waitUntil(ctx, time.Now().Add(timeout), func() (bool, error) {
		conn, err := r.connect(ctx, req.LocalDSN)
		if err != nil {
			last = err
			return false, nil
		}
		defer closeConn(conn)
		last = conn.QueryRow(ctx, `SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), ''),
			coalesce((SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver), ''),
			coalesce((SELECT received_tli FROM pg_stat_wal_receiver), 0),
			coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)`, target).Scan(&status, &sender, &got, &caughtUp)
		return last == nil && status == "streaming" && got == tli && caughtUp, nil
	})
	if err != nil || !ok {
		return "", fmt.Errorf("%w: receiver %q on timeline %d (the new primary's is %d), replayed to %s: %v: %w",
			ErrNotStreaming, status, got, tli, target, caughtUp, errors.Join(last, err))
	}
	conn, err := r.connect(ctx, req.LocalDSN)
	if err != nil {
		return "", err
	}
	defer closeConn(conn)
	if err := recordNode(ctx, conn, req.Group, req.Token, RoleFenced); err != nil {
		return "", err
	}
	return fmt.Sprintf("streaming from %s on timeline %d, replayed to %s", sender, tli, target), nil
}

// RepointStandby points a running standby at a new primary:
// ALTER SYSTEM SET primary_conninfo, then a reload (PostgreSQL 13+ applies
// it without a restart). A node that is not in recovery is ErrNotStandby.
func RepointStandby(ctx context.Context, dsn, sourceDSN, appName string) error {
	return repoint(ctx, dsn, sourceDSN, appName, "")
}

// repoint is RepointStandby that also sets primary_slot_name when slot is
// not empty.
func repoint(ctx context.Context, dsn, sourceDSN, appName, slot string) error {
	conninfo, err := primaryConninfo(sourceDSN, appName)
	if err != nil {
		return err
	}
	c := Client{}
	conn, err := c.connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("repoint standby: %w", err)
	}
	defer closeConn(conn)
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return fmt.Errorf("repoint standby: %w", contextError(ctx, err))
	}
	if !inRecovery {
		return fmt.Errorf("repoint standby: %w", ErrNotStandby)
	}
	stmts := []string{"ALTER SYSTEM SET primary_conninfo = " + quoteLiteral(conninfo)}
	if slot != "" {
		stmts = append(stmts, "ALTER SYSTEM SET primary_slot_name = "+quoteLiteral(slot))
	}
	for _, stmt := range append(stmts, "SELECT pg_reload_conf()") {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("repoint standby: %w", contextError(ctx, err))
		}
	}
	return nil
}

// output runs a PostgreSQL program of BinDir, as the data directory's
// owner when asOwner and Witness runs as root, in UTC, and returns its
// combined output.
func (r *Reinstater) output(ctx context.Context, asOwner bool, prog string, args ...string) (string, error) {
	bin := r.BinDir
	if bin == "" {
		bin = DefaultBinDir
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, prog), args...)
	cmd.Dir = r.DataDir
	if _, err := os.Stat(r.DataDir); err != nil {
		cmd.Dir = "/"
	}
	cmd.Env = []string{"LC_ALL=C", "TZ=UTC", "PGTZ=UTC", "PATH=" + os.Getenv("PATH")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if asOwner && os.Geteuid() == 0 {
		uid, gid, err := r.owner()
		if err != nil {
			return "", err
		}
		if uid == 0 {
			return "", fmt.Errorf("data directory %s is owned by root: %w", r.DataDir, ErrInvalid)
		}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", prog, contextError(ctx, err), lastLine(out.String()))
	}
	return out.String(), nil
}

func lastLine(s string) string {
	lines := slices.Collect(strings.Lines(strings.TrimSpace(s)))
	if len(lines) == 0 {
		return ""
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

// ownConfig are the configuration files a node keeps across a rewind.
var ownConfig = []string{"postgresql.conf", "pg_hba.conf", "pg_ident.conf"}

func (r *Reinstater) readConfig() (map[string][]byte, error) {
	conf := map[string][]byte{}
	for _, name := range ownConfig {
		data, err := os.ReadFile(filepath.Join(r.DataDir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("keep configuration: %w", err)
		}
		conf[name] = data
	}
	return conf, nil
}

func (r *Reinstater) writeConfig(conf map[string][]byte) error {
	for name, data := range conf {
		path := filepath.Join(r.DataDir, name)
		if err := writeFileSync(path, data); err != nil {
			return fmt.Errorf("restore configuration: %w", err)
		}
		if os.Geteuid() == 0 {
			uid, gid, err := r.owner()
			if err != nil {
				return err
			}
			if err := os.Chown(path, uid, gid); err != nil {
				return fmt.Errorf("restore configuration: %w", err)
			}
		}
	}
	return nil
}

// repointWait bounds the wait for a repointed standby to stream before it
// is rewound instead.
const repointWait = 15 * time.Second

func (r *Reinstater) streamTimeout() time.Duration {
	return orDefault(r.StreamTimeout, DefaultStreamTimeout)
}

func (r *Reinstater) saveDir() string {
	if r.SaveDir != "" {
		return r.SaveDir
	}
	return filepath.Clean(r.DataDir) + "-witness-saved"
}

func copyFileSync(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func writeFileSync(path string, data []byte) error {
	tmp := path + ".witness-tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncPath(filepath.Dir(path))
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
