"""A/B start latency of two rootless trees: `rootless run --rm busybox true`, alternated.

    sudo /opt/rootless/venv/bin/python bench/start/ab.py BEFORE_TREE AFTER_TREE   # RUNS=30 by default

Each tree is a checkout (e.g. `git worktree add /tmp/before main`, or `git archive REV | tar -x`)
that the test user can read; it is byte-compiled first, as an installed package would be, and used
through PYTHONPATH with the shared venv. Serves the busybox test image from a loopback registry,
pulls it into one store per tree, then alternates A and B on kernel overlay with --network none and
on fuse-overlay with slirp4netns (the default network). Prints medians, minimums and B/A ratios:
of the medians, and the median of the ratios of each pair of neighbouring runs (robust to the load
of a shared machine drifting during the benchmark). Compare with an A/A run for the noise.
"""

from __future__ import annotations

import os
import shutil
import statistics
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
RUNS = int(os.environ.get("RUNS", "30"))
CASES = {
    "overlay, none": ["--storage-driver", "overlay", "run", "--rm", "--network", "none"],
    "fuse-overlay, slirp4netns": ["--storage-driver", "fuse-overlay", "run", "--rm"],
}


def as_user(tree: str, home: str, argv: list[str]) -> list[str]:
    uid = subprocess.run(["id", "-u", USER], capture_output=True, text=True, check=True).stdout
    return ["runuser", "-u", USER, "--", "env", "-i", f"HOME={home}", f"USER={USER}",
            "PATH=/opt/rootless/venv/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            f"XDG_RUNTIME_DIR=/run/user/{uid.strip()}", f"XDG_DATA_HOME={home}/data",
            f"XDG_CONFIG_HOME={home}/config", f"PYTHONPATH={tree}", "rootless", *argv]  # fmt: skip


def contender(argv: list[str]):
    def run() -> float:
        try:
            return lib.timed(argv, cwd="/")  # no rootless checkout in the working directory
        except subprocess.CalledProcessError as e:
            raise SystemExit(
                f"{' '.join(argv[-8:])} failed: {e.stderr.decode(errors='replace').strip()}"
            ) from None

    return run


def main(before: str, after: str) -> None:
    trees = {"A": os.path.abspath(before), "B": os.path.abspath(after)}
    for tree in trees.values():
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", os.path.join(tree, "rootless")], check=True
        )
    work = tempfile.mkdtemp(prefix="rab", dir="/tmp")
    os.chmod(work, 0o755)
    reg = Registry(os.path.join(work, "registry")).start()
    try:
        layout = os.path.join(work, "layout")
        oci.add_image(layout, "latest", oci.busybox_layers(), config=oci.BUSYBOX_CONFIG)
        reg.push(layout, "latest", "busybox:latest")
        ref = f"{reg.host}/busybox:latest"
        contenders = {}
        for name, tree in trees.items():
            home = os.path.join(work, name)
            os.mkdir(home, 0o700)
            shutil.chown(home, USER, USER)
            pull = as_user(tree, home, ["pull", "-q", "--tls-verify=false", ref])
            subprocess.run(pull, check=True, capture_output=True, cwd="/")
            for case, args in CASES.items():
                argv = as_user(tree, home, [*args, ref, "true"])
                contenders[f"{name} {case}"] = contender(argv)
        print(f"machine: {lib.machine()}; {RUNS} runs each, alternated A B A B")
        print(f"A = {trees['A']}\nB = {trees['B']}\n")
        samples = lib.alternate(contenders, RUNS)
        print(
            "| case | A median (s) | B median (s) | A min | B min | B/A (medians) | B/A (median of pairs) |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for case in CASES:
            a, b = samples[f"A {case}"], samples[f"B {case}"]
            ma, mb = statistics.median(a), statistics.median(b)
            paired = statistics.median(y / x for x, y in zip(a, b, strict=True))  # run i of each
            print(
                f"| {case} | {ma:.4f} | {mb:.4f} | {min(a):.4f} | {min(b):.4f} | {mb / ma:.3f} | {paired:.3f} |"
            )
    finally:
        reg.stop()
        for name, tree in trees.items():
            home = os.path.join(work, name)
            subprocess.run(as_user(tree, home, ["unshare", "rm", "-rf", home]), capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: ab.py BEFORE_TREE AFTER_TREE")
    main(sys.argv[1], sys.argv[2])
