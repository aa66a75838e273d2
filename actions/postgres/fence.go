package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// Fence makes the node at dsn refuse the group's application clients and
// records token for group; see the package documentation for the steps.
func Fence(ctx context.Context, dsn, group string, token uint64) error {
	var c Client
	return c.Fence(ctx, dsn, group, token)
}

// Fence makes the node at dsn refuse the group's application clients and
// records token for group. On a primary it blocks the logins of c.Roles,
// ends every client session and only then records the token; on a standby
// it records the token in the node's own store.
func (c *Client) Fence(ctx context.Context, dsn, group string, token uint64) error {
	if err := c.fence(ctx, dsn, group, token); err != nil {
		return fmt.Errorf("fence primary: %w", err)
	}
	return nil
}

func (c *Client) fence(ctx context.Context, dsn, group string, token uint64) error {
	return c.withGroup(ctx, dsn, group, token, func(conn *pgx.Conn, st nodeState) error {
		if st.inRecovery {
			return c.fenceStandby(ctx, conn, group, token, st)
		}
		return c.fencePrimary(ctx, conn, group, token, st)
	})
}

// fencePrimary blocks the application roles' logins, ends the sessions,
// and records the token last: the record says the node refuses writes
// only once it does.
func (c *Client) fencePrimary(ctx context.Context, conn *pgx.Conn, group string, token uint64, st nodeState) error {
	roles := slices.Compact(slices.Sorted(slices.Values(c.Roles)))
	canLogin, err := checkRoles(ctx, conn, roles)
	if err != nil {
		return err
	}
	if st.found && st.record.Role == RoleFenced && st.record.Token == token && st.readOnly && len(canLogin) == 0 {
		left, err := countSessions(ctx, conn, roles)
		if err != nil {
			return err
		}
		if left == 0 {
			return nil // fenced at this token already
		}
	}
	if err := blockRoles(ctx, conn, group, roles); err != nil {
		return err
	}
	if !st.readOnly {
		if err := c.setReadOnly(ctx, conn, true); err != nil {
			return err
		}
	}
	if err := c.endSessions(ctx, conn, roles); err != nil {
		return err
	}
	return c.record(ctx, conn, group, token, RoleFenced, nil)
}

// fenceStandby records the token in the node's own store first: a standby
// takes no writes, so there is no window to close, and a stale Promote is
// refused from then on even if the sessions do not end. The token table
// of a standby is its primary's, replayed; the catalog cannot be changed,
// so no login is blocked here.
func (c *Client) fenceStandby(ctx context.Context, conn *pgx.Conn, group string, token uint64, st nodeState) error {
	if err := recordNode(ctx, conn, group, token, RoleFenced); err != nil {
		return err
	}
	if !st.readOnly {
		if err := c.setReadOnly(ctx, conn, true); err != nil {
			return err
		}
	}
	return c.endSessions(ctx, conn, nil)
}

// checkRoles checks that every role exists and may be fenced, and returns
// those that can log in now.
func checkRoles(ctx context.Context, conn *pgx.Conn, roles []string) ([]string, error) {
	if len(roles) == 0 {
		return nil, nil
	}
	rows, err := conn.Query(ctx, `SELECT r.name, a.rolname IS NOT NULL,
			coalesce(a.rolsuper, false), coalesce(a.rolreplication, false),
			coalesce(a.rolcanlogin, false),
			r.name IN (current_user, session_user)
		FROM unnest($1::text[]) AS r(name)
		LEFT JOIN pg_roles a ON a.rolname = r.name
		ORDER BY r.name`, roles)
	if err != nil {
		return nil, fmt.Errorf("read roles: %w", contextError(ctx, err))
	}
	var canLogin []string
	var refused error
	for rows.Next() {
		var name string
		var exists, super, repl, login, own bool
		if err := rows.Scan(&name, &exists, &super, &repl, &login, &own); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read roles: %w", err)
		}
		var e *RoleError
		switch {
		case !exists:
			e = &RoleError{Role: name, Reason: "does not exist", Err: ErrUnknownRole}
		case own:
			e = &RoleError{Role: name, Reason: "witness's own role", Err: ErrUnfenceableRole}
		case super:
			e = &RoleError{Role: name, Reason: "superuser", Err: ErrUnfenceableRole}
		case repl:
			e = &RoleError{Role: name, Reason: "replication", Err: ErrUnfenceableRole}
		case login:
			canLogin = append(canLogin, name)
		}
		if e != nil && refused == nil {
			refused = e
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read roles: %w", contextError(ctx, err))
	}
	if refused != nil {
		return nil, refused
	}
	return canLogin, nil
}

