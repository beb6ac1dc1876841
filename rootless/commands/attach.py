"""`attach` (and `container attach`): a running container's output from now on, and, for one made
with -i, this terminal's input as its stdin (through its monitor's stdin socket, which stays open
when attach leaves), until it exits (its exit code) or the detach keys (podman's ctrl-p,ctrl-q)
are typed."""

from __future__ import annotations

import os
import sys
import threading

import click

from rootless.errors import ContainerError

_CTRL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def detach_sequence(keys: str) -> bytes:
    """--detach-keys: a letter, or ctrl-X items separated by commas (podman's syntax); "" none."""
    out = bytearray()
    for item in keys.split(",") if keys else []:
        if len(item) == 1:
            out.append(ord(item))
        elif item.startswith("ctrl-") and len(item) == 6:
            c = item[5]
            if c.isalpha():
                out.append(ord(c.lower()) & 0x1F)
            elif c in _CTRL:
                out.append(_CTRL[c])
            else:
                raise ContainerError(f"invalid detach keys: {keys}")
        else:
            raise ContainerError(f"invalid detach keys: {keys}")
    return bytes(out)


def _relay_stdin(sock, keys: bytes) -> None:
    """This process's stdin to the container's, until EOF or the detach keys (then the attach ends
    at once, the container runs on); the container's stdin stays open for the next attach."""
    seen = b""
    fd = sys.stdin.fileno()
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            return
        if keys:
            buf = seen + data
            if keys in buf:
                sock.sendall(buf[len(seen) : buf.index(keys)])
                sys.stdout.flush()
                os._exit(0)  # detached: podman prints nothing and exits 0
            seen = buf[-(len(keys) - 1) :] if len(keys) > 1 else b""
        sock.sendall(data)


@click.command()
@click.option("--detach-keys", default="ctrl-p,ctrl-q", help="Keys that detach (podman's syntax).")
@click.option("--no-stdin", is_flag=True, help="Do not attach stdin.")
@click.option("-l", "--latest", is_flag=True, help="Attach to the latest created container.")
@click.option("--sig-proxy/--no-sig-proxy", default=True, hidden=True)
@click.argument("container", required=False)
def attach(detach_keys, no_stdin, latest, sig_proxy, container):
    """Attach to a running container's output (and stdin, if it was made with -i)."""
    from rootless.runtime import api, logs, state

    keys = detach_sequence(detach_keys)
    if latest == bool(container):
        raise ContainerError("attach requires the name or ID of one container, or --latest")
    rec = state.refresh(api.get(container) if container else _latest())
    if rec.state != "running":
        raise ContainerError("you can only attach to running containers")
    offset = os.path.getsize(rec.log_path) if os.path.exists(rec.log_path) else 0
    interactive = bool(rec.run and rec.run.interactive)
    if interactive and not no_stdin and os.path.exists(logs.stdin_socket(rec.run_dir)):
        sock = _connect(logs.stdin_socket(rec.run_dir))
        sock.sendall(logs.KEEP_STDIN)
        threading.Thread(target=_relay_stdin, args=(sock, keys), daemon=True).start()
    out, err = sys.stdout.buffer, sys.stderr.buffer
    fresh = logs.follow(
        rec, offset, lambda _ts, stream, content: (err if stream == "stderr" else out).write(content),
        pause=0.05,
    )  # fmt: skip
    raise SystemExit(0 if fresh.exit_code is None else fresh.exit_code)


def _latest():
    from rootless.runtime import state

    recs = sorted(state.list_records(), key=lambda r: r.created)
    if not recs:
        raise ContainerError("no containers to attach to")
    return recs[-1]


def _connect(path: str):
    import socket

    from rootless.runtime import logs

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dir_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
    try:
        sock.connect(logs.socket_address(path, dir_fd))
    except OSError as e:
        sock.close()
        raise ContainerError(f"attaching to the container's stdin: {e.strerror}") from None
    finally:
        os.close(dir_fd)
    return sock
