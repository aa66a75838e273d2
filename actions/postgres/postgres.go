package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Defaults for the zero fields of Client.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultPromoteWait    = 60 * time.Second
	DefaultSettleWait     = 10 * time.Second
)

// pollInterval is how often Promote and Fence look whether a reload or a
// session termination took effect.
const pollInterval = 10 * time.Millisecond

// applicationName marks Witness's own sessions in pg_stat_activity.
const applicationName = "witness"

// Role is what Witness last made of a node for a group.
type Role string

// Roles recorded in the token table.
const (
	RolePrimary Role = "primary"
	RoleFenced  Role = "fenced"
)

// Record is one row of a node's token table.
type Record struct {
	Token     uint64
	Role      Role
	Site      string
	UpdatedAt time.Time
}

// NodeStatus is the actual state of one PostgreSQL node.
type NodeStatus struct {
	// InRecovery is pg_is_in_recovery(): the node is a standby.
	InRecovery bool
	// ReadOnly is default_transaction_read_only as a new session sees it;
	// true on a fenced node.
	ReadOnly bool
	// ReceiverStatus is pg_stat_wal_receiver.status ("streaming",
	// "catchup", "stopping", …), empty when no WAL receiver runs, as on a
	// primary or a standby that lost its primary.
	ReceiverStatus string
	// Streaming is ReceiverStatus == "streaming".
	Streaming bool
	// Groups holds the token table by group; empty when the table does not
	// exist yet. On a standby these are its primary's rows, replayed.
	Groups map[string]Record
	// Node holds the node's own tokens by group (the setting
	// witness.tokens, which does not replicate); Site and UpdatedAt are
	// not kept there. Nil when the node holds none.
	Node map[string]Record
	// Blocked holds, by group, the application roles whose logins a
	// Fence blocked and no Promote has given back yet, sorted. Nil when
	// there are none.
	Blocked map[string][]string
}

// Token returns the token the node holds for group, the higher of the
// token table's and the node's own, and whether it holds one.
func (s NodeStatus) Token(group string) (uint64, bool) {
	r, ok := s.Groups[group]
	n, nok := s.Node[group]
	return max(r.Token, n.Token), ok || nok
}

// Client carries out the database actions. The zero value is ready to use;
// the package-level functions use a zero Client.
type Client struct {
	// Site is written into the token table with each record.
	Site string
	// Roles are the group's application roles: Fence blocks their logins
	// (ALTER ROLE … NOLOGIN) on a primary before it ends the sessions,
	// and Promote gives back exactly the logins a Fence blocked. None of
	// them may be a superuser, have REPLICATION, or be the role of the
	// DSN. Without Roles, Fence still ends every session and records the
	// token, but nothing keeps a client from logging in again.
	Roles []string
	// ConnectTimeout bounds a connection attempt when the DSN sets no
	// connect_timeout; zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// MaxConnectTimeout, when set, caps a connection attempt whatever the
	// DSN or ConnectTimeout say: for an attempt that must not hold up
	// what follows when the server is unreachable.
	MaxConnectTimeout time.Duration
	// PromoteWait is how long Promote waits for the node to leave
	// recovery after it asked it to; zero means DefaultPromoteWait.
	PromoteWait time.Duration
	// SettleWait is how long Promote and Fence wait for a configuration
	// reload to take effect and for terminated sessions to end; zero means
	// DefaultSettleWait.
	SettleWait time.Duration
}

// Promote makes the node at dsn the writable primary of group at token;
// see the package documentation for the steps.
func Promote(ctx context.Context, dsn, group string, token uint64) error {
	var c Client
	return c.Promote(ctx, dsn, group, token)
}

// Status reads the actual state of the node at dsn.
func Status(ctx context.Context, dsn string) (NodeStatus, error) {
	var c Client
	return c.Status(ctx, dsn)
}

