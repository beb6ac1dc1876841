#!/usr/bin/env bash
# Network throughput and published-port connection setup: rootless vs rootless podman with the same
# helper (slirp4netns) and vs pasta by hand. On demand, not CI. Run as root (it runs the benchmark as
# the test user) or as the test user; extra arguments go to run.py (--rounds, --seconds, --samples).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$(dirname "$HERE")")
if [ "$(id -u)" = 0 ]; then
  exec env PYTHONPATH="$REPO" "$REPO/scripts/as-user.sh" /opt/rootless/venv/bin/python "$HERE/run.py" "$@"
fi
exec env PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" /opt/rootless/venv/bin/python "$HERE/run.py" "$@"
