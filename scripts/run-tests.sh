#!/usr/bin/env bash
# The whole test suite, as CI runs it (make test). Run as root on Debian 12.
#   1. host setup (scripts/setup-host.sh: packages, device modes, test users, venv);
#   2. ruff lint and format check;
#   3. the root pass: tests marked `root` (e.g. the one-id fallback for a user without subids);
#   4. the guest pass: cgroup v2 + systemd tests in a User-Mode Linux guest (tests/vm/), if present;
#   5. the real-image corpus (scripts/build-test-images.sh: Debian images, built once and cached), then
#      the main pass as the unprivileged user `tester`: everything else; then a second pass as
#      `tester2`, whose uid and subordinate range differ, of the tests marked `ids` (no test may depend on one user's ids);
#   6. a leak check: no process of the test users, no FUSE mount, no network namespace of theirs (held by a
#      process, an open fd or a bind mount) and no new network interface may outlive the suite.
# Extra arguments go to both pytest passes (e.g. -k pull, -x).
set -uo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
VENV=/opt/rootless/venv
SRC=/opt/rootless/src
TEST_USER=${ROOTLESS_TEST_USER:-tester}

"$HERE/scripts/setup-host.sh" || exit 1
cd "$SRC" || exit 1
failed=0

echo "== ruff"
"$VENV/bin/ruff" check --no-cache . && "$VENV/bin/ruff" format --no-cache --check . || failed=1

echo "== root pass"
"$VENV/bin/python" -m pytest -p no:cacheprovider --basetemp=/tmp/rootless-tests-root -m root tests "$@"
rc=$?; [ $rc = 0 ] || [ $rc = 5 ] || failed=1

if [ -x tests/vm/run-guest-tests.sh ] && [ "${ROOTLESS_SKIP_GUEST:-0}" != 1 ]; then
  echo "== guest pass (User-Mode Linux, systemd, cgroup v2)"
  tests/vm/run-guest-tests.sh || failed=1
fi

# The unprivileged passes: everything as $TEST_USER, then again as $SECOND_USER (made later, so its
# uid and subordinate range differ) to prove no test depends on one user's ids. The second pass runs
# the tests marked `ids` (tests/conftest.py: the modules whose behaviour turns on uids, gids and
# subordinate ranges) and leaves out those marked `workload` (the real-image workloads, the slow part):
# the whole suite twice would cost CI 20 more minutes for no more proof.
SECOND_USER=${ROOTLESS_TEST_USER2:-${TEST_USER}2}
users_pids() { for u in "$TEST_USER" "$SECOND_USER"; do pgrep -u "$u" | tr '\n' ' '; done; }
before_pids=" $(users_pids) "
before_mounts=$(grep -cE ' fuse(\.[a-z0-9_-]+)? ' /proc/mounts)
# network namespaces (lsns: held by any process, fd or nsfs mount) owned by the test users, nsfs
# mounts, and the host's interfaces: user-defined networks must leave none of them behind
users_netns() { for u in "$TEST_USER" "$SECOND_USER"; do lsns -t net -n -r -o NS,USER 2>/dev/null | awk -v u="$u" '$2 == u {print $1}'; done | sort -u; }
host_links() { ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort; }
before_netns=$(users_netns)
before_nsfs=$(grep -c ' nsfs ' /proc/mounts)
before_links=$(host_links)

unprivileged_pass() {  # USER MARKEXPR [pytest args]
  local user=$1 marks=$2; shift 2
  # a run that was killed can leave files of the user's subordinate ids in its basetemp, which
  # the user cannot delete (pytest would fail every test at setup): root clears it first
  rm -rf "/tmp/rootless-tests-$user"
  echo "== unprivileged pass (as $user: uid $(id -u "$user"), subuid $(grep "^$user:" /etc/subuid | head -n1 | cut -d: -f2-))"
  ROOTLESS_TEST_USER=$user "$HERE/scripts/as-user.sh" "$VENV/bin/python" -m pytest -p no:cacheprovider \
    --basetemp="/tmp/rootless-tests-$user" --durations=30 -m "$marks" tests "$@"
}
echo "== real-image corpus (scripts/build-test-images.sh, as root; cached by recipe)"
scripts/build-test-images.sh || failed=1
unprivileged_pass "$TEST_USER" "not root" "$@" || failed=1
unprivileged_pass "$SECOND_USER" "ids and not root and not workload" "$@" || failed=1

sleep 0.5
leaks=$(for u in "$TEST_USER" "$SECOND_USER"; do pgrep -u "$u" -a 2>/dev/null; done | while read -r pid rest; do
  case "$before_pids" in *" $pid "*) ;; *) echo "$pid $rest" ;; esac; done)
mounts=$(grep -cE ' fuse(\.[a-z0-9_-]+)? ' /proc/mounts)
if [ -n "$leaks" ] || [ "$mounts" -gt "$before_mounts" ]; then
  echo "LEAK CHECK FAILED: the suite left processes or FUSE mounts behind:"
  [ -n "$leaks" ] && echo "$leaks"
  grep -E ' fuse(\.[a-z0-9_-]+)? ' /proc/mounts
  failed=1
fi
netns_left=$(comm -13 <(echo "$before_netns") <(users_netns))
links_left=$(comm -13 <(echo "$before_links") <(host_links))
nsfs=$(grep -c ' nsfs ' /proc/mounts)
if [ -n "$netns_left" ] || [ -n "$links_left" ] || [ "$nsfs" -gt "$before_nsfs" ]; then
  echo "LEAK CHECK FAILED: the suite left network namespaces, nsfs mounts or interfaces behind:"
  [ -n "$netns_left" ] && lsns -t net | grep -wF "$netns_left"
  [ -n "$links_left" ] && echo "interfaces: $links_left"
  [ "$nsfs" -gt "$before_nsfs" ] && grep ' nsfs ' /proc/mounts
  failed=1
fi
exit $failed
