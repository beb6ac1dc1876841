#!/usr/bin/env bash
# Run every benchmark (on demand; not part of CI). Results are printed as markdown tables for
# docs/benchmarks.md. Run as root: it sets up the anchors, then runs each bench as the test user.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
"$HERE/setup.sh"
for b in "$HERE"/*/run.sh; do
  [ -x "$b" ] || continue
  echo "== $(basename "$(dirname "$b")")"
  "$b"
done
