#!/usr/bin/env bash
# make compose-test: the compose demo end to end. Builds the images, starts
# the stack, waits until group app is stable at east, cuts east off the wan
# network, checks that west is promoted and that BIND answers west within
# failover_after plus a few seconds, brings east back and checks that its
# database stays fenced, restarts the east container and checks that its
# PostgreSQL comes back as a standby, not as a second primary, that
# reinstate makes it a streaming standby of west, and that the admin API
# refuses a client without a certificate. Everything
# (containers, networks, volumes) is removed at the end, whatever happened.
set -euo pipefail
cd "$(dirname "$0")/../.."
export COMPOSE_PROJECT_NAME=witness-demo COMPOSE_DOCKER_CLI_BUILD=0

failover_after=10 # groups.yaml
slack=8           # probes, commit, promote, DNS: what Witness adds
east=10.213.0.11 west=10.213.0.12

step() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }
fail() {
	echo "compose-test: FAIL: $*" >&2
	exit 1
}
teardown() {
	rc=$?
	if [ "$rc" -ne 0 ] && docker info >/dev/null 2>&1; then
		echo "---- last logs (the run failed) ----"
		docker-compose logs --no-color --tail=40 2>&1 | grep -v ' query: ' || true
		docker-compose exec -T tiebreak /witnessctl group app 2>&1 || true
	fi
	step "tear down"
	docker-compose down -v --remove-orphans -t 10 >/dev/null 2>&1 || true
	if [ "$rc" -eq 0 ]; then
		echo "compose-test: 1 passed, 0 failed"
	else
		echo "compose-test: 0 passed, 1 failed"
	fi
	exit "$rc"
}

# wait_for SECONDS WHAT COMMAND...: run COMMAND every half second until it
# succeeds; fail after SECONDS.
wait_for() {
	local limit=$1 what=$2
	shift 2
	local deadline=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$deadline" ] || fail "$what: not within ${limit}s"
		sleep 0.5
	done
}

ctl() { docker-compose exec -T tiebreak /witnessctl --timeout 3s "$@"; }

# group_is SITE: group app is active at SITE and the plan of its token is
# done (settle ok).
group_is() {
	ctl -o json group app | python3 -c '
import json, sys
g = json.load(sys.stdin)
done = {s["step"] for s in g["steps"] if s["token"] == g["token"] and s["ok"]}
sys.exit(0 if g["active_site"] == sys.argv[1] and "settle" in done else 1)' "$1"
}

# member_alive NAME: gossip sees witness NAME alive.
member_alive() {
	ctl -o json status | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if any(m["name"] == sys.argv[1] and m["alive"] for m in s["members"]) else 1)' "$1"
}

dns_answer() { docker exec witness-demo-dns dig +short +time=1 +tries=1 @10.213.0.53 "$1" "${2:-A}"; }
dns_is() { [ "$(dns_answer app.example.test)" = "$1" ]; }

pg() { docker exec "witness-demo-$1" psql -h /var/run/postgresql -U postgres -XAtq -c "$2"; }
is_primary() { [ "$(pg "$1" 'SELECT pg_is_in_recovery()')" = f ]; }
is_standby() { [ "$(pg "$1" 'SELECT pg_is_in_recovery()')" = t ]; }
# app_writes SITE: the app's role can write at SITE's database.
app_writes() {
	docker exec witness-demo-app psql "host=$1 user=app dbname=postgres connect_timeout=2" -XAtq -v ON_ERROR_STOP=1 \
		-c "INSERT INTO demo_writes (n, site) VALUES (-1, 'compose-test')"
}
# prom_scrapes N: Prometheus has N witnesses up.
prom_scrapes() {
	docker exec witness-demo-prometheus promtool query instant http://127.0.0.1:9090 'count(up{job="witness"} == 1)' |
		grep -q "=> $1 @"
}
# prom_rules: Prometheus loaded at least one rule group.
prom_rules() {
	python3 -c '
import json, sys, urllib.request
d = json.load(urllib.request.urlopen("http://127.0.0.1:19090/api/v1/rules", timeout=5))
sys.exit(0 if d["data"]["groups"] else 1)'
}
east_fenced() {
	! app_writes "$east" && docker exec witness-demo-east test -e /var/lib/witness-pg/data/standby.signal
}

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1; then
	echo "compose-test: needs a running Docker Engine and docker-compose (1.29), and there are none here" >&2
	exit 1
fi
trap teardown EXIT
docker-compose down -v --remove-orphans >/dev/null 2>&1 || true

step "build the images and start (make compose-up)"
start=$SECONDS
bash deploy/compose/up.sh >/dev/null
echo "built and started in $((SECONDS - start))s"

