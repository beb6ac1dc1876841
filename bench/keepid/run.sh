#!/usr/bin/env bash
# keep-id benchmark (run as root): the first and later `run --rm --userns=keep-id` of the corpus's gcc
# image, rootless against podman, and the store's growth (bench/keepid/bench.py). Prints markdown
# for docs/benchmarks.md. IMAGE=python|node|... picks another corpus image, RUNS the repetitions.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
exec /opt/rootless/venv/bin/python "$HERE/bench.py"
