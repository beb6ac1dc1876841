"""The storage driver choice as a user sees it: the automatic default (kernel overlay where the kernel
allows it in a user namespace, else fuse-overlay, else vfs), its per-boot probe cache, and podman's
precedence flag > ROOTLESS_STORAGE_DRIVER > storage.conf > default, with one-line errors (exit 125)."""

import json
import os

import pytest
from support.procs import overlay_daemons

ROOT_FS = ("sh", "-c", "grep ' / ' /proc/mounts | cut -d' ' -f3")
FSTYPE = {"overlay": "overlay", "fuse-overlay": "fuse.overlay"}


@pytest.fixture
def rl(rootless, registry, busybox_ref):
    rootless.trust(registry)
    rootless("pull", busybox_ref, check=True)
    rootless.img = busybox_ref
    return rootless


def root_fstype(rl, *pre, env=None):
    cp = rl(*pre, "run", "--rm", "--network", "none", rl.img, *ROOT_FS, env=env)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.strip()


def info_store(rl, *pre, env=None):
    cp = rl(*pre, "info", "--format", "json", env=env)
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)


def conf(rl, text):
    path = os.path.join(rl.config_dir, "rootless", "storage.conf")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def probe_cache(rl):
    return os.path.join(rl.runtime_dir, "rootless", "storage-probe.json")


def test_default_is_kernel_overlay_where_the_kernel_allows_it(rl):
    info = info_store(rl)
    usable = info["host"]["kernelOverlayInUserns"]["usable"]
    fuse = info["host"]["fuse"]["devFuseUsable"]
    want = "overlay" if usable else "fuse-overlay" if fuse else "vfs"
    assert info["store"]["graphDriverName"] == want
    assert info["store"]["graphDriverReason"].startswith("default")
    if want in FSTYPE:
        assert root_fstype(rl) == FSTYPE[want]
    # the probe's answer is kept for this boot and kernel
    with open(probe_cache(rl)) as f:
        cached = json.load(f)
    with open("/proc/sys/kernel/random/boot_id") as f:
        assert cached["key"] == f"{f.read().strip()} {os.uname().release}"
    assert cached["usable"] is usable


def _write_cache(rl, usable, key=None):
    if key is None:
        with open("/proc/sys/kernel/random/boot_id") as f:
            key = f"{f.read().strip()} {os.uname().release}"
    path = probe_cache(rl)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "w") as f:
        json.dump({"key": key, "usable": usable, "why": "cached for the test"}, f)


def test_cached_probe_is_used_and_fuse_overlay_is_the_fallback(rl):
    # A cache that says kernel overlay does not work here: run believes it (no new probe) and falls
    # back to fuse-overlay, since /dev/fuse is usable on this host.
    _write_cache(rl, False)
    assert root_fstype(rl) == "fuse.overlay"
    with open(probe_cache(rl)) as f:
        assert json.load(f)["usable"] is False


def test_probe_cache_of_another_boot_is_ignored(rl):
    _write_cache(rl, False, key="another-boot 0.0")
    assert root_fstype(rl) in ("overlay", "fuse.overlay")
    with open(probe_cache(rl)) as f:
        assert json.load(f)["key"] != "another-boot 0.0"  # probed again and rewritten


def test_precedence_flag_env_file_default(rl):
    path = conf(rl, 'driver = "fuse-overlay"\n')
    env = {"ROOTLESS_STORAGE_DRIVER": "overlay"}
    # flag beats env and file
    assert root_fstype(rl, "--storage-driver", "fuse-overlay", env=env) == "fuse.overlay"
    st = info_store(rl, "--storage-driver", "vfs", env=env)["store"]
    assert (st["graphDriverName"], st["graphDriverReason"]) == ("vfs", "--storage-driver")
    # env beats file
    assert root_fstype(rl, env=env) == "overlay"
    st = info_store(rl, env=env)["store"]
    assert (st["graphDriverName"], st["graphDriverReason"]) == (
        "overlay",
        "ROOTLESS_STORAGE_DRIVER",
    )
    # file beats the default
    assert root_fstype(rl) == "fuse.overlay"
    st = info_store(rl)["store"]
    assert (st["graphDriverName"], st["graphDriverReason"]) == ("fuse-overlay", path)


def test_podman_style_storage_table_and_vfs(rl):
    conf(rl, '[storage]\ndriver = "vfs"\n')
    assert info_store(rl)["store"]["graphDriverName"] == "vfs"
    cp = rl("run", "--rm", "--network", "none", rl.img, "sh", "-c", "echo hi > /f && cat /f")
    assert (cp.returncode, cp.stdout) == (0, "hi\n"), cp.stderr


@pytest.mark.parametrize(
    "how",
    ["flag", "env", "file", "toml"],
)
def test_bad_driver_is_one_line_exit_125(rl, how):
    pre, env = (), None
    if how == "flag":
        pre = ("--storage-driver", "btrfs")
    elif how == "env":
        env = {"ROOTLESS_STORAGE_DRIVER": "btrfs"}
    elif how == "file":
        conf(rl, 'driver = "btrfs"\n')
    else:
        conf(rl, "driver = fuse-overlay\n")  # not TOML: the string is not quoted
    cp = rl(*pre, "run", "--rm", "--network", "none", rl.img, "true", env=env)
    assert cp.returncode == 125
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), cp.stderr
    assert ("btrfs" in lines[0]) if how != "toml" else ("storage.conf" in lines[0])
    assert "Traceback" not in cp.stderr
    containers = os.path.join(rl.data_dir, "rootless", "containers")
    assert not os.path.isdir(containers) or os.listdir(containers) == []


# --- the fuse-overlay daemon that a foreground `run` starts early --------------------------------------
FUSE = ("--storage-driver", "fuse-overlay")


