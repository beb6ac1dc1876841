"""Shared benchmark helpers: alternate the contenders in one run, take medians, print ratios.

Benchmarks are run on demand (make bench), never in CI, and their tables go into docs/benchmarks.md.
Contenders are run alternately (A B C A B C ...) so that machine noise hits all of them alike; the
report gives medians and the ratio to a named baseline.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable


def timed(argv: list[str] | Callable[[], None], *, env=None, cwd=None) -> float:
    """Wall time of one run; a failing command raises (a benchmark of a failure measures nothing)."""
    t0 = time.perf_counter()
    if callable(argv):
        argv()
    else:
        subprocess.run(
            argv, check=True, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    return time.perf_counter() - t0


def alternate(
    contenders: dict[str, Callable[[], float]], runs: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Run each contender `runs` times, interleaved; returns the samples per contender."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, fn in contenders.items():
            samples[name].append(fn())
    return samples


def table(samples: dict[str, list[float]], baseline: str, unit: str = "s") -> str:
    """A markdown table of medians and ratios to the baseline."""
    base = statistics.median(samples[baseline])
    lines = [
        f"| contender | median ({unit}) | min | ratio to {baseline} |",
        "| --- | --- | --- | --- |",
    ]
    for name, xs in samples.items():
        med = statistics.median(xs)
        lines.append(f"| {name} | {med:.4f} | {min(xs):.4f} | {med / base:.2f}× |")
    return "\n".join(lines)


def machine() -> str:
    import platform

    return f"{platform.node()}: kernel {platform.release()}, {os.cpu_count()} cores"
