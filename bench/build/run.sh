#!/usr/bin/env bash
# Build benchmark (run as root): rootless build vs podman build (buildah inside), side by side, as the
# test user: a Python app and a multi-stage C build on a Debian image; cold build, rebuild with no
# change, rebuild after touching one COPY'd file. Needs the Debian mirror and PyPI (apt and pip in
# RUN). Prints markdown for docs/benchmarks.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOTFS=${DEBIAN_ROOTFS:-/var/tmp/rootless-bench/debian-rootfs}
if [ ! -d "$ROOTFS" ]; then
  mkdir -p "$(dirname "$ROOTFS")"
  debootstrap --variant=minbase bookworm "$ROOTFS.new" "${MIRROR:-http://deb.debian.org/debian}" >/dev/null
  mv "$ROOTFS.new" "$ROOTFS"
fi
DEBIAN_ROOTFS=$ROOTFS exec /opt/rootless/venv/bin/python "$HERE/bench.py"
