#!/bin/bash
# witness-demo-dns: BIND 9 serving example.test., a dynamic zone that takes
# updates signed with the witnesses' TSIG key. The key is made at the first
# start into the tsig volume, which the witnesses mount read-only; the zone
# and its journal live in the dns-zone volume, so updates survive a restart.
set -euo pipefail
key=/etc/witness/tsig/tsig.key
zonedir=/var/lib/witness-dns
if [ ! -s "$key" ]; then
	umask 077
	head -c 32 /dev/urandom | base64 >"$key.tmp"
	mv "$key.tmp" "$key"
	echo "witness-demo-dns: made a new TSIG key in $key"
fi
secret=$(cat "$key")
mkdir -p "$zonedir"
if [ ! -s "$zonedir/example.test.db" ]; then
	cat >"$zonedir/example.test.db" <<ZONE
\$TTL 5
@ IN SOA ns1.example.test. hostmaster.example.test. ( 1 60 60 3600 1 )
@ IN NS ns1.example.test.
ns1 IN A 10.213.0.53
ZONE
fi
umask 077
cat >/etc/bind/witness-demo.conf <<CONF
options {
	directory "$zonedir";
	pid-file none;
	listen-on port 53 { any; };
	listen-on-v6 { none; };
	recursion no;
	allow-query { any; };
	notify no;
	dnssec-validation no;
};
logging {
	channel all { stderr; severity info; print-time yes; print-category yes; };
	category default { all; };
	category update { all; };
	category update-security { all; };
	category queries { null; };
	category lame-servers { null; };
};
controls { };
key "witness" {
	algorithm hmac-sha256;
	secret "$secret";
};
zone "example.test." {
	type primary;
	file "example.test.db";
	allow-update { key "witness"; };
};
CONF
exec named -g -4 -c /etc/bind/witness-demo.conf
