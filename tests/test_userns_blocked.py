"""When user namespaces cannot be created, `info` says so and `run` fails at once with the cause and fix.

Each case a CI user meets is reproduced for real where this kernel has the knob: a chroot (root pass:
building one needs root), and user.max_user_namespaces=0 (set inside a user namespace of our own,
where the limit is per namespace, so the host is untouched). The sysctls this kernel does not have
(Debian's kernel.unprivileged_userns_clone, Ubuntu's kernel.apparmor_restrict_unprivileged_userns)
are checked through rootless.userns_diag with a sysctl directory of the test's own.
"""

from __future__ import annotations

import errno
import os
import shlex
import subprocess

import pytest

from rootless import userns_diag

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one_error_line(cp, *fragments):
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1, cp.stderr
    assert lines[0].startswith("Error: "), cp.stderr
    for frag in fragments:
        assert frag in lines[0], cp.stderr
    assert "Traceback" not in cp.stderr and "Exception" not in cp.stderr


def test_max_user_namespaces_zero(rootless, registry, busybox_ref):
    rootless.trust(registry)
    rootless("pull", "-q", busybox_ref)
    argv = " ".join(shlex.quote(a) for a in rootless.argv0)
    inner = (
        "echo 0 > /proc/sys/user/max_user_namespaces && "
        f"{argv} info >/dev/null 2>&1; echo info=$?; "
        f"exec {argv} run --rm --network none {shlex.quote(busybox_ref)} true"
    )
    cp = subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c", inner],
        env=rootless.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "info=1" in cp.stdout, (cp.stdout, cp.stderr)
    assert cp.returncode == 125, cp.stderr
    _one_error_line(
        cp, "user.max_user_namespaces = 0", "fix: sudo sysctl -w user.max_user_namespaces="
    )


def _sysctls(tmp_path, name, **values):
    root = tmp_path / name
    for key, rel in userns_diag._SYSCTLS.items():
        if key in values:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(f"{values[key]}\n")
    root.mkdir(exist_ok=True)
    return str(root)


def test_diagnose_sysctls_this_kernel_lacks(tmp_path):
    root = _sysctls(tmp_path, "debian", max_user_namespaces=100, unprivileged_userns_clone=0)
    what, fix = userns_diag.diagnose(errno.EPERM, sysctl_root=root)
    assert "kernel.unprivileged_userns_clone = 0" in what
    assert fix.startswith("sudo sysctl -w kernel.unprivileged_userns_clone=1")

    root = _sysctls(tmp_path, "ubuntu", max_user_namespaces=100, apparmor_restrict=1)
    for stage in ("unshare", "map"):
        what, fix = userns_diag.diagnose(errno.EPERM, sysctl_root=root, stage=stage)
        assert "AppArmor restricts unprivileged user namespaces" in what
        assert "kernel.apparmor_restrict_unprivileged_userns=0" in fix


def test_probe_works_here():
    assert userns_diag.probe() is None


CHROOT_DIRS = ("usr", "etc", "opt", "proc", "dev", "tmp", "run", "home", "var", "sys")


@pytest.mark.root
def test_chroot_is_named():
    """A chroot (a nested CI job without its own root) refuses CLONE_NEWUSER: info and run say so."""
    import pwd
    import shutil
    import tempfile
    from pathlib import Path

    from support import oci

    user = os.environ.get("ROOTLESS_TEST_USER", "tester")
    pw = pwd.getpwnam(user)
    tmp_path = Path(tempfile.mkdtemp(prefix="rootless-chroot-", dir="/var/tmp"))
    try:
        _chroot_case(tmp_path, pw, user, oci)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _chroot_case(tmp_path, pw, user, oci):
    base = tmp_path / "store"
    base.mkdir()
    archive = tmp_path / "busybox.tar"
    layout = str(tmp_path / "layout")
    oci.add_image(
        layout, "localhost/busybox:latest", oci.busybox_layers(), config=oci.BUSYBOX_CONFIG
    )
    oci.write_oci_archive(layout, str(archive))
    os.chown(base, pw.pw_uid, pw.pw_gid)
    os.chmod(tmp_path, 0o755)
    os.chmod(archive, 0o644)
    env = (
        f"HOME={pw.pw_dir} XDG_DATA_HOME={base}/data XDG_CONFIG_HOME={base}/config "
        f"XDG_RUNTIME_DIR={base}/run PATH=/usr/bin:/bin PYTHONPATH={os.environ.get('PYTHONPATH', '')}"
    )
    exe = "/opt/rootless/venv/bin/rootless"
    load = subprocess.run(
        ["runuser", "-u", user, "--", "sh", "-c", f"env {env} {exe} load -q -i {archive}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert load.returncode == 0, load.stderr
    root = tmp_path / "root"
    root.mkdir(mode=0o755)
    binds = " ".join(CHROOT_DIRS + ("work",) if os.path.isdir("/work") else CHROOT_DIRS)
    script = f"""
set -e
for d in {binds}; do mkdir -p {root}/$d; mount --rbind /$d {root}/$d; done
for l in bin lib lib64 sbin; do ln -s usr/$l {root}/$l; done
mkdir -p {root}{tmp_path} && mount --rbind {tmp_path} {root}{tmp_path}
set +e
chroot {root} runuser -u {user} -- sh -c 'env {env} {exe} info >/dev/null 2>/tmp/info.err; echo info=$?; cat /tmp/info.err >&2'
chroot {root} runuser -u {user} -- sh -c 'env {env} {exe} info' | grep -E 'userNamespaces|ERROR'
chroot {root} runuser -u {user} -- sh -c 'env {env} {exe} run --rm --network none localhost/busybox true'
echo run=$?
"""
    cp = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "info=1" in cp.stdout, (cp.stdout, cp.stderr)
    assert "userNamespaces: false" in cp.stdout
    assert "runs in a chroot" in cp.stdout
    assert "run=125" in cp.stdout, (cp.stdout, cp.stderr)
    err = [ln for ln in cp.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(err) == 1, cp.stderr
    assert "this process runs in a chroot" in err[0] and "fix: run rootless outside" in err[0]
    assert "Traceback" not in cp.stderr
