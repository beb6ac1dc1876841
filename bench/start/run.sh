#!/usr/bin/env bash
# Start-latency benchmark (run as root): rootless run --rm vs podman run --rm, busybox, every storage
# driver and network mode, bwrap and runc as floors. Prints markdown for docs/benchmarks.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
exec /opt/rootless/venv/bin/python "$HERE/bench.py"
