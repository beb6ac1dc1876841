"""Network benchmark: rootless beside rootless podman with the same helper (slirp4netns), and beside
pasta started by hand (podman 4.3 has no --network pasta), contenders alternated in one run.

Three measurements per contender, each repeated ROUNDS times (A B C A B C ...):
- container -> host: iperf3 -c in the container to an iperf3 -s on the host (slirp4netns: the host's
  own address, as host.containers.internal; pasta: its gateway address, which pasta maps to the
  host's loopback); the figure is iperf3's receiver throughput;
- host -> container through a published port: iperf3 -s in the container, published on
  127.0.0.1:HOSTPORT, iperf3 -c on the host;
- published-port connection setup: busybox httpd in the container on a published port; SAMPLES
  times: connect() to 127.0.0.1:HOSTPORT, and connect + send a request + the first reply byte (the
  whole path to the server in the container and back, which a bare connect() does not cover:
  slirp4netns accepts on the host before it has reached the container). The run's figure is the
  median of its samples.

Everything is loopback traffic on this host; each iperf3 run is bounded (-t SECONDS).

usage (as the unprivileged user): python3 bench/net/run.py [--rounds N] [--seconds S] [--samples N]
Prints markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import image  # noqa: E402
import lib  # noqa: E402

IMAGE = "localhost/iperf3:latest"
CTR_IPERF_PORT = 5201
HTTP_REQUEST = b"GET / HTTP/1.0\r\n\r\n"
# the httpd server: it serves a file from a tmpfs so that the container's root filesystem (FUSE or
# kernel overlay, vfs) plays no part; backgrounded so that closing stdin ends the container
WWW = "/srv"
HTTPD = f"echo hi >{WWW}/index.html; httpd -f -p 80 -h {WWW} & echo ready; read x; kill $!"


class BenchError(Exception):
    pass


# ---- host facts ------------------------------------------------------------------------------------
def default_gateway() -> str:
    with open("/proc/net/route") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == "00000000" and int(fields[3], 16) & 2:
                return socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little"))
    raise BenchError("this host has no IPv4 default route")


def host_address(gateway: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((gateway, 9))
        return s.getsockname()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


# ---- process helpers -------------------------------------------------------------------------------
def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 30.0) -> None:
    """Read proc's stdout (a pipe) until a line contains ``needle``."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while needle.encode() not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"timed out waiting for {needle!r} from {proc.args[:3]}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise BenchError(f"{proc.args[:3]} ended before {needle!r}: {_stderr(proc)}")
            buf += chunk


def _stderr(proc) -> str:
    path = getattr(proc, "stderr_path", None)
    if not path:
        return ""
    try:
        with open(path, errors="replace") as f:
            return f.read().strip().splitlines()[-1]
    except (OSError, IndexError):
        return ""


def finish(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise BenchError(f"{proc.args[:4]} did not end in {timeout:.0f} s") from None


def iperf_bps(stdout: str) -> float:
    """The receiver's throughput from iperf3 -J output, in Gbit/s."""
    try:
        data = json.loads(stdout)
        return data["end"]["sum_received"]["bits_per_second"] / 1e9
    except (ValueError, KeyError) as e:
        raise BenchError(f"iperf3 gave no result: {stdout[-300:]!r}") from e


# ---- contenders ------------------------------------------------------------------------------------
class Contender:
    """Runs a command in a fresh network namespace behind one helper; ``target`` is where that
    namespace reaches the host."""

    name: str
    target: str

    def __init__(self, bench: Bench):
        self.bench = bench

    def start(self, argv: list[str], publish: tuple[int, int] | None = None) -> subprocess.Popen:
        raise NotImplementedError

    def stop(self, proc: subprocess.Popen) -> None:
        """After ``proc`` has ended: release whatever else this run started."""

    def _popen(self, argv: list[str], env=None) -> subprocess.Popen:
        err = os.path.join(self.bench.work, "last-stderr.log")
        with open(err, "wb") as errf:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errf,
                env=env or self.bench.env,
            )
        proc.stderr_path = err
        return proc


