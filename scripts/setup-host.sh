#!/usr/bin/env bash
# Host setup for rootless on Debian 12, used by both Quick start commands (make demo, make test).
# Run as root. Idempotent: safe to re-run; it only changes what is missing.
#
#   - installs the apt packages rootless and its tests need;
#   - sets /dev/fuse and /dev/net/tun to 0666 (a desktop distro's udev does this; this machine has none);
#   - creates the unprivileged test users `tester` and `tester2` with /etc/subuid and /etc/subgid
#     ranges as useradd allocates them (tester2 is made last, so its uid and range differ), and
#     `tester-nosub` with none (to test the one-id fallback);
#   - creates their XDG_RUNTIME_DIR (/run/user/UID, 0700), as logind would;
#   - copies this checkout to /opt/rootless/src and builds /opt/rootless/venv on /usr/bin/python3,
#     readable by every user, with rootless installed plus its test extras;
#   - links /usr/local/bin/rootless.
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${ROOTLESS_PREFIX:-/opt/rootless}
TEST_USER=${ROOTLESS_TEST_USER:-tester}
NOSUB_USER=${TEST_USER}-nosub
SECOND_USER=${ROOTLESS_TEST_USER2:-${TEST_USER}2}

[ "$(id -u)" = 0 ] || { echo "setup-host.sh: run as root (sudo $0)" >&2; exit 1; }

