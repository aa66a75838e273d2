#!/usr/bin/env bash
# Makes the Debian bookworm base image of the compose demo without a
# registry: debootstrap a minimal root filesystem into a temporary folder,
# then docker import it. Does nothing when the image exists already.
#
#   deploy/compose/base-image.sh [IMAGE]     (default witness-demo/debian:bookworm)
#
# The mirror is the one apt uses on this machine (WITNESS_DEBIAN_MIRROR
# overrides it). Needs root and debootstrap (installed when missing).
set -euo pipefail
trap 'echo "base-image: failed at line $LINENO" >&2' ERR
image=${1:-witness-demo/debian:bookworm}
if docker image inspect "$image" >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "base-image: building $image needs root (debootstrap): run as root once" >&2
	exit 1
fi
mirror=${WITNESS_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
	# The first plain Debian archive among apt's sources, one-line or deb822.
	mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		sed -n -E 's#^(deb[[:space:]]+(\[[^]]*\][[:space:]]+)?|URIs:[[:space:]]*)([a-z]+://[^[:space:]]*/debian/?)([[:space:]].*)?$#\3#p' |
		head -n1) || true
fi
mirror=${mirror:-http://deb.debian.org/debian}
if ! command -v debootstrap >/dev/null 2>&1; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
root=$(mktemp -d /var/tmp/witness-demo-rootfs.XXXXXX)
cleanup() {
	# debootstrap mounts proc and sys inside; never leave them behind.
	for m in proc sys dev/pts dev; do umount -l "$root/$m" 2>/dev/null || true; done
	rm -rf --one-file-system "$root"
}
trap cleanup EXIT
echo "base-image: debootstrap bookworm from $mirror (a few minutes, once)"
debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
	{ tail -n 20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
for m in proc sys dev/pts dev; do umount -l "$root/$m" 2>/dev/null || true; done
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# Containers install packages with apt; keep them small and quiet.
cat >"$root/etc/apt/apt.conf.d/90witness-demo" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "3";
APT
tar -C "$root" --numeric-owner -c . | docker import \
	-c 'ENV LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive' -c 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "base-image: made $image"
