#!/bin/bash
# witness-demo-site SITE: one site host of the compose demo, run under the
# container's init. It starts witnessd, then PostgreSQL 15:
#
#   - the first time at east: a new primary, the app's role and table, and
#     the group spec applied once the cluster has a leader;
#   - the first time at west: a streaming standby of east (pg_basebackup -R);
#   - every later start: `witnessctl prepare-start` first, so that the
#     database comes back as a standby unless a linearizable read says its
#     site is the group's active site. A site that was failed over away
#     from never returns as a second primary.
#
# The container lives as long as witnessd: the witness may stop PostgreSQL
# (its local demotion) and the site host stays up.
set -euo pipefail
site=${1:?usage: witness-demo-site east|west}
pgroot=/var/lib/witness-pg
pgdata=$pgroot/data
east=10.213.0.11
witnesses=10.213.0.11:7400,10.213.0.12:7400,10.213.0.13:7400

log() { echo "witness-demo-site $site: $*"; }
as_pg() { runuser -u postgres -- "$@"; }

mkdir -p "$pgroot" /var/run/postgresql
chown postgres:postgres "$pgroot" /var/run/postgresql
chmod 0700 "$pgroot"

witnessd agent -config /etc/witness/witness.yaml &
witness=$!

stop() {
	log "stopping PostgreSQL and witnessd"
	kill -TERM "$witness" 2>/dev/null || true
	as_pg pg_ctl -D "$pgdata" stop -m fast >/dev/null 2>&1 || true
	wait "$witness" 2>/dev/null || true
	exit 0
}
trap stop TERM INT

first=false
if [ ! -s "$pgdata/PG_VERSION" ]; then
	first=true
	rm -rf "$pgdata"
	case $site in
	east)
		log "first start: a new primary"
		as_pg initdb -D "$pgdata" -U postgres -A trust -E UTF8 --locale=C --no-instructions >/dev/null
		cat >>"$pgdata/postgresql.conf" <<CONF
listen_addresses = '*'
unix_socket_directories = '/var/run/postgresql'
cluster_name = '$site'
max_connections = 40
shared_buffers = 16MB
wal_level = replica
max_wal_senders = 8
wal_keep_size = 128MB
hot_standby = on
wal_receiver_status_interval = 1s
wal_retrieve_retry_interval = 500ms
wal_receiver_timeout = 2s
wal_sender_timeout = 2s
wal_log_hints = on
log_line_prefix = '%m [%p] %b '
CONF
		cat >>"$pgdata/pg_hba.conf" <<HBA
host all all 10.213.0.0/24 trust
host replication all 10.213.0.0/24 trust
HBA
		;;
	*)
		log "first start: a standby of east, once east's database answers"
		until pg_isready -q -h "$east" -t 2; do sleep 1; done
		as_pg pg_basebackup -d "host=$east user=postgres application_name=$site" -D "$pgdata" -R -X stream -c fast
		echo "cluster_name = '$site'" >>"$pgdata/postgresql.conf"
		;;
	esac
else
	# The fencing rule: a linearizable read decides, and with no answer
	# (no leader yet) the database starts as a standby. Ask for a minute
	# first, since the whole demo may be starting at once.
	deadline=$((SECONDS + 60))
	while :; do
		out=$(witnessctl --addr "$witnesses" --timeout 3s prepare-start app "$site" --data-dir "$pgdata" 2>&1) || true
		case $out in
		*"no linearizable read"*) [ "$SECONDS" -lt "$deadline" ] || break ;;
		*) break ;;
		esac
		sleep 1
	done
	log "prepare-start: $out"
fi

as_pg pg_ctl -D "$pgdata" -w -t 120 start || log "PostgreSQL not accepting connections yet"

if $first && [ "$site" = east ]; then
	as_pg psql -h /var/run/postgresql -XAtq -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE demo_writes (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), n bigint, site text);
CREATE ROLE app LOGIN;
GRANT SELECT, INSERT ON demo_writes TO app;
GRANT USAGE ON SEQUENCE demo_writes_id_seq TO app;
SQL
	# The group, once west streams from here (creating a group reads every
	# site's database to find the one primary) and the witnesses have a
	# leader; in the background, since the container lives as long as
	# witnessd.
	(
		until [ "$(as_pg psql -h /var/run/postgresql -XAtq -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null)" = 1 ]; do
			sleep 1
		done
		until witnessctl --addr "$east:7400" --timeout 10s apply -f /etc/witness/groups.yaml --active app=east; do sleep 2; done
		log "applied /etc/witness/groups.yaml"
	) &
fi

set +e
wait "$witness"
rc=$?
log "witnessd exited ($rc)"
as_pg pg_ctl -D "$pgdata" stop -m fast >/dev/null 2>&1
exit "$rc"