// Promote makes the node at dsn the writable primary of group at token.
func (c *Client) Promote(ctx context.Context, dsn, group string, token uint64) error {
	if err := c.promote(ctx, dsn, group, token); err != nil {
		return fmt.Errorf("promote standby: %w", err)
	}
	return nil
}

func (c *Client) promote(ctx context.Context, dsn, group string, token uint64) error {
	return c.withGroup(ctx, dsn, group, token, func(conn *pgx.Conn, st nodeState) error {
		return c.promoteLocked(ctx, conn, group, token, st)
	})
}

// wakeInterval is how often Promote wakes the startup process while it
// waits for the node to leave recovery.
const wakeInterval = 100 * time.Millisecond

// leaveRecovery asks the node to promote and waits until it has left
// recovery, or PromoteWait passes (ErrStillInRecovery; the request stands
// and the node may still leave recovery later).
//
// While it waits it reloads the configuration every wakeInterval: the
// SIGHUP sets the startup process's recovery latch. A standby whose
// primary refuses connections alternates between a WAL receiver that
// fails at once and a sleep of wal_retrieve_retry_interval (5 s by
// default). When the promote request is seen just as a WAL receiver is
// being started, or its exit and the request wake recovery together,
// the one wake-up is used up and recovery sleeps out the whole interval
// before it ends: "received promote request" and "redo done" 5 s apart in
// the log. Promote itself makes that likely: the reload that sets the
// read-only default wakes recovery into a new WAL receiver attempt right
// before pg_promote. A reload during the sleep ends it, and recovery then
// sees the request.
func (c *Client) leaveRecovery(ctx context.Context, conn *pgx.Conn) error {
	var sent bool
	err := conn.QueryRow(ctx, "SELECT pg_promote(wait => false)").Scan(&sent)
	// 55000 (object_not_in_prerequisite_state): recovery already ended,
	// someone else promoted the node since we looked. The check decides.
	if err != nil && !hasCode(err, "55000") {
		return fmt.Errorf("pg_promote: %w", contextError(ctx, err))
	}
	woken := time.Now()
	ok, err := waitUntil(ctx, time.Now().Add(c.promoteWait()), func() (bool, error) {
		var inRecovery bool
		if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
			return false, err
		}
		if !inRecovery {
			return true, nil
		}
		if time.Since(woken) >= wakeInterval {
			woken = time.Now()
			if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
				return false, err
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("wait for promotion: %w", contextError(ctx, err))
	}
	if !ok {
		return ErrStillInRecovery
	}
	return nil
}

// withGroup connects to dsn, takes the group's lock, reads the node's
// state and refuses a token lower than the one it holds, then runs fn.
func (c *Client) withGroup(ctx context.Context, dsn, group string, token uint64, fn func(*pgx.Conn, nodeState) error) error {
	if err := checkArgs(group, token); err != nil {
		return err
	}
	conn, err := c.connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	if err := lockGroup(ctx, conn, group); err != nil {
		return err
	}

	st, err := readNode(ctx, conn, group)
	if err != nil {
		return err
	}
	if held := st.token(); held > token {
		return &HigherTokenError{Group: group, Held: held, Offered: token}
	}
	return fn(conn, st)
}

func (c *Client) promoteLocked(ctx context.Context, conn *pgx.Conn, group string, token uint64, st nodeState) error {
	if !st.inRecovery && !st.readOnly && st.found && len(st.blocked) == 0 &&
		st.record.Token == token && st.record.Role == RolePrimary {
		return nil
	}
	if st.inRecovery {
		// Leave recovery read-only: a promoted node must not take a
		// client's write before it holds the new token, or that write
		// would carry the old one.
		if !st.readOnly {
			if err := c.setReadOnly(ctx, conn, true); err != nil {
				return err
			}
		}
		if err := c.leaveRecovery(ctx, conn); err != nil {
			return err
		}
	}
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return fmt.Errorf("check recovery state: %w", contextError(ctx, err))
	}
	if inRecovery {
		return ErrStillInRecovery
	}
	// The token and the logins that a Fence blocked come back in one
	// transaction: no application role logs in before the token is there.
	err := c.record(ctx, conn, group, token, RolePrimary, func(tx pgx.Tx) error {
		return restoreRoles(ctx, tx, group)
	})
	if err != nil {
		return err
	}
	// Writable by default only now that the token is recorded.
	var readOnly bool
	if err := conn.QueryRow(ctx, "SELECT current_setting('default_transaction_read_only')::bool").Scan(&readOnly); err != nil {
		return fmt.Errorf("check default_transaction_read_only: %w", contextError(ctx, err))
	}
	if readOnly {
		return c.setReadOnly(ctx, conn, false)
	}
	return nil
}

