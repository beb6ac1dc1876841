#!/usr/bin/env bash
# The main job, as the unprivileged user: build a small busybox image offline from Debian's
# busybox-static, and show what rootless sees on this host. Run as root after setup-host.sh.
set -euo pipefail
TEST_USER=${ROOTLESS_TEST_USER:-tester}
AS="/opt/rootless/src/scripts/as-user.sh"
DEMO=/var/tmp/rootless-demo
install -d -o "$TEST_USER" -g "$TEST_USER" -m 0755 "$DEMO"

echo "== building the busybox image offline (from /bin/busybox) as $TEST_USER"
$AS rm -rf "$DEMO/busybox-oci" "$DEMO/busybox.tar"
$AS /usr/bin/python3 -c "
import sys; sys.path.insert(0, '/opt/rootless/src/tests')
from support import oci
oci.build_busybox_layout('$DEMO/busybox-oci')
oci.write_oci_archive('$DEMO/busybox-oci', '$DEMO/busybox.tar')
print('image: $DEMO/busybox.tar (oci-archive)')"

echo "== rootless info (as $TEST_USER)"
$AS rootless info
