#!/usr/bin/env bash
# `logs --tail 5` of a ~290 MB log: rootless (this tree, and BEFORE=TREE if given) vs podman's
# k8s-file log (run as root). Prints markdown for docs/benchmarks.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
exec /opt/rootless/venv/bin/python "$HERE/bench.py"