// blockRoles takes the LOGIN right from every role that has it, and
// records each in witness.blocked_role for group, in one transaction: a
// login Witness took is always one it knows to give back. A role that
// another group's fence blocked is recorded for this group too, so that
// the other group's Promote does not give it back while this group is
// fenced.
func blockRoles(ctx context.Context, conn *pgx.Conn, group string, roles []string) error {
	if len(roles) == 0 {
		return nil
	}
	err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{AccessMode: pgx.ReadWrite}, func(tx pgx.Tx) error {
		if err := ensureTables(ctx, tx); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT a.rolname, a.rolcanlogin FROM pg_roles a
			WHERE a.rolname = ANY($1) AND (a.rolcanlogin OR EXISTS (
				SELECT 1 FROM witness.blocked_role b WHERE b.role_name = a.rolname))
			ORDER BY a.rolname`, roles)
		if err != nil {
			return err
		}
		type role struct {
			name  string
			login bool
		}
		toBlock, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (role, error) {
			var x role
			err := r.Scan(&x.name, &x.login)
			return x, err
		})
		if err != nil {
			return err
		}
		for _, r := range toBlock {
			if r.login {
				if _, err := tx.Exec(ctx, "ALTER ROLE "+pgx.Identifier{r.name}.Sanitize()+" NOLOGIN"); err != nil {
					return fmt.Errorf("block logins of %q: %w", r.name, err)
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO witness.blocked_role (group_name, role_name, blocked_at)
				VALUES ($1, $2, now()) ON CONFLICT DO NOTHING`, group, r.name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("block logins: %w", contextError(ctx, err))
	}
	return nil
}

// restoreRoles gives back the logins that Fence took for group, except
// those that another group's fence still holds, and forgets them. It runs
// in Promote's transaction, after the new token. A role dropped since is
// skipped.
func restoreRoles(ctx context.Context, tx pgx.Tx, group string) error {
	rows, err := tx.Query(ctx, `DELETE FROM witness.blocked_role WHERE group_name = $1 RETURNING role_name`, group)
	if err != nil {
		return fmt.Errorf("read blocked roles: %w", err)
	}
	released, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read blocked roles: %w", err)
	}
	if len(released) == 0 {
		return nil
	}
	rows, err = tx.Query(ctx, `SELECT a.rolname FROM pg_roles a
		WHERE a.rolname = ANY($1) AND NOT a.rolcanlogin AND NOT EXISTS (
			SELECT 1 FROM witness.blocked_role b WHERE b.role_name = a.rolname)
		ORDER BY a.rolname`, released)
	if err != nil {
		return fmt.Errorf("read blocked roles: %w", err)
	}
	restore, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read blocked roles: %w", err)
	}
	for _, name := range restore {
		if _, err := tx.Exec(ctx, "ALTER ROLE "+pgx.Identifier{name}.Sanitize()+" LOGIN"); err != nil {
			return fmt.Errorf("restore logins of %q: %w", name, err)
		}
	}
	return nil
}

// blockedRole is one row of witness.blocked_role.
type blockedRole struct {
	group, role string
}

// readBlocked reads witness.blocked_role, for one group or (group "") for
// all, sorted; nothing when the table does not exist.
func readBlocked(ctx context.Context, conn *pgx.Conn, group string) ([]blockedRole, error) {
	rows, err := conn.Query(ctx, `SELECT group_name, role_name FROM witness.blocked_role
		WHERE $1 = '' OR group_name = $1 ORDER BY group_name, role_name`, group)
	if hasCode(err, "42P01") { // undefined_table
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read blocked roles: %w", contextError(ctx, err))
	}
	blocked, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (blockedRole, error) {
		var b blockedRole
		err := r.Scan(&b.group, &b.role)
		return b, err
	})
	if hasCode(err, "42P01") {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read blocked roles: %w", contextError(ctx, err))
	}
	return blocked, nil
}

