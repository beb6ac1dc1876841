"""Healthchecks, as podman 4.3 keeps them: the configuration (--health-cmd and friends, else the
image's HEALTHCHECK; --no-healthcheck), one check (`healthcheck run`: the test run in the container
through `exec`), the state it leaves (`health.json` beside the record: status, failing streak, the
last five results) and the timer that runs a check every interval while the container runs (the
monitor holds it: podman needs systemd timers for that, rootless does not).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time

from rootless import process
from rootless.errors import ContainerError

MAX_LOGS, MAX_OUTPUT = 5, 500  # podman's MaxHealthCheckNumberLogs and MaxHealthCheckLogLength
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def go_duration(text: str) -> float:
    """Seconds of a Go duration ("30s", "1m30s", "500ms", "0"); ValueError with Go's words."""
    s = text.lstrip("+-")
    sign = -1.0 if text.startswith("-") else 1.0
    if s == "0":
        return 0.0
    total, pos = 0.0, 0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def configure(cmd, interval, retries, start_period, timeout, disabled, image_config) -> dict | None:
    """The container's Config.Healthcheck (durations in ns, as inspect shows them) from the
    --health-* flags, else the image's; None without one. Podman's errors."""
    if disabled and cmd:
        raise ContainerError("cannot specify both --no-healthcheck and --health-cmd")
    if disabled or (cmd or "").lower() == "none":
        return None
    image_hc = ((image_config or {}).get("config") or {}).get("Healthcheck") or {}
    if cmd:
        test = _test(cmd)
    elif image_hc.get("Test") and image_hc["Test"][0] != "NONE":
        test = list(image_hc["Test"])  # with the image's own timings, where it sets them
        interval, timeout, start_period = (f"{image_hc[k]}ns" if image_hc.get(k) else v for k, v in
                                           (("Interval", interval), ("Timeout", timeout),
                                            ("StartPeriod", start_period)))  # fmt: skip
        retries = image_hc.get("Retries") or retries
    else:
        return None
    secs = {}
    for name, value in (
        ("interval", interval),
        ("timeout", timeout),
        ("start-period", start_period),
    ):
        if name == "interval" and value == "disable":
            secs[name] = 0.0
            continue
        try:
            secs[name] = go_duration(value)
        except ValueError as e:
            raise ContainerError(f"invalid healthcheck-{name}: {e}") from None
    if secs["interval"] and secs["interval"] < 1:
        raise ContainerError("healthcheck-interval must be at least 1 second")
    if retries < 1:
        raise ContainerError("healthcheck-retries must be greater than 0")
    if secs["timeout"] < 1:
        raise ContainerError("healthcheck-timeout must be at least 1 second")
    if secs["start-period"] < 0:
        raise ContainerError("healthcheck-start-period must be 0 seconds or greater")
    out = {"Test": test, "Interval": int(secs["interval"] * 1e9), "Timeout": int(secs["timeout"] * 1e9),
           "StartPeriod": int(secs["start-period"] * 1e9), "Retries": retries}  # fmt: skip
    return {k: v for k, v in out.items() if v}  # podman's omitempty


def _test(cmd: str) -> list[str]:
    """--health-cmd: a JSON array (CMD form, as the man page shows) or a shell command."""
    if cmd.lstrip().startswith("["):
        try:
            args = json.loads(cmd)
        except ValueError:
            args = None
        if isinstance(args, list) and args and all(isinstance(a, str) for a in args):
            return args if args[0] in ("CMD", "CMD-SHELL") else ["CMD", *args]
    return ["CMD-SHELL", cmd]


def _argv(test: list[str]) -> list[str]:
    return ["/bin/sh", "-c", " ".join(test[1:])] if test[0] == "CMD-SHELL" else list(test[1:])


def _path(rec) -> str:
    return os.path.join(rec.dir, "health.json")


def state(rec) -> dict | None:
    """Inspect's State.Healthcheck: {Status, FailingStreak, Log}, "starting" before any check."""
    hc = rec.run.healthcheck if rec.run else None
    if not hc:
        return None
    try:
        with open(_path(rec)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"Status": "starting", "FailingStreak": 0, "Log": None}


def check(rec) -> int:
    """One check of running container `rec` (`healthcheck run`): 0 healthy, 1 unhealthy."""
    hc = rec.run.healthcheck if rec.run else None
    if not hc:
        raise ContainerError(f"container {rec.id} has no defined healthcheck")
    if rec.state != "running":
        raise ContainerError(f"container {rec.id} is not running")
    from rootless import gotime

    start = gotime.now_ns()
    timeout = hc["Timeout"] / 1e9
    argv = process.python_module("rootless", "exec", rec.id, *_argv(hc["Test"]))
    try:
        cp = process.run(argv, timeout=timeout)
        code, output = cp.returncode, cp.stdout + cp.stderr
    except TimeoutError:
        code, output = -1, f"healthcheck command exceeded timeout of {hc['Timeout'] // 10**9}s"
    entry = {"Start": gotime.rfc3339nano(start), "End": gotime.rfc3339nano(gotime.now_ns()),
             "ExitCode": code, "Output": output[:MAX_OUTPUT]}  # fmt: skip
    in_start_period = time.time() - (rec.started or 0) < hc.get("StartPeriod", 0) / 1e9
    _record(rec, hc, entry, in_start_period)
    return 0 if code == 0 else 1


def _record(rec, hc: dict, entry: dict, in_start_period: bool) -> None:
    """podman's updateHealthCheckLog, under the record's lock: the file is rewritten atomically."""
    from rootless import paths
    from rootless.runtime import state as records

    with records.lock():
        st = state(rec) or {}
        st["Log"] = st.get("Log") or []
        if entry["ExitCode"] == 0:
            st["Status"], st["FailingStreak"] = "healthy", 0
        elif not in_start_period:
            st["FailingStreak"] = st.get("FailingStreak", 0) + 1
            if st["FailingStreak"] >= hc["Retries"]:
                st["Status"] = "unhealthy"
        st["Log"] = (st["Log"] + [entry])[-MAX_LOGS:]
        if os.path.isdir(rec.dir):
            paths.write_text_atomic(_path(rec), json.dumps(st))


class Timer:
    """The monitor's: `rootless healthcheck run ID` every interval while the container runs."""

    def __init__(self, rec, interval: float):
        self.rec, self.interval = rec, interval
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    @classmethod
    def start(cls, rec) -> Timer | None:
        hc = rec.run.healthcheck if rec.run else None
        if not hc or not hc.get("Interval"):
            return None
        t = cls(rec, hc["Interval"] / 1e9)
        t.thread.start()
        return t

    def _loop(self) -> None:
        argv = process.python_module("rootless", "healthcheck", "run", self.rec.id)
        while not self.done.wait(self.interval):
            try:
                process.run(argv, timeout=self.interval + 60, capture=False)
            except (OSError, TimeoutError):
                pass

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=10)  # a check under way ends with the container
