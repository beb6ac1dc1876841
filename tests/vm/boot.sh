#!/bin/bash
# Boot the test guest under User-Mode Linux in the background; return once it is usable (systemd up,
# the lingering user's manager active, the job agent answering).
#
# Usage: boot.sh IMAGE [HOST_DIR...]
#   IMAGE      rootfs.img from build-image.sh; never modified (each boot writes a throw-away COW file)
#   HOST_DIR   host directories mounted read-only at the same path in the guest (checkout, venv)
# env: VM_RUN (state dir, default /tmp/rootless-vm), VM_MEM (default 768M), VM_BOOT_TIMEOUT (s, 180)
set -euo pipefail
IMG=${1:?usage: boot.sh IMAGE [HOST_DIR...]}; shift
RUN=${VM_RUN:-/tmp/rootless-vm}
if [ -e "$RUN/pid" ] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null; then
  echo "boot.sh: a guest is already running (pid $(cat "$RUN/pid")); run shutdown.sh first" >&2; exit 1
fi
command -v linux.uml >/dev/null || { echo "boot.sh: install user-mode-linux" >&2; exit 1; }
rm -rf "$RUN" && mkdir -p "$RUN/share/jobs"
mounts=()
for d in "$@"; do mounts+=("rootless_vm.mount=$(cd "$d" && pwd -P)"); done
T0=$SECONDS
# ubd0=COW,BASE keeps the image pristine. setsid: the guest and its helper processes form one process
# group that shutdown.sh can reap.
setsid linux.uml ubd0="$RUN/cow.img,$IMG" root=/dev/ubda rw mem="${VM_MEM:-768M}" \
  con0=null,fd:1 con=null ssl=null systemd.unified_cgroup_hierarchy=1 \
  rootless_vm.share="$RUN/share" "${mounts[@]}" </dev/null >"$RUN/console.log" 2>&1 &
echo $! >"$RUN/pid"
pid=$!
deadline=$((SECONDS + ${VM_BOOT_TIMEOUT:-180}))
until [ -e "$RUN/share/ready" ]; do
  kill -0 "$pid" 2>/dev/null || { echo "boot.sh: the guest died while booting; see $RUN/console.log" >&2; exit 1; }
  [ $SECONDS -lt $deadline ] || { echo "boot.sh: boot timed out; see $RUN/console.log" >&2; exit 1; }
  sleep 0.2
done
echo "boot.sh: guest (pid $pid) ready after $((SECONDS - T0)) s: $(cat "$RUN/share/ready")"
