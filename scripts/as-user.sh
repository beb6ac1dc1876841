#!/usr/bin/env bash
# Run a command as the unprivileged test user with a clean, login-like environment (started as root).
# usage: scripts/as-user.sh [-u USER] CMD [ARGS...]
set -euo pipefail
user=${ROOTLESS_TEST_USER:-tester}
if [ "${1:-}" = -u ]; then user=$2; shift 2; fi
uid=$(id -u "$user")
home=$(getent passwd "$user" | cut -d: -f6)
exec runuser -u "$user" -- env -i \
  HOME="$home" USER="$user" LOGNAME="$user" SHELL=/bin/bash \
  PATH=/opt/rootless/venv/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
  XDG_RUNTIME_DIR="/run/user/$uid" LANG=C.UTF-8 TERM="${TERM:-dumb}" \
  ${CI:+CI=$CI} ${PYTHONPATH:+PYTHONPATH=$PYTHONPATH} \
  "$@"
