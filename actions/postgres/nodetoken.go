package postgres

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// nodeTokensSetting is the custom setting that holds a node's own tokens,
// written with ALTER SYSTEM into postgresql.auto.conf. Unlike the token
// table it does not replicate, and it can be written on a hot standby.
//
// Its value is a URL query: group=token:role&…, keys escaped, sorted by
// group. One setting for all groups, because a setting name is an
// identifier that PostgreSQL truncates at 63 bytes.
const nodeTokensSetting = "witness.tokens"

// nodeStoreKey is the first half of the advisory lock key that guards the
// read-modify-write of witness.tokens across groups; the second half is 0.
const nodeStoreKey = 0x57544e54 // "WTNT"

// readNodeTokens reads the node's token store as written to
// postgresql.auto.conf, whether or not the configuration was reloaded since:
// pg_file_settings parses the files afresh. An absent setting is an empty
// store.
func readNodeTokens(ctx context.Context, q querier) (map[string]Record, error) {
	var value *string
	err := q.QueryRow(ctx, `SELECT (SELECT setting FROM pg_file_settings
		WHERE name = $1 ORDER BY seqno DESC LIMIT 1)`, nodeTokensSetting).Scan(&value)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", nodeTokensSetting, contextError(ctx, err))
	}
	if value == nil {
		return map[string]Record{}, nil
	}
	return parseNodeTokens(*value)
}

// querier is what readNodeTokens needs of a connection or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func parseNodeTokens(value string) (map[string]Record, error) {
	tokens := map[string]Record{}
	if value == "" {
		return tokens, nil
	}
	vals, err := url.ParseQuery(value)
	if err != nil {
		return nil, fmt.Errorf("%s = %q: %w: %w", nodeTokensSetting, value, ErrNodeTokens, err)
	}
	for group, vs := range vals {
		if len(vs) != 1 {
			return nil, fmt.Errorf("%s = %q: group %q appears %d times: %w", nodeTokensSetting, value, group, len(vs), ErrNodeTokens)
		}
		tok, role, ok := strings.Cut(vs[0], ":")
		n, err := strconv.ParseUint(tok, 10, 63)
		if !ok || err != nil || role == "" {
			return nil, fmt.Errorf("%s = %q: group %q: want token:role: %w", nodeTokensSetting, value, group, ErrNodeTokens)
		}
		tokens[group] = Record{Token: n, Role: Role(role)}
	}
	return tokens, nil
}

func formatNodeTokens(tokens map[string]Record) string {
	groups := make([]string, 0, len(tokens))
	for g := range tokens {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	var b strings.Builder
	for i, g := range groups {
		if i > 0 {
			b.WriteByte('&')
		}
		fmt.Fprintf(&b, "%s=%d:%s", url.QueryEscape(g), tokens[g].Token, url.QueryEscape(string(tokens[g].Role)))
	}
	return b.String()
}

// recordNode stores token for group in the node's own token store, never
// lowering it, and reloads the configuration so that new sessions see it
// in current_setting('witness.tokens'). A node that holds a higher token
// refuses with *HigherTokenError.
func recordNode(ctx context.Context, conn *pgx.Conn, group string, token uint64, role Role) error {
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, 0)", int32(nodeStoreKey)); err != nil {
		return fmt.Errorf("lock node token store: %w", contextError(ctx, err))
	}
	defer func() {
		// The lock goes with the session anyway; an error here leaves
		// it to the session's end.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1, 0)", int32(nodeStoreKey))
	}()
	tokens, err := readNodeTokens(ctx, conn)
	if err != nil {
		return err
	}
	if held := tokens[group]; held.Token > token {
		return &HigherTokenError{Group: group, Held: held.Token, Offered: token}
	}
	if tokens[group] == (Record{Token: token, Role: role}) {
		return nil
	}
	tokens[group] = Record{Token: token, Role: role}
	lit := quoteLiteral(formatNodeTokens(tokens))
	// PostgreSQL 15 refuses ALTER SYSTEM of a custom setting that the
	// session does not know yet: SET makes it known.
	for _, stmt := range []string{
		"SET " + nodeTokensSetting + " = " + lit,
		"ALTER SYSTEM SET " + nodeTokensSetting + " = " + lit,
		"SELECT pg_reload_conf()",
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("record node token %d of group %q: %w", token, group, contextError(ctx, err))
		}
	}
	return nil
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings
// is on in every supported PostgreSQL).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
