#!/bin/bash
# The guest test pass for CI (.ci/run calls it as root): build or reuse the cached Debian 12 image,
# boot it under User-Mode Linux, run the in-guest tests as the unprivileged user `tester` (systemd PID 1,
# pure cgroup v2, a logind login session, the user bus), power it off, and exit with the tests' result.
#
# The checkout and /opt/rootless/venv (built by scripts/setup-host.sh on Debian 12's python3, which the
# guest also has) are mounted read-only at the same paths over hostfs: nothing is installed in the guest.
#   phase 1: tests/vm/guest/cgroup_checks.py: rootless.cgroups against the kernel, then the product on a
#            busybox image (run, run -d with limits, stats, ps, inspect, exec, restart, rm)
#   phase 2: user@1000.service restricted to `Delegate=memory pids` (a runtime drop-in, as root), then
#            the *undelegated* tests: asking for --cpus must fail with the documented fix.
# env: VM_CACHE (image cache, default /var/cache/rootless-vm), VENV (default /opt/rootless/venv)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd -P)
VENV=${VENV:-/opt/rootless/venv}
[ "$(id -u)" = 0 ] || { echo "run-guest-tests.sh: run as root" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || { echo "run-guest-tests.sh: no venv at $VENV (run scripts/setup-host.sh)" >&2; exit 1; }
T0=$SECONDS
export VM_RUN; VM_RUN=$(mktemp -d /tmp/rootless-vm.XXXXXX)
trap '"$HERE/shutdown.sh"; rm -rf "$VM_RUN"' EXIT

IMG=$("$HERE/build-image.sh") || { echo "run-guest-tests.sh: image build failed" >&2; exit 1; }
"$HERE/boot.sh" "$IMG" "$REPO" "$(cd "$VENV" && pwd -P)" || { tail -30 "$VM_RUN/console.log" >&2; exit 1; }

PYTEST="cd /tmp && PYTHONDONTWRITEBYTECODE=1 PYTHONPATH='$REPO' ROOTLESS_VM_GUEST=1 \
  '$VENV/bin/python' -m pytest -p no:cacheprovider -ra --durations=5 --rootdir '$REPO' -c '$REPO/pyproject.toml' \
  '$REPO/tests/vm/guest/cgroup_checks.py'"
echo "== phase 1: cgroup tests as tester (Delegate=cpu cpuset io memory pids)"
"$HERE/run-in-guest.sh" -u tester -t 480 -- "$PYTEST -k 'not undelegated'"; rc1=$?

echo "== phase 2: user@1000.service with Delegate=memory pids only"
"$HERE/run-in-guest.sh" -t 60 -- '
  d=/run/systemd/system/user@1000.service.d; mkdir -p $d
  printf "[Service]\nDelegate=\nDelegate=memory pids\n" > $d/zz-restrict.conf
  systemctl daemon-reload && systemctl restart user@1000.service
  for i in $(seq 300); do systemctl is-active -q user@1000.service && [ -S /run/user/1000/bus ] && exit 0; sleep 0.1; done
  exit 1' || { echo "run-guest-tests.sh: could not restrict the delegation" >&2; exit 1; }
"$HERE/run-in-guest.sh" -u tester -t 120 -- "$PYTEST -k undelegated"; rc2=$?

echo "== guest tests: phase 1 rc=$rc1, phase 2 rc=$rc2, $((SECONDS - T0)) s in all"
[ $rc1 = 0 ] && [ $rc2 = 0 ]
