package probes

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// standbyQuery reads a standby's replication state. The byte lag is what it
// has received but not replayed; the time lag is the age of the last
// replayed transaction, or 0 when everything received is replayed (an idle
// primary must not look like a lagging standby).
const standbyQuery = `
SELECT
  COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), -1)::bigint,
  CASE
    WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
    ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), -1)
  END::float8,
  EXISTS (SELECT 1 FROM pg_stat_wal_receiver
          WHERE status = 'streaming' OR (status IS NULL AND pid IS NOT NULL))`

// primaryQuery reads the primary's view of its standbys.
const primaryQuery = `
SELECT
  count(*) FILTER (WHERE state = 'streaming'),
  COALESCE(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), -1)::bigint,
  COALESCE(EXTRACT(EPOCH FROM max(replay_lag)), -1)::float8
FROM pg_stat_replication`

func newPostgresCheck(p PostgresSpec) (func(context.Context) Result, error) {
	cfg, err := pgx.ParseConfig(p.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres probe: %w", &ValidationError{Field: "postgres.dsn", Err: ErrInvalid})
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "witness-probe"
	}
	return func(ctx context.Context) Result {
		conn, err := pgx.ConnectConfig(ctx, cfg.Copy())
		if err != nil {
			return Result{Detail: "connect: " + err.Error()}
		}
		defer conn.Close(ctx)
		r, err := postgresStatus(ctx, conn)
		if err != nil {
			return Result{Detail: err.Error()}
		}
		if p.Role != "" && r.Role != p.Role {
			r.Detail = fmt.Sprintf("role %s, want %s", r.Role, p.Role)
			return r
		}
		r.OK = true
		return r
	}, nil
}

func postgresStatus(ctx context.Context, conn *pgx.Conn) (Result, error) {
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return Result{}, fmt.Errorf("query role: %w", err)
	}
	var r Result
	if inRecovery {
		r.Role = RoleStandby
		if err := conn.QueryRow(ctx, standbyQuery).Scan(&r.LagBytes, &r.LagSeconds, &r.Streaming); err != nil {
			return Result{}, fmt.Errorf("query standby status: %w", err)
		}
		state := "not streaming"
		if r.Streaming {
			state = "streaming"
		}
		r.Detail = fmt.Sprintf("standby, %s, lag %s", state, lagString(r.LagBytes, r.LagSeconds))
		return r, nil
	}
	r.Role = RolePrimary
	var streaming int64
	if err := conn.QueryRow(ctx, primaryQuery).Scan(&streaming, &r.LagBytes, &r.LagSeconds); err != nil {
		return Result{}, fmt.Errorf("query primary status: %w", err)
	}
	if r.LagBytes == 0 && r.LagSeconds < 0 {
		// replay_lag goes NULL once an idle standby has caught up.
		r.LagSeconds = 0
	}
	r.Streaming = streaming > 0
	if streaming == 0 {
		r.Detail = "primary, no streaming standby"
		return r, nil
	}
	r.Detail = fmt.Sprintf("primary, %d streaming standby, max lag %s", streaming, lagString(r.LagBytes, r.LagSeconds))
	return r, nil
}

func lagString(bytes int64, seconds float64) string {
	b, s := "unknown", "unknown"
	if bytes >= 0 {
		b = fmt.Sprintf("%d B", bytes)
	}
	if seconds >= 0 {
		s = fmt.Sprintf("%.3fs", seconds)
	}
	return b + " " + s
}
