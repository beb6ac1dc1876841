"""Waiting in tests without flaky sleeps: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import time


def poll(fn, timeout: float = 30.0, interval: float = 0.05):
    """Call fn until it returns something truthy (returned) or the timeout ends (AssertionError with
    the last exception fn raised, which are retried)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s; last error: {last!r}")
