"""`rootless system service`: serve the Docker Engine API (rootless.api) on a unix socket.

Registered as `system service`; the `system` group here is minimal so that verbs' other `system`
subcommands (commands/system.py) merge into it by adding theirs.
"""

from __future__ import annotations

import os

import click

from rootless.errors import RootlessError


def default_uri() -> str:
    from rootless import paths

    return "unix://" + os.path.join(paths.runtime_dir(), "rootless.sock")


@click.group(name="system")
def system():
    """Manage rootless."""


@system.command(name="service")
@click.option("-t", "--time", "idle", default=5, type=int, show_default=True,
              help="Exit after this many idle seconds (0: never).")  # fmt: skip
@click.option("--install", is_flag=True,
              help="Write systemd --user units (rootless.socket, rootless.service) and exit.")  # fmt: skip
@click.argument("uri", required=False)
def service(idle, install, uri):
    """Serve the Docker Engine API on URI (default unix://$XDG_RUNTIME_DIR/rootless/rootless.sock)."""
    uri = uri or default_uri()
    if not (uri.startswith("unix://") or uri.startswith("tcp://")):
        raise RootlessError(f"{uri}: use unix:///PATH or tcp://HOST:PORT")
    if idle < 0:
        raise RootlessError("--time must be 0 (never exit) or a number of seconds")
    if install:
        for path in install_units(uri, idle):
            click.echo(f"wrote {path}")
        click.echo(
            "enable with: systemctl --user daemon-reload && systemctl --user enable --now rootless.socket"
        )
        return
    import logging
    import signal

    from rootless.api import server

    logging.getLogger("rootless.api").setLevel(logging.getLogger("rootless").getEffectiveLevel())

    def stop(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve(uri, idle)
    except OSError as e:
        raise RootlessError(f"cannot serve on {uri}: {e.strerror or e}") from None
    except KeyboardInterrupt:
        pass


def install_units(uri: str, idle: int) -> list[str]:
    """rootless.socket (listening on the unix socket's path) and rootless.service (started by it)."""
    import shlex
    import sys

    from rootless import paths

    if not uri.startswith("unix://"):
        raise RootlessError("--install writes units for a unix:// socket only")
    unit_dir = os.path.join(paths.config_home(), "systemd", "user")
    os.makedirs(unit_dir, exist_ok=True)
    sock_path = uri.removeprefix("unix://")
    exe = (
        os.path.abspath(sys.argv[0]) if os.path.basename(sys.argv[0]) == "rootless" else "rootless"
    )
    units = {
        "rootless.socket": (
            "[Unit]\nDescription=rootless Docker API socket\n\n"
            f"[Socket]\nListenStream={sock_path}\nSocketMode=0600\nDirectoryMode=0700\n\n"
            "[Install]\nWantedBy=sockets.target\n"
        ),
        "rootless.service": (
            "[Unit]\nDescription=rootless Docker API service\nRequires=rootless.socket\n"
            "After=rootless.socket\n\n"
            f"[Service]\nType=exec\nExecStart={shlex.quote(exe)} system service --time {idle}\n"
            "KillMode=process\n"
        ),
    }
    written = []
    for name, text in units.items():
        path = os.path.join(unit_dir, name)
        with open(path, "w") as f:
            f.write(text)
        written.append(path)
    return written
