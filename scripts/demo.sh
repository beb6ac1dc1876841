#!/usr/bin/env bash
# The main job, as the unprivileged user: build a small busybox image offline from Debian's
# busybox-static, show what rootless sees on this host, load the image and run a container. Run as root after setup-host.sh.
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
oci.add_image('$DEMO/busybox-oci', 'localhost/busybox:latest', oci.busybox_layers(), config=oci.BUSYBOX_CONFIG)
oci.write_oci_archive('$DEMO/busybox-oci', '$DEMO/busybox.tar')
print('image: $DEMO/busybox.tar (oci-archive)')"

echo "== rootless info (as $TEST_USER)"
$AS rootless info

echo "== rootless load -i busybox.tar (as $TEST_USER)"
$AS rootless load -i "$DEMO/busybox.tar"
$AS rootless images

echo "== rootless run --rm localhost/busybox echo ... (as $TEST_USER, in a user namespace)"
$AS rootless run --rm localhost/busybox sh -c 'echo "hello from inside a rootless container: $(id -u) is root here, pid $$, host $(hostname)"; cat /proc/self/uid_map'
