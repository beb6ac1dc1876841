#!/bin/bash
# Power the guest off; after VM_SHUTDOWN_TIMEOUT (default 60 s) kill its process group. Idempotent.
set -uo pipefail
RUN=${VM_RUN:-/tmp/rootless-vm}
[ -e "$RUN/pid" ] || exit 0
pid=$(cat "$RUN/pid")
if kill -0 "$pid" 2>/dev/null; then
  touch "$RUN/share/poweroff"
  deadline=$((SECONDS + ${VM_SHUTDOWN_TIMEOUT:-60}))
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && echo "shutdown.sh: clean poweroff timed out; killing the guest" >&2
fi
# UML forks helper processes per guest address space; they share the group that setsid created.
kill -KILL -- "-$pid" 2>/dev/null || true
rm -f "$RUN/pid" "$RUN/cow.img"
