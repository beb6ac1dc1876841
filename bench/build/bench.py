"""Build benchmark: `rootless build` vs `podman build` on the same Containerfiles, in one session.

Run as root (bench/build/run.sh). A Debian minbase image (debootstrap) is served from a loopback
docker-registry and pulled into a rootless store and a podman store (native overlay, runc) of the
test user. Two projects: (1) a Python app: apt-get install python3 + pip in a RUN, COPY of the app,
pip install of a small package; (2) a multi-stage C build: gcc in a builder stage, the binary copied
into a slim stage. For each, alternating the two tools: cold build (--no-cache), rebuild with no
change, rebuild after touching one COPY'd file. Both RUN with their default seccomp profile (the
same containers-common profile). pip gets the host's CA bundle through a RUN bind mount (this machine's
egress re-signs TLS with its own CA). Prints medians and ratios to podman.
"""

from __future__ import annotations

import importlib.util
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
from support import oci  # noqa: E402
from support.registry import Registry  # noqa: E402

USER = os.environ.get("ROOTLESS_TEST_USER", "tester")
COLD = int(os.environ.get("COLD_RUNS", "3"))
WARM = int(os.environ.get("RUNS", "7"))
DEBIAN_ROOTFS = os.environ.get("DEBIAN_ROOTFS", "/var/tmp/rootless-bench/debian-rootfs")
SECCOMP: list[str] = []  # both tools' default profile

PYAPP = {
    "Containerfile": """FROM {base}
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-pip \\
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN --mount=type=bind,source=host-ca.crt,target=/tmp/host-ca.crt \
    pip3 install -q --break-system-packages --no-cache-dir --cert /tmp/host-ca.crt -r requirements.txt
COPY app.py .
CMD ["python3", "app.py"]
""",
    "requirements.txt": "six==1.16.0\n",
    "app.py": "import six\nprint('hello from', six.__name__)\n",
}
CAPP = {
    "Containerfile": """FROM {base} AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev \\
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY main.c util.c util.h ./
RUN gcc -O2 -static -o /hello main.c util.c
FROM {base}
COPY --from=build /hello /usr/local/bin/hello
CMD ["hello"]
""",
    "main.c": '#include "util.h"\nint main(void) { return greet("world"); }\n',
    "util.c": '#include <stdio.h>\n#include "util.h"\n'
    'int greet(const char *who) { printf("hello, %s\\n", who); return 0; }\n',
    "util.h": "int greet(const char *who);\n",
}
TOUCH = {"pyapp": "app.py", "capp": "main.c"}


def _pull_bench():
    spec = importlib.util.spec_from_file_location(
        "pullbench", os.path.join(REPO, "bench/pull/bench.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def as_user(argv: list[str], env: dict[str, str], cwd: str | None = None) -> list[str]:
    uid = int(subprocess.run(["id", "-u", USER], capture_output=True, text=True, check=True).stdout)
    envs = [f"{k}={v}" for k, v in env.items()]
    return ["runuser", "-u", USER, "--", "env", "-i", f"USER={USER}",
            "PATH=/opt/rootless/venv/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            f"XDG_RUNTIME_DIR=/run/user/{uid}", f"PYTHONPATH={REPO}", *envs, *argv]  # fmt: skip


def run(argv: list[str]) -> float:
    t0 = time.perf_counter()
    cp = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if cp.returncode != 0:
        raise SystemExit(f"{' '.join(argv[-6:])} failed:\n{cp.stderr[-3000:]}")
    return dt


def main() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(REPO, "rootless")],
                   check=True)  # fmt: skip
    work = tempfile.mkdtemp(prefix="rbb", dir="/tmp")
    os.chmod(work, 0o755)
    reg = Registry(os.path.join(work, "registry")).start()
    try:
        layout = os.path.join(work, "layout")
        layer = _pull_bench().debian_layer(DEBIAN_ROOTFS)
        oci.add_image(layout, "bookworm", [layer], config={"Env": [oci.PATH_ENV], "Cmd": ["bash"]})
        reg.push(layout, "bookworm", "debian:bookworm")
        ref = f"{reg.host}/debian:bookworm"
        home = os.path.join(work, "u")
        os.mkdir(home, 0o700)
        shutil.chown(home, USER, USER)
        renv = {"HOME": home, "XDG_DATA_HOME": f"{home}/data", "XDG_CONFIG_HOME": f"{home}/config"}
        penv = {"HOME": home}
        rootless = ["rootless"]
        podman = ["podman", "--root", f"{home}/proot", "--runroot", f"{home}/prun",
                  "--storage-driver", "overlay"]  # fmt: skip
        run(as_user([*rootless, "pull", "-q", "--tls-verify=false", ref], renv))
        run(as_user([*podman, "pull", "-q", "--tls-verify=false", ref], penv))
        results = {}
        for name, files in (("pyapp", PYAPP), ("capp", CAPP)):
            ctx = os.path.join(work, name)
            os.mkdir(ctx)
            for fn, text in files.items():
                with open(os.path.join(ctx, fn), "w") as f:
                    f.write(text.format(base=ref) if fn == "Containerfile" else text)
            shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", os.path.join(ctx, "host-ca.crt"))
            subprocess.run(["chown", "-R", f"{USER}:{USER}", ctx], check=True)
            tools = {
                "rootless": lambda extra, ctx=ctx: as_user(
                    [*rootless, "build", *SECCOMP, *extra, "-t", "bench", ctx], renv),
                "podman": lambda extra, ctx=ctx: as_user(
                    [*podman, "build", *SECCOMP, *extra, "-t", "bench", ctx], penv),
            }  # fmt: skip
            results[name] = measure(tools, os.path.join(ctx, TOUCH[name]))
        report(results)
    finally:
        reg.stop()
        subprocess.run(as_user(["podman", "--root", f"{home}/proot", "--runroot", f"{home}/prun",
                                "system", "reset", "-f"], {"HOME": home}), capture_output=True)  # fmt: skip
        subprocess.run(as_user(["rootless", "unshare", "rm", "-rf", f"{home}/data"], renv),
                       capture_output=True)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)


def measure(tools, touch_path: str) -> dict:
    out: dict[str, dict[str, list[float]]] = {t: {"cold": [], "nochange": [], "touch": []}
                                             for t in tools}  # fmt: skip
    for _ in range(COLD):
        for t, argv in tools.items():
            out[t]["cold"].append(run(argv(["--no-cache"])))
    for argv in tools.values():
        run(argv([]))  # warm the cache for this tool after the others' --no-cache builds
    for _ in range(WARM):
        for t, argv in tools.items():
            out[t]["nochange"].append(run(argv([])))
    n = 0
    for _ in range(COLD + 2):
        for t, argv in tools.items():
            n += 1
            with open(touch_path, "a") as f:
                f.write(f"\n/* {n} */\n" if touch_path.endswith(".c") else f"\n# {n}\n")
            out[t]["touch"].append(run(argv([])))
    return out


def report(results: dict) -> None:
    print(f"\nbuild benchmark, {lib.machine()}, medians in seconds (cold: --no-cache)\n")
    print("| project | case | rootless | podman | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name, res in results.items():
        for case in ("cold", "nochange", "touch"):
            r = statistics.median(res["rootless"][case])
            p = statistics.median(res["podman"][case])
            print(f"| {name} | {case} | {r:.3f} | {p:.3f} | {r / p:.2f}× |")


if __name__ == "__main__":
    main()
