"""`logs --tail 5` of a large log: rootless vs podman (k8s-file), alternated.

Run as root (bench/logs/run.sh). Serves the busybox test image from a loopback docker-registry,
pulls it into a rootless store and a podman store of the test user, runs one container in each that
writes LOG_MB megabytes (default 290) of lines to stdout, then alternates `logs --tail 5` of the two
(and of rootless at BEFORE=TREE, an older source tree, when given). Prints medians and ratios.
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
RUNS = int(os.environ.get("RUNS", "7"))
LOG_MB = int(os.environ.get("LOG_MB", "290"))
BEFORE = os.environ.get("BEFORE")


def as_user(argv: list[str], env: dict[str, str], tree: str = REPO) -> list[str]:
    uid = subprocess.run(["id", "-u", USER], capture_output=True, text=True, check=True).stdout
    envs = [f"{k}={v}" for k, v in env.items()]
    return ["runuser", "-u", USER, "--", "env", "-i", f"HOME=/home/{USER}", f"USER={USER}",
            "PATH=/opt/rootless/venv/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            f"XDG_RUNTIME_DIR=/run/user/{uid.strip()}", f"PYTHONPATH={tree}", *envs, *argv]  # fmt: skip


def check(argv: list[str]) -> str:
    cp = subprocess.run(argv, capture_output=True, text=True)
    if cp.returncode != 0:
        raise SystemExit(f"{' '.join(argv[-8:])} failed: {cp.stderr.strip()}")
    return cp.stdout


def _timed(argv: list[str], cpu: list[float]) -> float:
    """Wall time of one run; its CPU (the command and every child it reaped) goes to `cpu`."""
    before = os.times()
    wall = lib.timed(argv)
    after = os.times()
    cpu.append(after.children_user - before.children_user + after.children_system
               - before.children_system)  # fmt: skip
    return wall


def main() -> None:
    for tree in filter(None, (REPO, BEFORE)):
        subprocess.run([sys.executable, "-m", "compileall", "-q", f"{tree}/rootless"], check=True)
    work = tempfile.mkdtemp(prefix="rbl", dir="/tmp")  # podman wants a short runroot
    os.chmod(work, 0o755)
    reg = Registry(os.path.join(work, "registry")).start()
    home = os.path.join(work, "u")
    proot = ["podman", "--root", f"{home}/proot", "--runroot", f"{home}/prun"]
    try:
        layout = os.path.join(work, "layout")
        oci.add_image(layout, "latest", oci.busybox_layers(), config=oci.BUSYBOX_CONFIG)
        reg.push(layout, "latest", "busybox:latest")
        ref = f"{reg.host}/busybox:latest"
        os.mkdir(home, 0o700)
        shutil.chown(home, USER, USER)
        renv = {"XDG_DATA_HOME": f"{home}/data", "XDG_CONFIG_HOME": f"{home}/config"}
        check(as_user(["rootless", "pull", "-q", "--tls-verify=false", ref], renv))
        check(as_user([*proot, "pull", "-q", "--tls-verify=false", ref], {}))
        line = "x" * 99
        script = f"yes {line} | head -c {LOG_MB * 1000 * 1000}; echo last line"
        run = ["run", "--name", "big", "--network", "none", ref, "sh", "-c", script]
        check(as_user(["rootless", *run[:1], "-d", *run[1:]], renv))
        check(as_user([*proot, "run", "-d", "--log-driver", "k8s-file", *run[1:]], {}))
        for argv, env in ((["rootless"], renv), (proot, {})):
            check(as_user([*argv, "wait", "big"], env))
        c = {
            "podman logs --tail 5": [*proot, "logs", "--tail", "5", "big"],
            "rootless logs --tail 5": ["rootless", "logs", "--tail", "5", "big"],
        }
        envs = {"podman logs --tail 5": {}, "rootless logs --tail 5": renv}
        if BEFORE:
            c["rootless (BEFORE) logs --tail 5"] = c["rootless logs --tail 5"]
            envs["rootless (BEFORE) logs --tail 5"] = renv
        contenders = {}
        cpu: dict[str, list[float]] = {name: [] for name in c}
        for name, argv in c.items():
            full = as_user(argv, envs[name], BEFORE if "BEFORE" in name else REPO)
            assert check(full).endswith("last line\n"), name
            contenders[name] = lambda full=full, name=name: _timed(full, cpu[name])
        size = os.path.getsize(check(as_user(["rootless", "inspect", "--format",
                                              "{{.LogPath}}", "big"], renv)).strip())  # fmt: skip
        print(f"machine: {lib.machine()}; {RUNS} runs each, alternated; log {size / 1e6:.0f} MB")
        print()
        wall = lib.alternate(contenders, RUNS, warmup=0)
        print("wall:\n")
        print(lib.table(wall, "podman logs --tail 5"))
        print("\nCPU (user + system, every process of the command):\n")
        print(lib.table(cpu, "podman logs --tail 5"))
    finally:
        reg.stop()
        subprocess.run(as_user([*proot, "system", "reset", "-f"], {}), capture_output=True)
        subprocess.run(as_user(["rootless", "rm", "-f", "big"], renv), capture_output=True)
        subprocess.run(as_user(["rootless", "unshare", "rm", "-rf", home], {}), capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
