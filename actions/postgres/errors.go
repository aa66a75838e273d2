package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Errors of the database actions, for errors.Is.
var (
	// ErrHigherToken means the node records a higher token for the group
	// than the action carries: a newer decision has already acted there,
	// and the action refused so as not to undo it. The error is a
	// *HigherTokenError with the two tokens.
	ErrHigherToken = errors.New("node holds a higher fencing token")

	// ErrUnreachable means no connection could be made: refused, no route,
	// name not resolved, the server not accepting connections yet, or the
	// connection attempt timed out.
	ErrUnreachable = errors.New("database unreachable")

	// ErrAuth means the server rejected the role or its credentials
	// (SQLSTATE class 28).
	ErrAuth = errors.New("database authentication failed")

	// ErrStillInRecovery means the node was asked to promote but is still
	// in recovery after Client.PromoteWait. The request stands: the node
	// may leave recovery later, without the token recorded (it stays
	// read-only by default until a Promote records it).
	ErrStillInRecovery = errors.New("node still in recovery after promote")

	// ErrNotApplied means a configuration reload did not take effect in
	// time: default_transaction_read_only did not reach the wanted value,
	// for instance because postgresql.conf, the role, the database or the
	// DSN sets it.
	ErrNotApplied = errors.New("setting not in effect after reload")

	// ErrSessionsRemain means Fence terminated client sessions but some had
	// not ended within Client.SettleWait.
	ErrSessionsRemain = errors.New("client sessions survived the fence")

	// ErrInvalid means the arguments cannot be acted on: an empty group
	// name, or a token above 2^63-1, which PostgreSQL's bigint cannot hold.
	ErrInvalid = errors.New("invalid action arguments")

	// ErrUnknownRole means Client.Roles names a role that does not exist
	// on the node. The error is a *RoleError; Fence changed nothing.
	ErrUnknownRole = errors.New("application role does not exist")

	// ErrUnfenceableRole means Client.Roles names a role whose logins
	// Witness must not block: a superuser, a role with REPLICATION (the
	// standbys' walsenders log in with it), or the role Witness itself
	// connects as. The error is a *RoleError; Fence changed nothing.
	ErrUnfenceableRole = errors.New("role cannot be fenced")

	// ErrNodeTokens means the node's own token store (the setting
	// witness.tokens) holds a value Witness cannot read. Witness refuses
	// to act rather than take the node for one that holds no token.
	ErrNodeTokens = errors.New("unreadable node token store")

	// ErrStillRunning means Demote could not make the node stop: its
	// postmaster survived SIGKILL, or a server still answers at the DSN
	// after the postmaster of the data directory is gone (the DSN names
	// another server, or one was started meanwhile).
	ErrStillRunning = errors.New("database still running")

	// ErrNotStandby means StartAsStandby found the node running as a
	// primary. Demote it first.
	ErrNotStandby = errors.New("node runs as a primary")

	// ErrNotPrimary means StartAsPrimary found the node running as a
	// standby; promoting it is Promote's job, at the group's token.
	ErrNotPrimary = errors.New("node runs as a standby")
)

// RoleError says which role of Client.Roles Fence refused, and why. It
// matches ErrUnknownRole or ErrUnfenceableRole with errors.Is.
type RoleError struct {
	Role   string
	Reason string // "does not exist", "superuser", "replication", "witness's own role"
	Err    error  // ErrUnknownRole or ErrUnfenceableRole
}

func (e *RoleError) Error() string {
	return fmt.Sprintf("role %q: %s: %v", e.Role, e.Reason, e.Err)
}

// Unwrap returns ErrUnknownRole or ErrUnfenceableRole.
func (e *RoleError) Unwrap() error { return e.Err }

// HigherTokenError is returned when a node holds a higher token for a group
// than the action carries. It matches ErrHigherToken with errors.Is.
type HigherTokenError struct {
	Group   string
	Held    uint64 // the token recorded on the node
	Offered uint64 // the token the action carried
}

func (e *HigherTokenError) Error() string {
	return fmt.Sprintf("%v: group %q holds token %d, action carries %d",
		ErrHigherToken, e.Group, e.Held, e.Offered)
}

// Unwrap returns ErrHigherToken.
func (e *HigherTokenError) Unwrap() error { return ErrHigherToken }

// reasonError puts a sentinel (or a context error) in front of the error
// that explains it; both match with errors.Is.
type reasonError struct {
	reason error
	err    error
}

func (e *reasonError) Error() string   { return e.reason.Error() + ": " + e.err.Error() }
func (e *reasonError) Unwrap() []error { return []error{e.reason, e.err} }

// connectError classifies a failed connection attempt.
func connectError(ctx context.Context, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "28"):
			return &reasonError{reason: ErrAuth, err: err}
		case pgErr.Code == "57P03": // cannot_connect_now: starting up or shutting down
			return &reasonError{reason: ErrUnreachable, err: err}
		}
		return err
	}
	return &reasonError{reason: ErrUnreachable, err: contextError(ctx, err)}
}

// contextError adds the context's error to err when the context ended and
// err does not already say so, so that callers can test for
// context.DeadlineExceeded whatever pgx returned.
func contextError(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return &reasonError{reason: cerr, err: err}
	}
	return err
}