step "wait until group app is stable at east"
wait_for 180 "group app stable at east" group_is east
wait_for 30 "DNS answers east" dns_is "$east"
is_primary east || fail "east is not a primary"
wait_for 30 "west streams from east" is_standby west
wait_for 30 "the app writes at east" sh -c "docker logs --since 5s witness-demo-app 2>&1 | grep -q 'to east: ok'"
echo "stable at east after $((SECONDS - start))s; fence record: $(dns_answer _witness.app.example.test TXT)"

wait_for 30 "Prometheus scraping the three witnesses" prom_scrapes 3
if ls deploy/prometheus/*.yml >/dev/null 2>&1; then
	wait_for 30 "Prometheus loading deploy/prometheus's rules" prom_rules
fi
echo "Prometheus scrapes the three witnesses"

step "cut east off the wan network"
cut=$SECONDS
cut_at=$(date -u +%Y-%m-%dT%H:%M:%S)
docker network disconnect witness-demo_wan witness-demo-east
limit=$((failover_after + slack))
wait_for "$limit" "DNS at BIND answers west" dns_is "$west"
took=$((SECONDS - cut))
echo "BIND answers west ${took}s after the cut (limit ${limit}s)"
is_primary west || fail "west answers DNS but is not a primary"
wait_for 30 "group app stable at west" group_is west
fence=$(dns_answer _witness.app.example.test TXT)
case $fence in *site=west*) ;; *) fail "fence record $fence does not name west" ;; esac
echo "fence record: $fence"
wait_for 30 "the app writes at west" sh -c "docker logs --since $cut_at witness-demo-app 2>&1 | grep -q 'to west: ok'"
# Read whole before grep stops early: under pipefail, a writer cut off by
# grep -m1 (SIGPIPE) would fail the run.
app_log=$(docker logs --since "$cut_at" witness-demo-app 2>&1)
grep -m1 'to west: ok' <<<"$app_log"
east_fenced || fail "east, cut off, still takes the app's writes or has no standby.signal"
echo "east demoted itself: no writes, standby.signal left"

step "bring east back: it stays fenced"
docker network connect --ip "$east" witness-demo_wan witness-demo-east
wait_for 30 "east's witness back in the cluster" member_alive east-1
sleep 5 # a lease renewal or two: the witness must not lift the fence now
east_fenced || fail "east came back writable after reconnecting"
group_is west || fail "group app moved off west when east came back"
echo "east reconnected and still fenced; group app stays at west"

step "reinstate: east becomes a streaming standby of west by itself"
# east_streams: east's WAL receiver streams from west.
east_streams() { [ "$(pg east 'SELECT status || sender_host FROM pg_stat_wal_receiver')" = "streaming$west" ]; }
wait_for 120 "east streaming from west (reinstate: auto)" east_streams
ctl group app | grep -E '^ *[0-9]+ +reinstate:' | tail -n 8 || true
east_fenced || fail "the reinstated east takes the app's writes"
echo "east reinstated: a standby streaming from west"

step "restart the east container: PostgreSQL starts as a standby"
docker-compose restart -t 20 east >/dev/null
wait_for 90 "east's database answers" is_standby east
prepared=$(docker logs witness-demo-east 2>&1 | grep 'prepare-start:' | tail -n1) || true
echo "$prepared"
case $prepared in *'starts as a standby'*) ;; *) false ;; esac ||
	fail "prepare-start did not keep east a standby"
east_fenced || fail "east came back from a restart writable"
is_primary west || fail "west is no longer primary"
dns_is "$west" || fail "DNS moved off west"
wait_for 60 "east streaming from west again after its restart" east_streams
echo "east restarted as a standby and streams from west; west is still the one primary"

step "the admin API refuses a client without a certificate"
if docker-compose exec -T -e WITNESS_CA= -e WITNESS_CERT= -e WITNESS_KEY= tiebreak /witnessctl --timeout 3s status >/dev/null 2>&1; then
	fail "a plaintext witnessctl was answered"
fi
ctl status >/dev/null || fail "witnessctl with the operator's certificate was refused"
echo "plaintext refused; the operator's certificate answered"

step "switch over home to east: no row west acknowledged is lost"
wait_for 90 "a switchover to east to be taken" ctl switchover app east --reason "back home" --wait 0
wait_for 60 "group app stable at east again" group_is east
dns_is "$east" || fail "DNS does not answer east after the switchover home"
# On a loaded machine east's witness may lose its lease for a moment and
# fence east until it is renewed: east must be the primary again soon.
wait_for 60 "east the primary after the switchover home" is_primary east
wait_for 120 "west a standby of east again (reinstate: auto)" is_standby west
app_log=$(docker logs witness-demo-app 2>&1)
acked=$(grep -c 'to west: ok' <<<"$app_log" || true)
kept=$(pg east "SELECT count(*) FROM demo_writes WHERE site = 'west' AND n > 0")
echo "rows the app wrote at west and saw acknowledged: $acked; on east after the switchover home: $kept"
[ "$kept" -ge "$acked" ] || fail "east holds $kept of the $acked rows west acknowledged"
