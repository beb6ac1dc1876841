"""keep-id benchmark: the first and later `run --rm --userns=keep-id IMAGE true` of a large image,
rootless against podman, in one session, and the store's size before and after (issue #15).

Run as root (bench/keepid/run.sh). The gcc image of the real-image corpus (tests/support/imagebuild;
scripts/build-test-images.sh builds it) is served from a loopback docker-registry and pulled into a
rootless store and a podman store (native overlay, runc) of the test user. Then, for each tool: the
store's size (`du -sb` from inside the tool's user namespace), one first keep-id run, the size
again, RUNS more keep-id runs (medians), and RUNS runs without keep-id. Podman copies and chowns
every layer on the first keep-id run; rootless shifts ids in its fuse overlay and copies nothing.
Prints markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "bench"))

import lib  # noqa: E402
from support import imagebuild  # noqa: E402
from support.registry import Registry  # noqa: E402

USER = os.environ.get("ROOTLESS_TEST_USER", "tester")
RUNS = int(os.environ.get("RUNS", "5"))
IMAGE = os.environ.get("IMAGE", "gcc")


def as_user(argv: list[str], env: dict[str, str]) -> list[str]:
    uid = int(subprocess.run(["id", "-u", USER], capture_output=True, text=True, check=True).stdout)
    return ["runuser", "-u", USER, "--", "env", "-i", f"USER={USER}",
            "PATH=/opt/rootless/venv/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            f"XDG_RUNTIME_DIR=/run/user/{uid}", f"PYTHONPATH={REPO}",
            *[f"{k}={v}" for k, v in env.items()], *argv]  # fmt: skip


def run(argv: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    cp = subprocess.run(argv, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if cp.returncode != 0:
        raise SystemExit(f"{' '.join(argv[-8:])} failed:\n{cp.stderr[-3000:]}")
    return dt, cp.stdout


def size(tool: list[str], env: dict[str, str], path: str) -> int:
    return int(run(as_user([*tool, "unshare", "du", "-sb", path], env))[1].split()[0])


def measure(tool: list[str], env: dict[str, str], store: str, ref: str) -> dict:
    keep = [*tool, "run", "--rm", "--userns=keep-id", ref, "true"]
    plain = [*tool, "run", "--rm", ref, "true"]
    out = {"before": size(tool, env, store)}
    out["first"] = run(as_user(keep, env))[0]
    out["after"] = size(tool, env, store)
    out["again"] = [run(as_user(keep, env))[0] for _ in range(RUNS)]
    out["plain"] = [run(as_user(plain, env))[0] for _ in range(RUNS)]
    return out


def main() -> None:
    layout = os.path.join(imagebuild.DEFAULT_CACHE, imagebuild.recipe_key())
    if not os.path.exists(os.path.join(layout, "index.json")):
        raise SystemExit(f"{layout} is missing: run scripts/build-test-images.sh (as root) first")
    work = tempfile.mkdtemp(prefix="rbk", dir="/tmp")
    os.chmod(work, 0o755)
    home = os.path.join(work, "u")
    os.mkdir(home, 0o700)
    shutil.chown(home, USER, USER)
    renv = {"HOME": home, "XDG_DATA_HOME": f"{home}/data", "XDG_CONFIG_HOME": f"{home}/config"}
    penv = {"HOME": home}
    rootless = ["rootless"]
    podman = ["podman", "--root", f"{home}/proot", "--runroot", f"{home}/prun",
              "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs"]  # fmt: skip
    reg = Registry(os.path.join(work, "registry")).start()
    try:
        reg.push(layout, IMAGE, f"{IMAGE}:bookworm")
        ref = f"{reg.host}/{IMAGE}:bookworm"
        run(as_user([*rootless, "pull", "-q", "--tls-verify=false", ref], renv))
        run(as_user([*podman, "pull", "-q", "--tls-verify=false", ref], penv))
        files = run(as_user([*rootless, "run", "--rm", ref, "sh", "-c",
                             "find / -xdev | wc -l; du -sxb / | cut -f1"], renv))[1].split()  # fmt: skip
        results = {
            "rootless": measure(rootless, renv, f"{home}/data", ref),
            "podman": measure(podman, penv, f"{home}/proot", ref),
        }
        report(results, int(files[0]), int(files[1]))
    finally:
        reg.stop()
        subprocess.run(as_user([*podman, "system", "reset", "-f"], penv), capture_output=True)
        subprocess.run(as_user(["rootless", "unshare", "rm", "-rf", f"{home}/data"], renv),
                       capture_output=True)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict, files: int, nbytes: int) -> None:
    print(f"\nkeep-id benchmark, {lib.machine()}: image `{IMAGE}` ({nbytes / 1e6:.0f} MB, {files} "
          f"files), seconds (medians of {RUNS} for the later runs)\n")  # fmt: skip
    print("| tool | first keep-id run | later keep-id runs | first / later | runs without keep-id "
          "| store growth on the first keep-id run |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for tool, r in results.items():
        again, plain = statistics.median(r["again"]), statistics.median(r["plain"])
        grew = r["after"] - r["before"]
        print(f"| {tool} | {r['first']:.2f} | {again:.2f} | {r['first'] / again:.2f}x | {plain:.2f} "
              f"| {grew / 1e6:.1f} MB ({grew} bytes) |")  # fmt: skip


if __name__ == "__main__":
    main()
