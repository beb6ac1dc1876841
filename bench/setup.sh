#!/usr/bin/env bash
# Benchmark-only setup (not needed by the product or CI): the anchors rootless is measured against.
# podman 4.3 (rootless, runc: crun refuses hybrid cgroups here), fuse-overlayfs, bubblewrap, crun,
# iperf3 and hyperfine, plus the test user's podman configuration. Run as root after setup-host.sh.
set -euo pipefail
PKGS=(podman runc crun fuse-overlayfs bubblewrap iperf3 hyperfine debootstrap)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
USER_=${ROOTLESS_TEST_USER:-tester}
HOME_=$(getent passwd "$USER_" | cut -d: -f6)
install -d -o "$USER_" -g "$USER_" -m 0755 "$HOME_/.config" "$HOME_/.config/containers"
cat >"$HOME_/.config/containers/containers.conf" <<'CONF'
# written by rootless bench/setup.sh: no systemd here, hybrid cgroups (crun refuses them; runc works)
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
CONF
chown "$USER_:$USER_" "$HOME_/.config/containers/containers.conf"
echo "bench setup: ok"
