"""Start-latency benchmark: `rootless run --rm IMAGE true` vs `podman run --rm IMAGE true`.

Run as root (bench/start/run.sh). Serves the busybox test image from a loopback docker-registry, pulls
it once into a rootless store and a podman store (the test user's), then alternates as the test user:
rootless with each storage driver and network mode, podman with native overlay and with
fuse-overlayfs, and bwrap and runc (crun refuses hybrid cgroups on this machine) on an extracted
rootfs as floors. Prints a markdown table (medians, ratios to podman) for docs/benchmarks.md.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "bench"))

import lib  # noqa: E402
from support import oci  # noqa: E402
from support.registry import Registry  # noqa: E402

USER = os.environ.get("ROOTLESS_TEST_USER", "tester")
RUNS = int(os.environ.get("RUNS", "15"))


def as_user(argv: list[str], env: dict[str, str] | None = None) -> list[str]:
    uid = int(subprocess.run(["id", "-u", USER], capture_output=True, text=True, check=True).stdout)
    envs = [f"{k}={v}" for k, v in (env or {}).items()]
    return ["runuser", "-u", USER, "--", "env", "-i", f"HOME=/home/{USER}", f"USER={USER}",
            "PATH=/opt/rootless/venv/bin:/usr/bin:/bin:/usr/sbin:/sbin", f"XDG_RUNTIME_DIR=/run/user/{uid}",
            f"PYTHONPATH={REPO}", *envs, *argv]  # fmt: skip


def check(argv: list[str]) -> None:
    cp = subprocess.run(argv, capture_output=True, text=True)
    if cp.returncode != 0:
        raise SystemExit(f"{' '.join(argv[-8:])} failed: {cp.stderr.strip()}")


def contender(argv: list[str]):
    def run() -> float:
        try:
            return lib.timed(argv)
        except subprocess.CalledProcessError as e:
            raise SystemExit(
                f"{' '.join(argv[-8:])} failed: {e.stderr.decode(errors='replace').strip()}"
            ) from None

    return run


def main() -> None:
    # byte-compile the tree as an installed package would be (the test user cannot write __pycache__)
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", os.path.join(REPO, "rootless")], check=True
    )
    work = tempfile.mkdtemp(prefix="rbs", dir="/tmp")  # podman wants a short runroot
    os.chmod(work, 0o755)
    reg = Registry(os.path.join(work, "registry")).start()
    try:
        layout = os.path.join(work, "layout")
        oci.add_image(layout, "latest", oci.busybox_layers(), config=oci.BUSYBOX_CONFIG)
        reg.push(layout, "latest", "busybox:latest")
        ref = f"{reg.host}/busybox:latest"
        home = os.path.join(work, "u")
        os.mkdir(home, 0o700)
        shutil.chown(home, USER, USER)
        renv = {"XDG_DATA_HOME": f"{home}/data", "XDG_CONFIG_HOME": f"{home}/config"}
        check(as_user(["rootless", "pull", "-q", "--tls-verify=false", ref], renv))
        proot = ["podman", "--root", f"{home}/proot", "--runroot", f"{home}/prun"]
        pfuse = ["podman", "--root", f"{home}/pfroot", "--runroot", f"{home}/pfrun", "--storage-driver", "overlay",
                 "--storage-opt", "overlay.mount_program=/usr/bin/fuse-overlayfs"]  # fmt: skip
        check(
            as_user(
                [*proot, "--storage-driver", "overlay", "pull", "-q", "--tls-verify=false", ref]
            )
        )
        check(as_user([*pfuse, "pull", "-q", "--tls-verify=false", ref]))
        # floors: an extracted rootfs for bwrap and a rootless runc bundle
        bundle = os.path.join(work, "bundle")
        rootfs = os.path.join(bundle, "rootfs")
        os.makedirs(rootfs)
        with tarfile.open(fileobj=io.BytesIO(oci.busybox_layers()[0])) as tf:
            tf.extractall(rootfs)  # our own test layer (trusted)
        subprocess.run(["chown", "-R", f"{USER}:{USER}", bundle], check=True)
        check(as_user(["runc", "spec", "--rootless", "--bundle", bundle]))
        cfgp = os.path.join(bundle, "config.json")
        with open(cfgp) as f:
            cfg = json.load(f)
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = ["true"]
        with open(cfgp, "w") as f:
            json.dump(cfg, f)
        run_ = ["run", "--rm"]
        c = {
            "podman overlay, none": contender(as_user([*proot, "--storage-driver", "overlay", *run_, "--network", "none", ref, "true"])),
            "podman fuse-overlayfs, slirp4netns": contender(as_user([*pfuse, *run_, ref, "true"])),
            "rootless overlay, none": contender(as_user(["rootless", "--storage-driver", "overlay", *run_, "--network", "none", ref, "true"], renv)),
            "rootless vfs, none": contender(as_user(["rootless", "--storage-driver", "vfs", *run_, "--network", "none", ref, "true"], renv)),
            "rootless fuse-overlay, none": contender(as_user(["rootless", "--storage-driver", "fuse-overlay", *run_, "--network", "none", ref, "true"], renv)),
            "rootless overlay, slirp4netns": contender(as_user(["rootless", "--storage-driver", "overlay", *run_, ref, "true"], renv)),
            "rootless fuse-overlay, slirp4netns": contender(as_user(["rootless", "--storage-driver", "fuse-overlay", *run_, ref, "true"], renv)),
            "rootless overlay, pasta": contender(as_user(["rootless", "--storage-driver", "overlay", *run_, "--network", "pasta", ref, "true"], renv)),
            "runc run (floor)": contender(as_user(["runc", "--root", f"{home}/runc", "run", "--bundle", bundle, "bench"])),
            "bwrap --unshare-all (floor)": contender(as_user(["bwrap", "--unshare-all", "--bind", rootfs, "/", "--proc", "/proc", "--dev", "/dev", "true"])),
        }  # fmt: skip
        print(
            f"machine: {lib.machine()}; {RUNS} runs each, alternated; busybox test image, image already local"
        )
        samples = lib.alternate(c, RUNS)
        print()
        print(lib.table(samples, "podman overlay, none"))
        fo = sorted(samples["podman fuse-overlayfs, slirp4netns"])[RUNS // 2]
        mine = sorted(samples["rootless fuse-overlay, slirp4netns"])[RUNS // 2]
        print(
            f"\nrootless fuse-overlay+slirp4netns / podman fuse-overlayfs+slirp4netns: {mine / fo:.2f}×"
        )
    finally:
        reg.stop()
        subprocess.run(["runuser", "-u", USER, "--", "podman", "--root", f"{work}/u/proot", "--runroot",
                        f"{work}/u/prun", "system", "reset", "-f"], capture_output=True)  # fmt: skip
        subprocess.run(
            as_user(["rootless", "unshare", "rm", "-rf", f"{work}/u"]), capture_output=True
        )
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