APT_PACKAGES=(
  uidmap slirp4netns passt fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv
  busybox-static docker-registry skopeo apache2-utils tini iproute2 libseccomp2 util-linux
  procps psmisc make git openssl user-mode-linux debootstrap e2fsprogs
  podman runc buildah golang-github-containers-common libc6-dev
  podman-compose  # 1.0.3: tests/test_apps_e2e.py runs it unchanged against rootless (and PyPI's 1.6, below)
  curl  # the workload tests fetch from published ports as a user would (debootstrap above builds their images)
  docker.io docker-compose  # Docker API clients for `system service` tests: only the client runs, never dockerd
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# docker.io is installed for its client: no Docker daemon may run (the tests talk to rootless's socket)
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl disable --now docker.service docker.socket containerd.service >/dev/null 2>&1 || true
fi

# Device nodes: without udev they are 0600 and an ordinary user can use neither FUSE nor a tap device.
for dev in /dev/fuse /dev/net/tun; do
  [ -e "$dev" ] && chmod 0666 "$dev"
done
# pjdfstest-style suites and `--storage-opt allow_other` need user_allow_other.
grep -qx 'user_allow_other' /etc/fuse.conf 2>/dev/null || echo 'user_allow_other' >>/etc/fuse.conf

# Users. useradd allocates subordinate ids itself (SUB_UID_MIN in /etc/login.defs), so the ranges
# depend on which users existed before: tests derive them, never assume 100000. The second test user
# is made after the others, so its uid and range differ from the first's; CI runs tests as both.
next_free_range() {  # the first 65536-id block above every range in /etc/subuid and /etc/subgid
  awk -F: 'BEGIN { end = 100000 } NF >= 3 && $2 + $3 > end { end = $2 + $3 } END { print end }' \
    /etc/subuid /etc/subgid
}
for u in "$TEST_USER" "$NOSUB_USER" "$SECOND_USER"; do
  id "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$u"
done
touch /etc/subuid /etc/subgid
for u in "$TEST_USER" "$SECOND_USER"; do
  if ! grep -q "^${u}:" /etc/subuid || ! grep -q "^${u}:" /etc/subgid; then
    start=$(next_free_range)
    grep -q "^${u}:" /etc/subuid || echo "${u}:${start}:65536" >>/etc/subuid
    grep -q "^${u}:" /etc/subgid || echo "${u}:${start}:65536" >>/etc/subgid
  fi
done
sed -i "/^${NOSUB_USER}:/d" /etc/subuid /etc/subgid
for u in "$TEST_USER" "$NOSUB_USER" "$SECOND_USER"; do
  uid=$(id -u "$u")
  install -d -o "$u" -g "$u" -m 0700 "/run/user/$uid"
done

# The code, where every user can read it, and the venv.
mkdir -p "$PREFIX/src"
if [ "$(cd "$HERE" && pwd -P)" != "$(cd "$PREFIX/src" && pwd -P)" ]; then
  # Copy the working tree as it is (tracked or not), without VCS data, caches or build output.
  rm -rf "$PREFIX/src.new" && mkdir -p "$PREFIX/src.new"
  tar -C "$HERE" --exclude=.git --exclude=__pycache__ --exclude='*.egg-info' --exclude=.pytest_cache \
      --exclude=.ruff_cache --exclude=./build -cf - . | tar -C "$PREFIX/src.new" -xf -
  rm -rf "$PREFIX/src.old"
  mv "$PREFIX/src" "$PREFIX/src.old" && mv "$PREFIX/src.new" "$PREFIX/src" && rm -rf "$PREFIX/src.old"
fi
chmod -R a+rX "$PREFIX/src"

# Dependencies when pyproject.toml changes; rootless itself (a regular, non-editable install, as a user
# would have it: no editable-import hook on the start path) every time, since the code may have changed.
stamp="$PREFIX/venv/.deps-$(sha256sum "$PREFIX/src/pyproject.toml" | cut -c1-16)"
pipq() {  # pip, quietly, keeping its exit status
  local out rc=0
  out=$("$PREFIX/venv/bin/pip" -q --disable-pip-version-check "$@" 2>&1) || rc=$?
  printf '%s\n' "$out" | grep -vE '^(WARNING: Location|  |$)' || true
  return $rc
}
if [ ! -e "$stamp" ]; then
  [ -x "$PREFIX/venv/bin/python" ] || /usr/bin/python3 -m venv "$PREFIX/venv"
  # the stamp is written only once everything imports: a failed install (network down) is retried
  if ! pipq install --upgrade pip || ! pipq install "$PREFIX/src[test]" ||
     ! "$PREFIX/venv/bin/python" -c 'import click, trio, pyfuse3, httpx, pytest'; then
    echo "setup: installing the Python dependencies failed (is PyPI reachable?); run setup again" >&2
    exit 1
  fi
  rm -f "$PREFIX"/venv/.deps-* "$PREFIX"/venv/.installed-*
  touch "$stamp"
fi
pipq install --no-deps --force-reinstall "$PREFIX/src"
"$PREFIX/venv/bin/python" -c 'import rootless.cli, pyfuse3, trio, click' || {
  echo "setup: the venv at $PREFIX/venv is broken" >&2; exit 1; }
chmod -R a+rX "$PREFIX/venv"
# Byte-compile as root: users cannot write __pycache__ here, and compiling at every start costs ~25 ms.
"$PREFIX/venv/bin/python" -m compileall -q "$PREFIX/src/rootless" >/dev/null
chmod -R a+rX "$PREFIX/src"
ln -sf "$PREFIX/venv/bin/rootless" /usr/local/bin/rootless
# podman-compose 1.6 from PyPI, in a venv of its own (its dependencies stay out of rootless's):
# tests/test_apps_e2e.py runs it, as Debian's 1.0.3, pointed at rootless with --podman-path.
PC16="$PREFIX/pc16"
if ! "$PC16/bin/podman-compose" --version 2>/dev/null | grep -q 'podman-compose version 1\.6\.'; then
  rm -rf "$PC16" && /usr/bin/python3 -m venv "$PC16"
  "$PC16/bin/pip" -q --disable-pip-version-check install 'podman-compose==1.6.*' || {
    echo "setup: installing podman-compose 1.6 failed (is PyPI reachable?); run setup again" >&2; exit 1; }
  chmod -R a+rX "$PC16"
fi
echo "setup: ok (user $TEST_USER, venv $PREFIX/venv, code $PREFIX/src)"
