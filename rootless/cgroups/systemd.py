"""The user's systemd manager over D-Bus (jeepney, blocking I/O: a few round trips on a local
socket): finding its bus, and starting and stopping the transient scope that holds a container.
"""

from __future__ import annotations

import os

from rootless.cgroups.fs import CGROUP_ROOT
from rootless.cgroups.limits import CgroupError

AUTH_TIMEOUT = 10.0  # seconds for the user bus's SASL handshake
_SYSTEMD = (
    "/org/freedesktop/systemd1",
    "org.freedesktop.systemd1",
    "org.freedesktop.systemd1.Manager",
)


def user_bus_address() -> str | None:
    """The user bus, from DBUS_SESSION_BUS_ADDRESS or $XDG_RUNTIME_DIR/bus; None when there is none."""
    addr = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if addr and addr.startswith("unix:path="):
        path = addr[len("unix:path=") :].split(",")[0]
        return addr if os.path.exists(path) else None
    if addr:
        return addr
    for rt in (os.environ.get("XDG_RUNTIME_DIR"), f"/run/user/{os.getuid()}"):
        if rt and os.path.exists(os.path.join(rt, "bus")):
            return f"unix:path={os.path.join(rt, 'bus')}"
    return None


def user_manager_cgroup() -> str:
    """The cgroup of the user's systemd manager (user@UID.service)."""
    uid = os.getuid()
    return os.path.join(CGROUP_ROOT, f"user.slice/user-{uid}.slice/user@{uid}.service")


def systemd_call(bus: str, method: str, signature: str, body: tuple):
    """One method call on the user's systemd manager over its bus; a CgroupError (one line) on failure."""
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection
    from jeepney.wrappers import DBusErrorResponse, unwrap_msg

    addr = DBusAddress(*_SYSTEMD)
    try:
        # jeepney's default auth timeout (1 s) is too short on a loaded or slow machine (seen in CI)
        with open_dbus_connection(bus=bus, auth_timeout=AUTH_TIMEOUT) as conn:
            reply = conn.send_and_get_reply(
                new_method_call(addr, method, signature, body), timeout=15
            )
            return unwrap_msg(reply)
    except DBusErrorResponse as e:
        raise CgroupError(
            f"the systemd user manager refused {method}: {e.name}: {' '.join(map(str, e.data))}"
        ) from None
    except (OSError, TimeoutError) as e:
        raise CgroupError(
            f"cannot talk to the systemd user manager at {bus}: {e}; "
            "run `loginctl enable-linger $USER`, or run with --cgroups=disabled"
        ) from None


def start_scope(bus: str, unit: str, pid: int, container_id: str) -> None:
    props = [
        ("Description", ("s", f"rootless container {container_id[:12]}")),
        ("PIDs", ("au", [pid])),
        ("Delegate", ("b", True)),
        ("CollectMode", ("s", "inactive-or-failed")),
        # The kernel's OOM kill takes one process, as in podman; systemd must not stop the whole scope.
        ("OOMPolicy", ("s", "continue")),
    ]
    systemd_call(bus, "StartTransientUnit", "ssa(sv)a(sa(sv))", (unit, "fail", props, []))


def stop_unit(bus: str, unit: str) -> None:
    systemd_call(bus, "StopUnit", "ss", (unit, "fail"))
