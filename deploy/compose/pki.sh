#!/bin/bash
# witness-demo-pki: the demo's certificates and gossip key, made once at the
# first `up` into the pki volume (never into an image layer), by the
# one-shot pki service before any witness starts:
#
#   ca.pem, ca-key.pem            the cluster's CA
#   NAME.pem, NAME-key.pem        each witness's certificate (both ends of
#                                 mutual TLS), for east-1, west-1, tiebreak-1
#   operator.pem, operator-key.pem  a client certificate for witnessctl,
#                                 role admin in policy.yaml
#   keyring-NAME.json             each witness's gossip keyring (one key,
#                                 the same for all); the witness writes it
#                                 back when witnessctl keyring changes it
#
# A second run finds ca.pem and leaves everything as it is.
set -euo pipefail
dir=/etc/witness/pki
mkdir -p "$dir"
if [ -s "$dir/ca.pem" ]; then
	echo "witness-demo-pki: $dir already holds the demo's CA; nothing to do"
	exit 0
fi
umask 077
work=$(mktemp -d "$dir/.new.XXXXXX")
witnessd tls ca create -dir "$work" >/dev/null
for w in east-1:east:10.213.0.11 west-1:west:10.213.0.12 tiebreak-1:tiebreak:10.213.0.13; do
	IFS=: read -r name site ip <<<"$w"
	witnessd tls cert create -cluster witness-demo -name "$name" -site "$site" -ip "$ip" -dir "$work" >/dev/null
done
witnessd tls cert create -cluster witness-demo -name operator -client -role admin -dir "$work" >/dev/null
key=$(witnessd keygen)
for name in east-1 west-1 tiebreak-1; do
	printf '["%s"]\n' "$key" >"$work/keyring-$name.json"
done
# The CA's key stays in the volume for the demo's sake (more certificates
# with witnessd tls cert create -dir /etc/witness/pki); a real CA keeps it
# elsewhere.
# ca.pem last: its presence says the rest is complete.
find "$work" -mindepth 1 -maxdepth 1 ! -name ca.pem -exec mv -t "$dir" {} +
mv "$work/ca.pem" "$dir/ca.pem"
rmdir "$work"
echo "witness-demo-pki: made the demo's CA, certificates and gossip key in $dir"
ls "$dir"
