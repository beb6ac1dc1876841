"""How long and how often the registry client waits: the inactivity timeout, bounded retries, and
the low-speed rule, from flags, the environment and containers.conf(5).

- `Settings.timeout` (30 s; ROOTLESS_REGISTRY_TIMEOUT, seconds or a Go-style duration such as
  "2s"): a request with no answer within it, or a body that delivers less than 1 KiB in one such
  window, fails (see `Speed`).
- `Settings.retries` (3; `--retry`, containers.conf `[engine] retry`) and `retry_delay` (1 s, 2 s,
  4 s, ... at most 8 s; `--retry-delay`, `[engine] retry_delay`): connection failures and 5xx/429
  answers are retried at most that many times, and no retry starts more than `retry_window`
  (2 minutes) after the first attempt. A Retry-After is honoured up to 10 s.
- containers.conf `[engine] compression_format` is read here too (push's default compression).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from rootless.errors import ImageError

LOW_SPEED_BYTES = 1024  # less than this in one timeout window counts as a stall
MAX_RETRY_AFTER = 10.0


@dataclass
class Settings:
    timeout: float = 30.0  # seconds of inactivity before a request fails
    retries: int = 3  # retries after the first attempt
    retry_delay: float | None = None  # None: 1 s, 2 s, 4 s, ... (at most 8 s)
    retry_window: float = 120.0  # no retry starts later than this after the first attempt


def parse_duration(value: str, what: str) -> float:
    """Seconds from a Go-style duration ("500ms", "10s", "1m30s") or a plain number of seconds."""
    s = str(value).strip()
    try:
        n = float(s)
    except ValueError:
        parts = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:ms|s|m|h))+)", s)
        if not parts:
            raise ImageError(
                f'invalid {what} "{value}": use a duration such as 500ms, 10s or 1m30s'
            ) from None
        n = 0.0
        for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", s):
            n += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    if not (n >= 0) or n == float("inf"):
        raise ImageError(f'invalid {what} "{value}": it must be a positive duration')
    return n


def containers_conf_engine() -> dict:
    """The merged [engine] table of containers.conf(5) (rootless.containers_conf)."""
    from rootless import containers_conf

    return containers_conf.table("engine")


def load_settings(retry: int | None = None, retry_delay: str | None = None) -> Settings:
    """Flags first, then ROOTLESS_REGISTRY_TIMEOUT and containers.conf [engine] retry/retry_delay."""
    s = Settings()
    env = os.environ.get("ROOTLESS_REGISTRY_TIMEOUT")
    if env:
        s.timeout = parse_duration(env, "ROOTLESS_REGISTRY_TIMEOUT")
        if s.timeout <= 0:
            raise ImageError("ROOTLESS_REGISTRY_TIMEOUT must be more than 0")
    engine = containers_conf_engine() if retry is None or retry_delay is None else {}
    if retry is None and "retry" in engine:
        retry = engine["retry"]
        if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
            raise ImageError("containers.conf: [engine] retry must be a number of retries, >= 0")
    if retry is not None:
        if retry < 0:
            raise ImageError(f"invalid --retry {retry}: it must be 0 or more")
        s.retries = retry
    what = "--retry-delay"
    if retry_delay is None and engine.get("retry_delay"):
        retry_delay, what = str(engine["retry_delay"]), "containers.conf [engine] retry_delay"
    if retry_delay:
        s.retry_delay = parse_duration(retry_delay, what)
    return s


class Retrier:
    """Bounded retries: at most `retries`, none starting after `retry_window`."""

    def __init__(self, settings: Settings):
        self.s = settings
        self.n = 0
        self.start = time.monotonic()

    async def again(self, retry_after: str | None = None) -> bool:
        import trio

        delay = self.s.retry_delay if self.s.retry_delay is not None else min(2.0**self.n, 8.0)
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER))
            except ValueError:
                pass
        if self.n >= self.s.retries or time.monotonic() - self.start + delay > self.s.retry_window:
            return False
        self.n += 1
        await trio.sleep(delay)
        return True

    @property
    def attempts(self) -> int:
        return self.n + 1


class Speed:
    """Raises when less than LOW_SPEED_BYTES arrive in a window of `timeout` seconds."""

    def __init__(self, timeout: float, fail: Callable[[], ImageError]):
        self.t, self.fail = timeout, fail
        self.start, self.n = time.monotonic(), 0

    def feed(self, n: int) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.start >= self.t:
            if self.n < LOW_SPEED_BYTES:
                raise self.fail()
            self.start, self.n = now, 0


class TooManyRedirects(Exception):
    """More redirects than the client follows (rootless.image.distribution.MAX_REDIRECTS)."""


def errtext(e: BaseException | None) -> str:
    """The first line of an error's text, never a Python type name."""
    if e is None:
        return "unknown error"
    x, n = e, 0
    while x is not None and not str(x) and n < 8:  # httpx wraps e.g. ssl errors without text
        x, n = x.__cause__ or x.__context__, n + 1
    if x is None or not str(x):
        return "the connection failed"
    return str(x).splitlines()[0][:300]
