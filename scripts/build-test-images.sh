#!/usr/bin/env bash
# Build the real-image test corpus (docs/images.md), as root, and cache it.
#
#   Debian bookworm minbase (debootstrap from the Debian mirror), and python, node, gcc, postgres and
#   nginx images each one layer over it (apt-get install in kernel overlayfs, the upper dir captured
#   as an OCI layer). One OCI layout, written to $CACHE/KEY where KEY hashes the recipes
#   (tests/support/imagebuild.py and this script): a second run with the same recipes does nothing.
#   The tests (tests/support/images.py) read the layout as the unprivileged user and push it to their
#   registry.
#
# The build runs in a private mount and pid namespace: its overlay, /proc and /dev mounts and any
# process a package's script leaves behind end with it.
#
#   ROOTLESS_TEST_IMAGES    cache directory (default /var/cache/rootless/test-images)
#   ROOTLESS_DEBIAN_MIRROR  Debian mirror (default http://deb.debian.org/debian)
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${ROOTLESS_TEST_IMAGES:-/var/cache/rootless/test-images}
BUILDER="$HERE/tests/support/imagebuild.py"

[ "$(id -u)" = 0 ] || { echo "build-test-images.sh: run as root (sudo $0)" >&2; exit 1; }
for cmd in debootstrap unshare chroot mount flock /usr/bin/python3; do
  command -v "$cmd" >/dev/null || { echo "build-test-images.sh: $cmd is missing (run scripts/setup-host.sh)" >&2; exit 1; }
done

key=$(/usr/bin/python3 "$BUILDER" key)
if [ -e "$CACHE/$key/index.json" ]; then
  echo "build-test-images: cached: $CACHE/$key"
  exit 0
fi
mkdir -p "$CACHE"
chmod 0755 "$CACHE" "$(dirname "$CACHE")"
# One build at a time; the builder looks at the cache again once it holds the lock.
exec flock "$CACHE/.lock" unshare --mount --propagation private --pid --fork --mount-proc \
  /usr/bin/python3 "$BUILDER" build "$CACHE"
