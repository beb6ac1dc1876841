"""Pull benchmark: `rootless pull` vs `podman pull` from one loopback registry, cold store each run.

Run as root (bench/pull/run.sh): builds the images (busybox from tests/support/oci.py; Debian from a
debootstrap minbase rootfs, one gzip layer), serves them from Debian's docker-registry on 127.0.0.1,
then alternates the contenders as the test user, each pull into a fresh, empty store.
Prints a markdown table per image (medians and the ratio to podman) for docs/benchmarks.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "bench"))

import lib  # noqa: E402
from support import oci  # noqa: E402
from support.registry import Registry  # noqa: E402

USER = os.environ.get("ROOTLESS_TEST_USER", "tester")
RUNS = int(os.environ.get("RUNS", "5"))
DEBIAN_ROOTFS = os.environ.get("DEBIAN_ROOTFS", "/var/tmp/rootless-bench/debian-rootfs")


def debian_layer(rootfs: str) -> bytes:
    """The rootfs as one tar (numeric owners, as root), without /dev nodes' contents or /proc."""
    cp = subprocess.run(
        [
            "tar",
            "-C",
            rootfs,
            "--numeric-owner",
            "--sort=name",
            "--exclude=./dev/*",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            "-cf",
            "-",
            ".",
        ],
        check=True,
        stdout=subprocess.PIPE,
    )
    return cp.stdout


def as_user(argv: list[str], env: dict[str, str]) -> list[str]:
    uid = int(subprocess.run(["id", "-u", USER], capture_output=True, text=True, check=True).stdout)
    envs = [f"{k}={v}" for k, v in env.items()]
    return [
        "runuser",
        "-u",
        USER,
        "--",
        "env",
        "-i",
        f"HOME=/home/{USER}",
        f"USER={USER}",
        "PATH=/opt/rootless/venv/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        f"XDG_RUNTIME_DIR=/run/user/{uid}",
        f"PYTHONPATH={REPO}",
        *envs,
        *argv,
    ]


def timed(argv: list[str]) -> float:
    try:
        return lib.timed(argv)
    except subprocess.CalledProcessError as e:
        raise SystemExit(
            f"{' '.join(argv[-6:])} failed: {e.stderr.decode(errors='replace').strip()}"
        ) from None


def main() -> None:
    work = tempfile.mkdtemp(prefix="rootless-bench-pull-", dir="/var/tmp")
    os.chmod(work, 0o755)
    reg = Registry(os.path.join(work, "registry")).start()
    try:
        layout = os.path.join(work, "layout")
        oci.add_image(layout, "latest", oci.busybox_layers(), config=oci.BUSYBOX_CONFIG)
        reg.push(layout, "latest", "busybox:latest")
        images = {"busybox": f"{reg.host}/busybox:latest"}
        if os.path.isdir(DEBIAN_ROOTFS):
            oci.add_image(
                layout,
                "bookworm",
                [debian_layer(DEBIAN_ROOTFS)],
                config={"Env": [oci.PATH_ENV], "Cmd": ["bash"]},
            )
            reg.push(layout, "bookworm", "debian:bookworm")
            images["debian"] = f"{reg.host}/debian:bookworm"
        else:
            print(
                f"(no {DEBIAN_ROOTFS}: run bench/pull/run.sh to debootstrap it; benchmarking busybox only)"
            )
        stores = tempfile.mkdtemp(prefix="rbp", dir="/tmp")  # podman wants a runroot under 50 chars
        os.chmod(stores, 0o755)
        shutil.chown(stores, USER, USER)
        counter = [0]

        def fresh() -> str:
            counter[0] += 1
            d = os.path.join(stores, str(counter[0]))
            os.mkdir(d, 0o700)
            shutil.chown(d, USER, USER)
            return d

        def rootless_pull(ref: str):
            def run() -> float:
                d = fresh()
                t = timed(
                    as_user(
                        ["rootless", "pull", "-q", "--tls-verify=false", ref],
                        {"XDG_DATA_HOME": d, "XDG_CONFIG_HOME": d},
                    )
                )
                shutil.rmtree(d)
                return t

            return run

        def podman_pull(ref: str):
            def run() -> float:
                d = fresh()
                t = timed(
                    as_user(
                        [
                            "podman",
                            "--root",
                            f"{d}/root",
                            "--runroot",
                            f"{d}/run",
                            "--storage-driver",
                            "overlay",
                            "pull",
                            "-q",
                            "--tls-verify=false",
                            ref,
                        ],
                        {},
                    )
                )
                shutil.rmtree(d)
                return t

            return run

        print(f"machine: {lib.machine()}; {RUNS} runs each, alternated, cold store every run")
        for name, ref in images.items():
            samples = lib.alternate(
                {"podman": podman_pull(ref), "rootless": rootless_pull(ref)}, RUNS
            )
            print(f"\n### pull {name} ({ref.split('/', 1)[1]})\n")
            print(lib.table(samples, "podman"))
    finally:
        if "stores" in locals():
            shutil.rmtree(stores, ignore_errors=True)
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
