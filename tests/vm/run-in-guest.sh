#!/bin/bash
# Run a bash script in the running guest and relay its stdout, stderr and exit code.
# Usage: run-in-guest.sh [-u USER] [-t TIMEOUT_S] [-- 'command']    (without a command: the script on stdin)
# As a user other than root, the command runs in a fresh login session (logind's XDG_RUNTIME_DIR, user bus).
set -euo pipefail
RUN=${VM_RUN:-/tmp/rootless-vm}
user=root; timeout=600
while [ $# -gt 0 ]; do
  case $1 in -u) user=$2; shift 2 ;; -t) timeout=$2; shift 2 ;; --) shift; break ;; *) break ;; esac
done
[ -e "$RUN/pid" ] || { echo "run-in-guest.sh: no guest (boot.sh first)" >&2; exit 125; }
job=$(mktemp -d "$RUN/share/jobs/j.XXXXXX")
chmod 0755 "$job"
if [ $# -gt 0 ]; then printf '%s\n' "$*" >"$job/cmd"; else cat >"$job/cmd"; fi
chmod 0644 "$job/cmd"
echo "$user" >"$job/user"
touch "$job/go"
deadline=$((SECONDS + timeout))
until [ -e "$job/done" ]; do
  kill -0 "$(cat "$RUN/pid")" 2>/dev/null || { echo "run-in-guest.sh: the guest is not running" >&2; exit 125; }
  [ $SECONDS -lt $deadline ] || { echo "run-in-guest.sh: timed out after ${timeout}s" >&2; exit 124; }
  sleep 0.05
done
cat "$job/stdout"; cat "$job/stderr" >&2
rc=$(cat "$job/rc"); rm -rf "$job"; exit "$rc"