// Status reads the actual state of the node at dsn.
func (c *Client) Status(ctx context.Context, dsn string) (NodeStatus, error) {
	st, err := c.status(ctx, dsn)
	if err != nil {
		return NodeStatus{}, fmt.Errorf("read database status: %w", err)
	}
	return st, nil
}

func (c *Client) status(ctx context.Context, dsn string) (NodeStatus, error) {
	conn, err := c.connect(ctx, dsn)
	if err != nil {
		return NodeStatus{}, err
	}
	defer closeConn(conn)

	var st NodeStatus
	var hasTable bool
	err = conn.QueryRow(ctx, `SELECT pg_is_in_recovery(),
		current_setting('default_transaction_read_only')::bool,
		coalesce((SELECT status FROM pg_stat_wal_receiver), ''),
		to_regclass('witness.fence') IS NOT NULL`).
		Scan(&st.InRecovery, &st.ReadOnly, &st.ReceiverStatus, &hasTable)
	if err != nil {
		return NodeStatus{}, fmt.Errorf("read node state: %w", contextError(ctx, err))
	}
	st.Streaming = st.ReceiverStatus == "streaming"
	node, err := readNodeTokens(ctx, conn)
	if err != nil {
		return NodeStatus{}, err
	}
	if len(node) > 0 {
		st.Node = node
	}
	st.Groups = map[string]Record{}
	if !hasTable {
		return st, nil
	}
	rows, err := conn.Query(ctx, "SELECT group_name, token, role, site, updated_at FROM witness.fence")
	if err != nil {
		return NodeStatus{}, fmt.Errorf("read token table: %w", contextError(ctx, err))
	}
	for rows.Next() {
		var group string
		var r Record
		var token int64
		if err := rows.Scan(&group, &token, &r.Role, &r.Site, &r.UpdatedAt); err != nil {
			rows.Close()
			return NodeStatus{}, fmt.Errorf("read token table: %w", err)
		}
		r.Token = uint64(token)
		st.Groups[group] = r
	}
	if err := rows.Err(); err != nil {
		return NodeStatus{}, fmt.Errorf("read token table: %w", contextError(ctx, err))
	}
	blocked, err := readBlocked(ctx, conn, "")
	if err != nil {
		return NodeStatus{}, err
	}
	for _, b := range blocked {
		if st.Blocked == nil {
			st.Blocked = map[string][]string{}
		}
		st.Blocked[b.group] = append(st.Blocked[b.group], b.role)
	}
	return st, nil
}

// lockKey is the first half of the advisory lock key of a group; the second
// half is hashtext(group).
const lockKey = 0x57544e53 // "WTNS"

// lockGroup takes a session advisory lock for group, so that Promote and
// Fence on one node run one at a time for a group: the token they check is
// still the node's token when they act. Advisory locks work on a standby
// too. The lock goes with the connection.
func lockGroup(ctx context.Context, conn *pgx.Conn, group string) error {
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, hashtext($2))", int32(lockKey), group); err != nil {
		return fmt.Errorf("lock group %q: %w", group, contextError(ctx, err))
	}
	return nil
}

