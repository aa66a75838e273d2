#!/bin/bash
# witness-demo-app: the demo's application. Twice a second it asks BIND
# which database app.example.test names and writes one row there as the
# role `app`, the role Witness's fence blocks; its log shows the writes
# stop when a site is lost and resume at the other one.
set -u
declare -A site=([10.213.0.11]=east [10.213.0.12]=west)
n=0
while true; do
	now=$(date -u +%T.%3N)
	ip=$(dig +short +time=1 +tries=1 @10.213.0.53 app.example.test A 2>/dev/null | head -n1)
	if [ -z "$ip" ]; then
		echo "$now app.example.test: no answer yet"
		sleep 0.5
		continue
	fi
	n=$((n + 1))
	# A site cut off mid-write answers nothing, not even a reset: the
	# write is given up after 5 s, as an application's would be.
	if out=$(timeout 5 psql "host=$ip user=app dbname=postgres connect_timeout=2 tcp_user_timeout=3000" -XAtq -v ON_ERROR_STOP=1 \
		-c "INSERT INTO demo_writes (n, site) VALUES ($n, current_setting('cluster_name')) RETURNING site" 2>&1); then
		echo "$now write $n to ${site[$ip]:-$ip}: ok (written at $out)"
	else
		echo "$now write $n to ${site[$ip]:-$ip}: failed: $(echo "$out" | tail -n1)"
	fi
	sleep 0.5
done