def _daemons(rl):
    """Our store's overlay daemons, by command line (the host's view)."""
    return overlay_daemons(rl.base)


def _mounts(rl):
    with open("/proc/self/mountinfo") as f:
        return [ln for ln in f if rl.base in ln]


def _poll(fn, timeout=20.0):
    import time

    deadline = time.monotonic() + timeout
    while not fn():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_foreground_fuse_overlay_keeps_writes_and_leaves_nothing(rl):
    cp = rl(*FUSE, "run", "--name", "keep", "--network", "none", rl.img, "sh", "-c",
            "echo data > /kept; dd if=/dev/zero of=/big bs=1k count=512 2>/dev/null; "
            "grep ' / ' /proc/mounts | cut -d' ' -f3; ps -o pid,comm | grep -c fuse_overlay || true")  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == ["fuse.overlay", "0"]  # the daemon is not in the container's pid ns
    assert _daemons(rl) == [] and _mounts(rl) == []
    rec = json.loads(rl("inspect", "keep", check=True).stdout)[0]
    upper = os.path.join(rl.data_dir, "rootless", "containers", rec["Id"], "upper")
    with open(os.path.join(upper, "kept")) as f:
        assert f.read() == "data\n"  # every write reached the upper dir before the daemon ended
    assert os.path.getsize(os.path.join(upper, "big")) == 512 * 1024
    rl("rm", "keep", check=True)


def test_foreground_fuse_overlay_daemon_killed_stops_the_container(rl):
    import signal
    import subprocess

    p = subprocess.Popen(
        [*rl.argv0, *FUSE, "run", "--rm", "--network", "none", rl.img, "sh", "-c", "echo ready; exec sleep 300"],
        env=rl.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert p.stdout.readline() == "ready\n"
        daemons = _daemons(rl)
        assert len(daemons) == 1
        os.kill(daemons[0], signal.SIGKILL)
        _out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # SIGKILL from setup (137), or SIGBUS (135) if sleep faulted on the vanished root first
    assert p.returncode in (137, 135)
    assert "overlay daemon died" in err
    assert _daemons(rl) == [] and _mounts(rl) == []
    containers = os.path.join(rl.data_dir, "rootless", "containers")
    assert not os.path.isdir(containers) or os.listdir(containers) == []


def test_early_started_daemon_is_used_or_reaped(rl):
    # the driver comes from the environment: the CLI's first lines start the daemon for `run`
    env = {"ROOTLESS_STORAGE_DRIVER": "fuse-overlay"}
    assert root_fstype(rl, env=env) == "fuse.overlay"
    # a usage error, --help, a missing image, run -d: nothing of it is left behind
    assert rl("run", "--no-such-flag", rl.img, env=env).returncode == 125
    assert rl("run", "--help", env=env).returncode == 0
    assert rl("run", "--rm", "localhost:1/none:1", "true", env=env).returncode == 125
    cid = rl("run", "-d", "--network", "none", rl.img, "sleep", "60", env=env, check=True).stdout
    assert len(_daemons(rl)) == 1  # the container's own, started by its monitor
    rl("rm", "-f", "-t", "0", cid.strip(), check=True)
    _poll(lambda: _daemons(rl) == [])
    assert _mounts(rl) == []


def test_helper_interpreters_never_import_a_rootless_from_the_working_directory(rl, tmp_path):
    """The interpreters rootless starts (the fuse daemon early or not, pasta's guard) import this
    very rootless, even when the working directory holds another package named rootless."""
    import subprocess

    decoy = tmp_path / "cwd"
    (decoy / "rootless").mkdir(parents=True)
    (decoy / "rootless" / "__init__.py").write_text("raise SystemExit('the decoy was imported')\n")

    def run(*args):
        cp = subprocess.run(
            [*rl.argv0, *args], env=rl.env, cwd=decoy, capture_output=True, text=True, timeout=120
        )
        assert cp.returncode == 0 and "decoy" not in cp.stderr, cp.stderr
        return cp.stdout

    assert run(*FUSE, "run", "--rm", "--network", "none", rl.img, "echo", "ok") == "ok\n"
    assert (
        run(
            "--storage-driver", "overlay", "run", "--rm", "--network", "pasta", rl.img, "echo", "ok"
        )
        == "ok\n"
    )
    cid = run(*FUSE, "run", "-d", "--network", "none", rl.img, "sleep", "60").strip()
    assert rl("exec", cid, "echo", "ok", check=True).stdout == "ok\n"
    rl("rm", "-f", "-t", "0", cid, check=True)


@pytest.mark.parametrize("driver", ["overlay", "fuse-overlay"])
def test_an_image_of_300_layers_runs(rootless, registry, busybox_layout, tmp_path, driver):
    """Far more layers than fit in one page of overlay mount data by absolute path (~57): the kernel
    overlay mounts them through short links (podman's l/ dir); the FUSE overlay takes any number."""
    from support import oci

    layout = str(tmp_path / "many")
    if not os.path.exists(os.path.join(layout, "index.json")):
        layers = oci.busybox_layers()[:1] + [
            oci.make_tar([oci.Entry(f"layer/{i:03d}", data=f"{i}\n".encode())]) for i in range(299)
        ]
        oci.add_image(layout, "latest", layers, config=oci.BUSYBOX_CONFIG, compress="none")
    registry.push(layout, "latest", "many:latest")
    rootless.trust(registry)
    ref = f"{registry.host}/many:latest"
    rootless("pull", "-q", ref, check=True, timeout=600)
    cp = rootless("--storage-driver", driver, "run", "--rm", "--network", "none", ref,
                  "sh", "-c", "cat /layer/000 /layer/298; ls /layer | wc -l", check=True)  # fmt: skip
    assert cp.stdout.split() == ["0", "298", "299"]
