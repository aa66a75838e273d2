#!/usr/bin/env bash
# make compose-up: build the demo's images on this machine (there is no
# registry to pull from), then start the stack with docker-compose up -d.
#
#   deploy/compose/up.sh            build if needed, then up -d
#   deploy/compose/up.sh --build    build only
#
# Every image is built before anything starts, so a failed build leaves no
# half-started stack. Running it again while the stack runs is harmless:
# unchanged images and containers are left as they are.
set -euo pipefail
trap 'echo "compose-up: failed at line $LINENO of $0; nothing was started" >&2' ERR
cd "$(dirname "$0")/../.."
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
	echo "compose-up: needs a running Docker Engine, and there is none here" >&2
	exit 1
fi
if ! command -v docker-compose >/dev/null 2>&1; then
	echo "compose-up: needs docker-compose (1.29), not found" >&2
	exit 1
fi
export COMPOSE_PROJECT_NAME=witness-demo

# The Debian base, made once with debootstrap and docker import.
bash deploy/compose/base-image.sh witness-demo/debian:bookworm

# Static binaries for every image (FROM scratch needs them static).
stage=deploy/compose/stage
mkdir -p "$stage/rules"
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
CGO_ENABLED=0 ${GO:-go} build -trimpath \
	-ldflags "-s -w -X github.com/sitewitness/witness/cmd/internal/buildinfo.Version=$version" \
	-o "$stage/" ./cmd/witnessd ./cmd/witnessctl
# Witness's alert rules, when the repository has them.
rm -f "$stage"/rules/*.yml
for f in deploy/prometheus/*.yml; do
	[ -e "$f" ] || continue
	case $f in *_test.yml | *test*.yml) continue ;; esac
	cp "$f" "$stage/rules/"
done

docker-compose build -q
if [ "${1:-}" = --build ]; then
	exit 0
fi
trap - ERR
if ! docker-compose up -d; then
	echo "compose-up: docker-compose up failed; make compose-down removes what it started" >&2
	exit 1
fi
cat <<'TRY'

The demo is starting: sites east (primary) and west (standby), tiebreak, BIND, Prometheus, app.
  docker-compose ps                                    # health of every container
  docker-compose logs -f app                           # the app's writes
  docker-compose exec tiebreak /witnessctl status      # mutual TLS, the operator's certificate (pki volume)
  dig @127.0.0.1 -p 15353 app.example.test A +short    # 10.213.0.11 (east)
  docker network disconnect witness-demo_wan witness-demo-east   # lose east; or docker-compose stop east
  docker network connect --ip 10.213.0.11 witness-demo_wan witness-demo-east
  make compose-down                                    # remove it all, volumes too
TRY