class Rootless(Contender):
    def __init__(self, bench, network: str, target: str, name: str):
        super().__init__(bench)
        self.network, self.target, self.name = network, target, name

    def start(self, argv, publish=None):
        cmd = [*self.bench.rootless, "run", "--rm", "-i", "--tmpfs", WWW, "--network", self.network]
        if publish:
            cmd += ["-p", f"127.0.0.1:{publish[0]}:{publish[1]}"]
        return self._popen([*cmd, IMAGE, *argv], env=self.bench.rootless_env)


class Podman(Contender):
    def __init__(self, bench, network: str, target: str, name: str):
        super().__init__(bench)
        self.network, self.target, self.name = network, target, name

    def start(self, argv, publish=None):
        cmd = [*self.bench.podman, "run", "--rm", "-i", "--tmpfs", WWW, "--network", self.network]
        if publish:
            cmd += ["-p", f"127.0.0.1:{publish[0]}:{publish[1]}"]
        return self._popen([*cmd, IMAGE, *argv])


class BarePasta(Contender):
    """pasta started by hand on a namespace made by ``unshare -Urn`` (the flags rootless passes),
    the command run in it with nsenter from the host's own files: the helper's own throughput."""

    name = "pasta by hand"

    def __init__(self, bench, target: str):
        super().__init__(bench)
        self.target = target
        self._extra: list[subprocess.Popen] = []

    def start(self, argv, publish=None):
        holder = subprocess.Popen(["unshare", "-Urn", "sleep", "600"], stdin=subprocess.DEVNULL)
        self._extra = [holder]
        own = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while True:
            try:
                with open(f"/proc/{holder.pid}/uid_map") as f:
                    mapped = bool(f.read().strip())
                if mapped and os.readlink(f"/proc/{holder.pid}/ns/net") != own:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError("unshare -Urn did not come up")
            time.sleep(0.005)
        pidfile = os.path.join(self.bench.work, "pasta.pid")
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        tcp = f"127.0.0.1/{publish[0]}:{publish[1]}" if publish else "none"
        pasta = subprocess.Popen(
            [
                "pasta",
                "-f",
                "--config-net",
                "-t",
                tcp,
                "-u",
                "none",
                "-T",
                "none",
                "-U",
                "none",
                "--netns",
                f"/proc/{holder.pid}/ns/net",
                "--userns",
                f"/proc/{holder.pid}/ns/user",
                "-P",
                pidfile,
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._extra.append(pasta)
        while not (os.path.exists(pidfile) and os.path.getsize(pidfile)):
            if pasta.poll() is not None or time.monotonic() > deadline:
                raise BenchError("pasta did not start")
            time.sleep(0.005)
        # in the container image these are /usr/bin/iperf3 and busybox applets; here the host's
        argv = ["/bin/busybox", *argv] if argv[0] == "sh" else argv
        www = os.path.join(self.bench.work, "www")
        argv = [a.replace(WWW, www) for a in argv]
        argv = [a.replace("httpd ", "/bin/busybox httpd ") for a in argv]
        enter = ["nsenter", "-t", str(holder.pid), "-U", "-n", "--preserve-credentials"]
        return self._popen([*enter, *argv])

    def stop(self, proc):
        for p in reversed(self._extra):
            p.terminate()
            p.wait()
        self._extra = []


# ---- the measurements ------------------------------------------------------------------------------
class Bench:
    def __init__(self, work: str, seconds: int, samples: int):
        self.work, self.seconds, self.samples = work, seconds, samples
        self.env = dict(os.environ)
        self.rootless_env = dict(
            self.env,
            XDG_DATA_HOME=os.path.join(work, "rootless", "data"),
            XDG_CONFIG_HOME=os.path.join(work, "rootless", "config"),
            XDG_RUNTIME_DIR=os.path.join(work, "rootless", "run"),
        )
        for k in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR"):
            os.makedirs(self.rootless_env[k], mode=0o700, exist_ok=True)
        exe = shutil.which("rootless")
        self.rootless = [exe] if exe else [sys.executable, "-m", "rootless"]
        self.podman = [
            "podman",
            "--root",
            os.path.join(work, "podman", "root"),
            "--runroot",
            os.path.join(work, "podman", "run"),
        ]
        os.makedirs(os.path.join(work, "www"), exist_ok=True)

    def load_image(self) -> None:
        archive = image.build(os.path.join(self.work, "iperf3-oci.tar"))
        subprocess.run([*self.podman, "load", "-q", "-i", archive], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        out = subprocess.run([*self.rootless, "load", "-i", archive], check=True,
                             env=self.rootless_env, capture_output=True, text=True).stdout  # fmt: skip
        loaded = out.strip().split()[
            -1
        ]  # "Loaded image: sha256:..." (the archive's ref is no name)
        if loaded != IMAGE:
            subprocess.run([*self.rootless, "tag", loaded.removeprefix("sha256:"), IMAGE],
                           check=True, env=self.rootless_env)  # fmt: skip

    def cleanup(self) -> None:
        # both stores hold files owned by subordinate ids: remove them from inside the user namespace
        subprocess.run([*self.podman, "unshare", "rm", "-rf", self.work], check=False)
        shutil.rmtree(self.work, ignore_errors=True)

    # container -> host
    def ctr_to_host(self, c: Contender) -> float:
        port = free_port()
        server = subprocess.Popen(
            ["iperf3", "-s", "-1", "-p", str(port), "--forceflush"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_line(server, "Server listening")
            client = c.start(["iperf3", "-c", c.target, "-p", str(port), "-t", str(self.seconds),
                              "-J"])  # fmt: skip
            try:
                out, _ = client.communicate(timeout=self.seconds + 60)
            finally:
                if client.poll() is None:
                    client.kill()
                    client.wait()
                c.stop(client)
            if client.returncode:
                raise BenchError(
                    f"{c.name}: iperf3 client failed: {out[-300:]!r} {_stderr(client)}"
                )
            return iperf_bps(out.decode())
        finally:
            if server.poll() is None:
                server.kill()
            server.wait()

    # host -> container through a published port
    def host_to_ctr(self, c: Contender) -> float:
        port = free_port()
        server = c.start(
            ["iperf3", "-s", "-1", "-p", str(CTR_IPERF_PORT), "--forceflush"],
            publish=(port, CTR_IPERF_PORT),
        )
        try:
            wait_for_line(server, "Server listening")
            out = subprocess.run(
                ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(self.seconds), "-J"],
                capture_output=True,
                text=True,
                timeout=self.seconds + 60,
            ).stdout
            finish(server)
            return iperf_bps(out)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
            c.stop(server)

    # published-port connection setup
    def connect_latency(self, c: Contender) -> tuple[float, float]:
        port = free_port()
        server = c.start(["sh", "-c", HTTPD], publish=(port, 80))
        try:
            wait_for_line(server, "ready")
            deadline = time.monotonic() + 30
            while True:  # the server is up once a request gets an answer
                try:
                    self._one_request(port)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise BenchError(f"{c.name}: httpd did not answer") from None
                    time.sleep(0.01)
            connects, firsts = [], []
            for _ in range(self.samples):
                tc, tf = self._one_request(port)
                connects.append(tc)
                firsts.append(tf)
            server.stdin.close()
            finish(server)
            return statistics.median(connects) * 1e3, statistics.median(firsts) * 1e3
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
            c.stop(server)

    @staticmethod
    def _one_request(port: int) -> tuple[float, float]:
        with socket.socket() as s:
            s.settimeout(5)
            t0 = time.perf_counter()
            s.connect(("127.0.0.1", port))
            t1 = time.perf_counter()
            s.sendall(HTTP_REQUEST)
            if not s.recv(1):
                raise ConnectionResetError("closed without an answer")
            t2 = time.perf_counter()
        return t1 - t0, t2 - t0


def latency_table(samples: dict[str, list[float]], baselines: dict[str, str]) -> str:
    lines = [
        "| contender | median (ms) | min | difference to baseline (ms) |",
        "| --- | --- | --- | --- |",
    ]
    for name, xs in samples.items():
        med = statistics.median(xs)
        base = baselines.get(name)
        diff = f"{med - statistics.median(samples[base]):+.3f}" if base and base != name else "—"
        lines.append(f"| {name} | {med:.3f} | {min(xs):.3f} | {diff} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 -t")
    ap.add_argument("--samples", type=int, default=300, help="connections per latency run")
    ap.add_argument("--only", default="", help="comma-separated measurements: c2h,h2c,lat")
    ap.add_argument("--helpers", default="slirp4netns,pasta", help="comma-separated helpers")
    args = ap.parse_args()
    if os.geteuid() == 0:
        print("run this as the unprivileged user (bench/net/run.sh does)", file=sys.stderr)
        return 2
    gateway = default_gateway()
    host = host_address(gateway)
    work = tempfile.mkdtemp(prefix="rootless-bench-net-")
    bench = Bench(work, args.seconds, args.samples)
    slirp_same = "slirp4netns:port_handler=slirp4netns"
    rl_slirp = Rootless(bench, "slirp4netns", host, "rootless slirp4netns")
    pm_slirp = Podman(bench, slirp_same, host, "podman slirp4netns")
    pm_default = Podman(bench, "slirp4netns", host, "podman slirp4netns + rootlessport")
    rl_pasta = Rootless(bench, "pasta", gateway, "rootless pasta")
    bare_pasta = BarePasta(bench, gateway)
    base = {
        rl_slirp.name: pm_slirp.name,
        pm_slirp.name: pm_slirp.name,
        pm_default.name: pm_slirp.name,
        rl_pasta.name: bare_pasta.name,
        bare_pasta.name: bare_pasta.name,
    }
    only = set(filter(None, args.only.split(","))) or {"c2h", "h2c", "lat"}
    print(f"# {lib.machine()}; {time.strftime('%Y-%m-%d')}")
    print(f"# {version(['podman', '--version'])}, {version(['slirp4netns', '--version'])}, "
          f"passt {version(['dpkg-query', '-W', '-f', '${Version}', 'passt'])}, "
          f"{version(['iperf3', '--version'])}, {version(['runc', '--version'])}")  # fmt: skip
    print(f"# rounds={args.rounds} iperf3 -t {args.seconds}, {args.samples} connections per run;"
          f" host address {host}, gateway {gateway}")  # fmt: skip
    try:
        bench.load_image()
        results: dict[str, str] = {}

        helpers = set(filter(None, args.helpers.split(",")))
        # (baseline, others) per helper: published-port runs add podman's default port handler
        c2h_groups = [g for h, g in (("slirp4netns", [pm_slirp, rl_slirp]),
                                     ("pasta", [bare_pasta, rl_pasta])) if h in helpers]  # fmt: skip
        pub_groups = [g for h, g in (("slirp4netns", [pm_slirp, rl_slirp, pm_default]),
                                     ("pasta", [bare_pasta, rl_pasta])) if h in helpers]  # fmt: skip

        def measure(fn, groups):
            return lib.alternate(
                {c.name: (lambda c=c: fn(c)) for g in groups for c in g}, args.rounds, 1
            )

        def tables(samples, groups, unit):
            return "\n".join(
                lib.table({c.name: samples[c.name] for c in g[1:] + g[:1]}, g[0].name, unit)
                for g in groups
            )

        if "c2h" in only:
            s = measure(bench.ctr_to_host, c2h_groups)
            results["container → host (iperf3, Gbit/s)"] = tables(s, c2h_groups, "Gbit/s")
        if "h2c" in only:
            s = measure(bench.host_to_ctr, pub_groups)
            results["host → container through -p 127.0.0.1:PORT:5201 (iperf3, Gbit/s)"] = tables(
                s, pub_groups, "Gbit/s"
            )
        if "lat" in only:
            pairs = measure(bench.connect_latency, pub_groups)
            connect = {k: [p[0] for p in v] for k, v in pairs.items()}
            first = {k: [p[1] for p in v] for k, v in pairs.items()}
            results["published port: connect() (median of the runs' medians, ms)"] = latency_table(
                connect, base
            )
            results["published port: connect + request + first reply byte (ms)"] = latency_table(
                first, base
            )
        for title, tbl in results.items():
            print(f"\n### {title}\n")
            print(tbl.replace("\n| contender", "\n\n| contender"))
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