// nodeState is what Promote and Fence read before they act.
type nodeState struct {
	inRecovery bool
	readOnly   bool
	found      bool // the token table has a row for the group
	record     Record
	node       Record   // the node's own token for the group; zero if none
	blocked    []string // roles a Fence blocked for the group, sorted
}

// token is the token the node holds for the group: the higher of the
// token table's and the node's own.
func (st nodeState) token() uint64 {
	return max(st.record.Token, st.node.Token)
}

func readNode(ctx context.Context, conn *pgx.Conn, group string) (nodeState, error) {
	var st nodeState
	var hasTable bool
	err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery(),
		current_setting('default_transaction_read_only')::bool,
		to_regclass('witness.fence') IS NOT NULL`).Scan(&st.inRecovery, &st.readOnly, &hasTable)
	if err != nil {
		return nodeState{}, fmt.Errorf("read node state: %w", contextError(ctx, err))
	}
	node, err := readNodeTokens(ctx, conn)
	if err != nil {
		return nodeState{}, err
	}
	st.node = node[group]
	blocked, err := readBlocked(ctx, conn, group)
	if err != nil {
		return nodeState{}, err
	}
	for _, b := range blocked {
		st.blocked = append(st.blocked, b.role)
	}
	if !hasTable {
		return st, nil
	}
	var token int64
	err = conn.QueryRow(ctx,
		"SELECT token, role, site, updated_at FROM witness.fence WHERE group_name = $1", group).
		Scan(&token, &st.record.Role, &st.record.Site, &st.record.UpdatedAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return st, nil
	case err != nil:
		return nodeState{}, fmt.Errorf("read token of group %q: %w", group, contextError(ctx, err))
	}
	st.found = true
	st.record.Token = uint64(token)
	return st, nil
}

// createTables makes Witness's tables. witness.blocked_role came after
// witness.fence; a node whose witness.fence an earlier version made gets
// it the first time it is needed, since the statements are repeated
// whenever either table is missing.
const createTables = `CREATE SCHEMA IF NOT EXISTS witness;
CREATE TABLE IF NOT EXISTS witness.fence (
	group_name text PRIMARY KEY,
	token      bigint NOT NULL CHECK (token >= 0),
	role       text NOT NULL,
	site       text NOT NULL,
	updated_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS witness.blocked_role (
	group_name text NOT NULL,
	role_name  text NOT NULL,
	blocked_at timestamptz NOT NULL,
	PRIMARY KEY (group_name, role_name)
)`

// ensureTables creates Witness's tables when one is missing.
func ensureTables(ctx context.Context, tx pgx.Tx) error {
	var exist bool
	err := tx.QueryRow(ctx, `SELECT to_regclass('witness.fence') IS NOT NULL
		AND to_regclass('witness.blocked_role') IS NOT NULL`).Scan(&exist)
	if err != nil {
		return err
	}
	if exist {
		return nil
	}
	if _, err := tx.Exec(ctx, createTables); err != nil {
		return fmt.Errorf("create tables: %w", err)
	}
	return nil
}

// upsertToken stores a token unless the row holds a higher one; it returns
// no row in that case.
const upsertToken = `INSERT INTO witness.fence AS f (group_name, token, role, site, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (group_name) DO UPDATE
	SET token = excluded.token, role = excluded.role, site = excluded.site, updated_at = excluded.updated_at
	WHERE f.token <= excluded.token
RETURNING token`

// record stores token for group in the node's token table, creating the
// table when absent, and never lowers a stored token. After the token, and
// in the same transaction, it runs then (when not nil). It works on a node
// that is read-only by default: the transaction asks for read-write.
func (c *Client) record(ctx context.Context, conn *pgx.Conn, group string, token uint64, role Role, then func(pgx.Tx) error) error {
	err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{AccessMode: pgx.ReadWrite}, func(tx pgx.Tx) error {
		if err := ensureTables(ctx, tx); err != nil {
			return err
		}
		var stored int64
		err := tx.QueryRow(ctx, upsertToken, group, int64(token), string(role), c.Site).Scan(&stored)
		if err == nil && then != nil {
			return then(tx)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT token FROM witness.fence WHERE group_name = $1", group).Scan(&stored); err != nil {
			return err
		}
		return &HigherTokenError{Group: group, Held: uint64(stored), Offered: token}
	})
	var higher *HigherTokenError
	if errors.As(err, &higher) {
		return err
	}
	if err != nil {
		return fmt.Errorf("record token %d of group %q: %w", token, group, contextError(ctx, err))
	}
	return nil
}

// setReadOnly sets default_transaction_read_only with ALTER SYSTEM (on) or
// removes it from postgresql.auto.conf (off), reloads the configuration and
// waits until conn's own session sees the new value. The postmaster
// reloads before it signals its children, so from then on every new
// session gets the new default too.
func (c *Client) setReadOnly(ctx context.Context, conn *pgx.Conn, on bool) error {
	stmt := "ALTER SYSTEM RESET default_transaction_read_only"
	if on {
		stmt = "ALTER SYSTEM SET default_transaction_read_only = on"
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("alter system: %w", contextError(ctx, err))
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("reload configuration: %w", contextError(ctx, err))
	}
	ok, err := c.waitFor(ctx, func() (bool, error) {
		var got bool
		err := conn.QueryRow(ctx, "SELECT current_setting('default_transaction_read_only')::bool").Scan(&got)
		return got == on, err
	})
	if err != nil {
		return fmt.Errorf("check default_transaction_read_only: %w", contextError(ctx, err))
	}
	if !ok {
		return fmt.Errorf("default_transaction_read_only = %v: %w", on, ErrNotApplied)
	}
	return nil
}

// waitFor calls check until it reports true, it fails, ctx ends (error) or
// SettleWait passes (false, nil).
func (c *Client) waitFor(ctx context.Context, check func() (bool, error)) (bool, error) {
	return waitUntil(ctx, time.Now().Add(c.settleWait()), check)
}

// connect opens one connection to dsn.
func (c *Client) connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = c.connectTimeout()
	}
	if c.MaxConnectTimeout > 0 {
		cfg.ConnectTimeout = min(cfg.ConnectTimeout, c.MaxConnectTimeout)
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = applicationName
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", connectError(ctx, err))
	}
	return conn, nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

func checkArgs(group string, token uint64) error {
	if group == "" {
		return fmt.Errorf("empty group name: %w", ErrInvalid)
	}
	if token > math.MaxInt64 {
		return fmt.Errorf("token %d above 2^63-1: %w", token, ErrInvalid)
	}
	return nil
}

func hasCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

func (c *Client) connectTimeout() time.Duration {
	return orDefault(c.ConnectTimeout, DefaultConnectTimeout)
}
func (c *Client) promoteWait() time.Duration { return orDefault(c.PromoteWait, DefaultPromoteWait) }
func (c *Client) settleWait() time.Duration  { return orDefault(c.SettleWait, DefaultSettleWait) }

// orDefault is d when it is set (above zero), else def.
func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Unfence lifts a fence of group at token on the node at dsn if it runs
// as a primary: the application roles' logins that Fence blocked come
// back and the token is recorded as a primary's. A node in recovery is
// left alone: Unfence never promotes (that is Promote's, under the
// reconciler's rule).
func (c *Client) Unfence(ctx context.Context, dsn, group string, token uint64) error {
	err := c.withGroup(ctx, dsn, group, token, func(conn *pgx.Conn, st nodeState) error {
		if st.inRecovery {
			return nil
		}
		return c.promoteLocked(ctx, conn, group, token, st)
	})
	if err != nil {
		return fmt.Errorf("unfence primary: %w", err)
	}
	return nil
}
