#!/bin/bash
# Build the disposable Debian 12 test guest for User-Mode Linux (run as root on the host).
#
# The image: systemd as PID 1 with pure cgroup v2, a lingering user `tester` (uid 1000) with
# subordinate ids 100000:65536, `Delegate=cpu cpuset io memory pids` for user@.service, python3 and
# libfuse3 (so the host's /opt/rootless/venv runs in it over hostfs), the UML kernel's modules (fuse,
# tun, overlay), and the job agent (guest/rootless-vm-agent) that runs host commands.
# Everything comes from Debian packages (debootstrap), so the build is reproducible.
#
# Usage: build-image.sh            env: VM_CACHE (default /var/cache/rootless-vm), MIRROR, IMG_SIZE
# Prints the image path. The image is cached under $VM_CACHE/<key>/rootfs.img, where key hashes this
# script and the guest files; an existing image is reused. Boots never modify it (COW file per boot).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${VM_CACHE:-/var/cache/rootless-vm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SIZE=${IMG_SIZE:-3G}
[ "$(id -u)" = 0 ] || { echo "build-image.sh: run as root (debootstrap needs it)" >&2; exit 1; }

KEY=$(cat "$HERE/build-image.sh" "$HERE"/guest/rootless-vm-agent "$HERE"/guest/*.service \
      /usr/share/doc/user-mode-linux/changelog.Debian.gz 2>/dev/null | sha256sum | cut -c1-16)
OUT="$CACHE/$KEY"
if [ -s "$OUT/rootfs.img" ]; then echo "$OUT/rootfs.img"; exit 0; fi

for p in debootstrap e2fsprogs user-mode-linux; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || {
    echo "build-image.sh: missing host package $p (scripts/setup-host.sh installs it)" >&2; exit 1; }
done

T0=$SECONDS
mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
R="$WORK/rootfs"
PKGS=systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,udev,kmod,uidmap,procps,iproute2
PKGS=$PKGS,python3,libfuse3-3,fuse3,busybox-static,slirp4netns,passt
debootstrap --variant=minbase --include=$PKGS bookworm "$R" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
  tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
echo "build-image.sh: debootstrap done after $((SECONDS - T0)) s" >&2

echo guest >"$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 guest\n' >"$R/etc/hosts"
echo '# the root device is given on the kernel command line' >"$R/etc/fstab"
chroot "$R" passwd -d root >/dev/null
chroot "$R" useradd --create-home --uid 1000 --shell /bin/bash tester
for f in subuid subgid; do
  grep -q '^tester:' "$R/etc/$f" || echo 'tester:100000:65536' >>"$R/etc/$f"
done
# `loginctl enable-linger tester`, done offline: the user manager starts at boot.
mkdir -p "$R/var/lib/systemd/linger" && touch "$R/var/lib/systemd/linger/tester"
mkdir -p "$R/etc/systemd/system/user@.service.d"
printf '[Service]\nDelegate=cpu cpuset io memory pids\n' \
  >"$R/etc/systemd/system/user@.service.d/delegate.conf"
# The UML kernel's modules (fuse, tun, overlay, veth), loaded at boot.
mkdir -p "$R/lib/modules"
cp -a /usr/lib/uml/modules/. "$R/lib/modules/"
printf 'fuse\ntun\n' >"$R/etc/modules-load.d/rootless.conf"
install -m 0755 "$HERE/guest/rootless-vm-agent" "$R/usr/local/sbin/rootless-vm-agent"
install -m 0644 "$HERE/guest/rootless-vm-agent.service" "$R/etc/systemd/system/"
ln -sf /etc/systemd/system/rootless-vm-agent.service \
  "$R/etc/systemd/system/multi-user.target.wants/rootless-vm-agent.service"
# A throw-away guest needs none of these; they only slow the boot down.
chroot "$R" systemctl mask -q systemd-networkd-wait-online.service apt-daily.timer \
  apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer getty@tty1.service \
  systemd-timesyncd.service man-db.timer 2>/dev/null || true
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*

truncate -s "$SIZE" "$WORK/rootfs.img"
mkfs.ext4 -q -F -L root -E root_owner=0:0 -d "$R" "$WORK/rootfs.img"
mkdir -p "$OUT" && mv "$WORK/rootfs.img" "$OUT/rootfs.img.tmp" && mv "$OUT/rootfs.img.tmp" "$OUT/rootfs.img"
echo "build-image.sh: image built in $((SECONDS - T0)) s" >&2
echo "$OUT/rootfs.img"