// sessionsQuery lists the client backends Fence ends: every one but the
// caller's own when $1 is empty, else those whose session role is in $1.
// Walsenders and background workers are not client backends.
const sessionsQuery = `SELECT pid, backend_start FROM pg_stat_activity
	WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
	AND (coalesce(cardinality($1::text[]), 0) = 0 OR usename = ANY($1::text[]))`

// countSessions counts the sessions that a fence of roles ends.
func countSessions(ctx context.Context, conn *pgx.Conn, roles []string) (int, error) {
	var n int
	err := conn.QueryRow(ctx, "SELECT count(*) FROM ("+sessionsQuery+") s", roles).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("list sessions: %w", contextError(ctx, err))
	}
	return n, nil
}

// endSessions terminates every client backend but conn's own and waits
// until they are gone. With roles, it then looks again, and ends the
// sessions of roles that it finds, until a look finds none: a login that
// passed its check just before the roles lost LOGIN may register only
// after the first look. Without roles there is nothing to wait for, since
// any client may log in again at once.
func (c *Client) endSessions(ctx context.Context, conn *pgx.Conn, roles []string) error {
	deadline := time.Now().Add(c.settleWait())
	for pass := 0; ; pass++ {
		var only []string
		if pass > 0 {
			if len(roles) == 0 {
				return nil
			}
			only = roles
		}
		n, err := c.terminate(ctx, conn, only, deadline)
		if err != nil {
			return err
		}
		if n == 0 && pass > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sessions of %v still logging in: %w", roles, ErrSessionsRemain)
		}
	}
}

// terminate ends the sessions that sessionsQuery lists for roles and waits
// until they are gone or deadline passes; it returns how many it ended.
func (c *Client) terminate(ctx context.Context, conn *pgx.Conn, roles []string, deadline time.Time) (int, error) {
	rows, err := conn.Query(ctx, sessionsQuery, roles)
	if err != nil {
		return 0, fmt.Errorf("list sessions: %w", contextError(ctx, err))
	}
	type session struct {
		pid   int32
		start time.Time
	}
	sessions, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (session, error) {
		var s session
		err := r.Scan(&s.pid, &s.start)
		return s, err
	})
	if err != nil {
		return 0, fmt.Errorf("list sessions: %w", contextError(ctx, err))
	}
	if len(sessions) == 0 {
		return 0, nil
	}
	pids := make([]int32, len(sessions))
	starts := make([]time.Time, len(sessions))
	for i, s := range sessions {
		pids[i], starts[i] = s.pid, s.start
	}
	// pg_terminate_backend returns false for a session that ended
	// meanwhile; what counts is whether any is left afterwards.
	if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS t(pid)", pids); err != nil {
		return 0, fmt.Errorf("terminate sessions: %w", contextError(ctx, err))
	}
	var left int
	ok, err := waitUntil(ctx, deadline, func() (bool, error) {
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity a
			JOIN unnest($1::int[], $2::timestamptz[]) AS t(pid, started)
			ON a.pid = t.pid AND a.backend_start = t.started`, pids, starts).Scan(&left)
		return left == 0, err
	})
	if err != nil {
		return 0, fmt.Errorf("check sessions: %w", contextError(ctx, err))
	}
	if !ok {
		return 0, fmt.Errorf("%d of %d sessions: %w", left, len(pids), ErrSessionsRemain)
	}
	return len(pids), nil
}

// waitUntil calls check until it reports true, it fails, ctx ends (error)
// or deadline passes (false, nil).
func waitUntil(ctx context.Context, deadline time.Time, check func() (bool, error)) (bool, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		done, err := check()
		if err != nil || done {
			return done, err
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-timer.C:
			return false, nil
		case <-tick.C:
		}
	}
}
