"""Benchmark: rootless.fuse_overlay beside fuse-overlayfs and kernel overlayfs (run as root).

A ~20k-entry lower layer (copies of parts of /usr) plus one 200 MB file. For each filesystem and
each repetition, on a fresh mount after dropping the page/dentry caches (cold) and again on the
same mount (warm): find, `tar cf /dev/null` (metadata: GNU tar does not read data for /dev/null),
`tar cf - | cat >/dev/null` (data), cat of the 200 MB file; then creating 5,000 small files and
the copy-up of the 200 MB file. Prints a markdown table of medians and ratios, and the daemon's RSS
after a full walk.

usage: python bench/overlay/run.py [--reps 5] [--base /var/tmp/rootless-bench-overlay] [--only NAME...]
NAME: kernel, fuse-overlayfs, rootless, or a variant such as rootless:timeout=0 or
rootless:keep_cache=0 to measure what one FUSE knob buys.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from rootless import fuse_overlay  # noqa: E402

TREE = ["/usr/share/doc", "/usr/include", "/usr/lib/python3", "/usr/lib/x86_64-linux-gnu"]
FILESYSTEMS = ["kernel", "fuse-overlayfs", "rootless"]


def sh(cmd: str, cwd: str) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, shell=True, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")


def build_lower(lower: str) -> None:
    if os.path.exists(os.path.join(lower, ".complete")):
        return
    shutil.rmtree(lower, ignore_errors=True)
    os.makedirs(lower)
    for src in TREE:
        dst = os.path.join(lower, src.lstrip("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        subprocess.run(["cp", "-a", src, dst], check=True)
    with open(os.path.join(lower, "big.bin"), "wb") as f:
        for _ in range(200):
            f.write(os.urandom(1 << 20))
    open(os.path.join(lower, ".complete"), "w").close()


class Mount:
    def __init__(self, kind: str, base: str, lower: str):
        self.kind, self.base, self.lower = kind, base, lower
        self.proc = None

    def __enter__(self):
        root = os.path.join(self.base, "run")
        shutil.rmtree(root, ignore_errors=True)
        self.upper, self.work, self.mnt = (os.path.join(root, n) for n in ("upper", "work", "mnt"))
        for d in (self.upper, self.work, self.mnt):
            os.makedirs(d)
        opts = f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work}"
        if self.kind == "kernel":
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, self.mnt], check=True)
        elif self.kind == "fuse-overlayfs":
            subprocess.run(["fuse-overlayfs", "-o", opts, self.mnt], check=True)
        else:  # "rootless" or "rootless:knob=value,..." (see rootless.fuse_overlay.mount)
            knobs = self.kind.partition(":")[2]
            options = knobs.split(",") if knobs else []
            self.proc = fuse_overlay.spawn(
                [self.lower], self.upper, self.work, self.mnt, options=options
            )
        drop_caches()
        return self

    def rss_kb(self) -> int | None:
        pid = self.proc.pid if self.proc else None
        if self.kind == "fuse-overlayfs":
            out = subprocess.run(
                ["pgrep", "-f", f"fuse-overlayfs.*{self.mnt}"], capture_output=True, text=True
            ).stdout.split()
            pid = int(out[0]) if out else None
        if pid is None:
            return None
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return None

    def __exit__(self, *exc):
        if self.proc is not None:
            fuse_overlay.stop(self.proc, self.mnt)
        else:
            subprocess.run(["umount", self.mnt], check=False)
        shutil.rmtree(os.path.join(self.base, "run"), ignore_errors=True)


WALKS = {
    "find": "find . >/dev/null",
    "tar cf /dev/null": "tar cf /dev/null .",
    "tar, data": "tar cf - . | cat >/dev/null",
    "cat 200 MB": "cat big.bin >/dev/null",
}


def run(kind: str, base: str, lower: str, reps: int) -> tuple[dict[str, list[float]], list[int]]:
    res: dict[str, list[float]] = {}
    rss = []
    for _ in range(reps):
        for name, cmd in WALKS.items():
            with Mount(kind, base, lower) as m:
                res.setdefault(f"{name} cold", []).append(sh(cmd, m.mnt))
                res.setdefault(f"{name} warm", []).append(sh(cmd, m.mnt))
                if name == "tar, data":
                    rss.append(m.rss_kb())
        with Mount(kind, base, lower) as m:
            code = "for i in $(seq 5000); do : > f$i; done"
            os.makedirs(os.path.join(m.mnt, "new"))
            res.setdefault("create 5,000 files", []).append(sh(code, os.path.join(m.mnt, "new")))
        with Mount(kind, base, lower) as m:
            res.setdefault("copy-up 200 MB", []).append(sh(": >> big.bin", m.mnt))
    return res, rss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--base", default="/var/tmp/rootless-bench-overlay")
    ap.add_argument("--only", nargs="*", default=FILESYSTEMS)
    args = ap.parse_args()
    lower = os.path.join(args.base, "lower")
    build_lower(lower)
    entries = sum(len(d) + len(f) for _, d, f in os.walk(lower))
    results, rss = {}, {}
    for kind in args.only:
        results[kind], rss[kind] = run(kind, args.base, lower, args.reps)
        print(f"# {kind} done", file=sys.stderr)
    med = {k: {w: statistics.median(v) for w, v in r.items()} for k, r in results.items()}
    print(f"lower layer: {entries} entries; medians of {args.reps} runs, seconds\n")
    cols = [k for k in FILESYSTEMS if k in med] + [k for k in med if k not in FILESYSTEMS]
    head = "| workload | " + " | ".join(cols)
    ratios = "rootless" in med
    if ratios:
        head += " | rootless / fuse-overlayfs | rootless / kernel"
    print(head + " |")
    print("|" + " --- |" * (len(cols) + 1 + 2 * ratios))
    for w in next(iter(med.values())):
        row = f"| {w} | " + " | ".join(f"{med[k][w]:.3f}" for k in cols)
        if ratios:
            r = med["rootless"][w]
            fo = med.get("fuse-overlayfs", {}).get(w)
            kn = med.get("kernel", {}).get(w)
            row += f" | {r / fo:.2f}×" if fo else " | -"
            row += f" | {r / kn:.2f}×" if kn else " | -"
        print(row + " |")
    for k, v in rss.items():
        v = [x for x in v if x]
        if v:
            print(f"\n{k} daemon RSS after a full walk: {statistics.median(v) / 1024:.1f} MB")


if __name__ == "__main__":
    main()
