"""Restart policies (podman's --restart): parsing, the decision after an exit, the delay before a
restart, and the "stopped by the user" mark that keeps a container that `stop`, `kill` or `rm`
ended from being restarted.

Policies: "no" (or ""), "on-failure[:N]" (a non-zero exit, at most N restarts), "always" and
"unless-stopped" (the same for rootless as for podman: nothing restarts containers at boot). The
detached monitor (rootless.runtime.monitor) runs the container again under the same monitor and
counts the restarts in the record (inspect's RestartCount, ps's Restarts); a user's `start`
resets the count, as podman's does.

The delay: podman 4.3 restarts at once (its cleanup process does it, which takes a few hundred ms);
a monitor that is already there would spin on a command that exits at once, so it waits as Docker
does: 100 ms, doubled on each restart up to 30 s, back to 100 ms once a run has lasted 10 s.
"""

from __future__ import annotations

import os

from rootless.errors import ContainerError

POLICIES = ("no", "on-failure", "always", "unless-stopped")
_FIRST, _MAX, _RESET = 0.1, 30.0, 10.0


def parse(value: str | None) -> tuple[str, int]:
    """(policy, maximum retries: 0 = unlimited) of a --restart value; ContainerError if invalid."""
    if not value:
        return "no", 0
    name, sep, count = value.partition(":")
    if name not in POLICIES:
        raise ContainerError(
            f"--restart {value!r}: invalid restart policy: use no, on-failure[:N], always or "
            "unless-stopped"
        )
    if not sep:
        return name, 0
    if name != "on-failure":
        raise ContainerError(
            f"--restart {value!r}: restart policy retries can only be specified with on-failure"
        )
    if not count.isdigit() or int(count) < 1:
        raise ContainerError(
            f"--restart {value!r}: the retry count must be a number greater than 0"
        )
    return name, int(count)


def should_restart(value: str | None, exit_code: int | None, count: int) -> bool:
    """Whether a container that exited with `exit_code`, restarted `count` times already, is run
    again (the user's stop is checked separately: stopped_by_user)."""
    name, retries = parse(value)
    if name == "no":
        return False
    if name == "on-failure":
        return exit_code != 0 and (retries == 0 or count < retries)
    return True


def delay(previous: float, ran_for: float) -> float:
    """Seconds to wait before the next restart, after waiting `previous` before the last one."""
    if ran_for >= _RESET or previous <= 0:
        return _FIRST
    return min(previous * 2, _MAX)


def _mark(rec) -> str:
    return os.path.join(rec.dir, "stopped-by-user")


def mark_stopped(rec) -> None:
    """`stop`, `kill`, `rm`: the container is not to be restarted by its policy."""
    try:
        with open(_mark(rec), "w"):
            pass
    except OSError:
        pass  # removed meanwhile: nothing will restart it


def clear_stopped(rec) -> None:
    """A user's `start`: the policy applies again."""
    try:
        os.unlink(_mark(rec))
    except OSError:
        pass


def stopped_by_user(rec) -> bool:
    return os.path.exists(_mark(rec))
