#!/usr/bin/env bash
# Pull benchmark (run as root): rootless pull vs podman pull, busybox and debootstrap Debian images,
# from a loopback docker-registry, cold store each run. Prints markdown for docs/benchmarks.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOTFS=${DEBIAN_ROOTFS:-/var/tmp/rootless-bench/debian-rootfs}
if [ ! -d "$ROOTFS" ]; then
  mkdir -p "$(dirname "$ROOTFS")"
  debootstrap --variant=minbase bookworm "$ROOTFS.new" "${MIRROR:-http://deb.debian.org/debian}" >/dev/null
  mv "$ROOTFS.new" "$ROOTFS"
fi
DEBIAN_ROOTFS=$ROOTFS /opt/rootless/venv/bin/python "$HERE/bench.py"
