package probes

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// standbyQuery reads a standby's replication state. The byte lag is what it
// has received but not replayed; the time lag is the age of the last
// replayed transaction, or 0 when everything received is replayed (an idle
// primary must not look like a lagging standby). The positions are the WAL
// it holds (received, or replayed from its own pg_wal when that is
// further) and the WAL it has replayed, as bytes from 0/0, and the
// timeline it follows. A stopped WAL receiver keeps the last position it
// received: that is what the data-loss guard compares with the primary's.
const standbyQuery = `
SELECT
  COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), -1)::bigint,
  CASE
    WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
    ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), -1)
  END::float8,
  EXISTS (SELECT 1 FROM pg_stat_wal_receiver
          WHERE status = 'streaming' OR (status IS NULL AND pid IS NOT NULL)),
  COALESCE(pg_wal_lsn_diff(GREATEST(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), '0/0'), 0)::bigint,
  COALESCE(pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0'), 0)::bigint,
  COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), 0)::bigint`

// primaryQuery reads the primary's view of its standbys, its current WAL
// position and its timeline.
const primaryQuery = `
SELECT
  count(*) FILTER (WHERE state = 'streaming'),
  COALESCE(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), -1)::bigint,
  COALESCE(EXTRACT(EPOCH FROM max(replay_lag)), -1)::float8,
  pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,
  ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint
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
		var wal, replayed, tli int64
		if err := conn.QueryRow(ctx, standbyQuery).Scan(&r.LagBytes, &r.LagSeconds, &r.Streaming, &wal, &replayed, &tli); err != nil {
			return Result{}, fmt.Errorf("query standby status: %w", err)
		}
		r.WAL, r.Replayed, r.Timeline = uint64(max(wal, 0)), uint64(max(replayed, 0)), uint32(max(tli, 0))
		state := "not streaming"
		if r.Streaming {
			state = "streaming"
		}
		r.Detail = fmt.Sprintf("standby, %s, lag %s, received %s, replayed %s, timeline %d", state, lagString(r.LagBytes, r.LagSeconds),
			FormatLSN(r.WAL), FormatLSN(r.Replayed), r.Timeline)
		return r, nil
	}
	r.Role = RolePrimary
	var streaming int64
	var wal, tli int64
	if err := conn.QueryRow(ctx, primaryQuery).Scan(&streaming, &r.LagBytes, &r.LagSeconds, &wal, &tli); err != nil {
		return Result{}, fmt.Errorf("query primary status: %w", err)
	}
	r.WAL, r.Replayed, r.Timeline = uint64(max(wal, 0)), uint64(max(wal, 0)), uint32(max(tli, 0))
	if r.LagBytes == 0 && r.LagSeconds < 0 {
		// replay_lag goes NULL once an idle standby has caught up.
		r.LagSeconds = 0
	}
	r.Streaming = streaming > 0
	if streaming == 0 {
		r.Detail = fmt.Sprintf("primary, no streaming standby, at %s, timeline %d", FormatLSN(r.WAL), r.Timeline)
		return r, nil
	}
	r.Detail = fmt.Sprintf("primary, %d streaming standby, max lag %s, at %s, timeline %d", streaming, lagString(r.LagBytes, r.LagSeconds),
		FormatLSN(r.WAL), r.Timeline)
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

// FormatLSN writes a WAL position as PostgreSQL does (0/3A000000); 0 is
// "unknown".
func FormatLSN(lsn uint64) string {
	if lsn == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn))
}
