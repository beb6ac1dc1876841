"""The per-user network helper (``python -m rootless.network.usernetd READY_FD``): see
rootless.network.usernet for what it is for and how clients talk to it.

Two processes, each with an owner that reaps it:
- the **owner** (this program, on the host side, daemonized by the client that started it): forks
  the holder into a new user namespace with a new network namespace (rootless.userns), starts
  slirp4netns for that namespace (its exit fd held here: it cannot outlive the owner), tells the
  client that started it "ready", then waits for the holder and stops slirp4netns;
- the **holder** (rootless.network.usernet_holder, root in that user namespace): the bridges, the
  veths, the addresses, the DNS responders and the published ports, and the control socket.
The owner and the holder talk over a socketpair: "netns" (holder: the namespace exists), "slirp
API_SOCKET" (owner: slirp4netns is up), "ready" or "error: ..." (holder).
"""

from __future__ import annotations

import os
import signal
import socket
import sys


def _say(fd: int, text: str) -> None:
    try:
        os.write(fd, (text.replace("\n", " ") + "\n").encode())
    except OSError:
        pass


def owner(ready_fd: int) -> int:
    from rootless import syscalls as sc
    from rootless import userns
    from rootless.errors import RootlessError
    from rootless.network import slirp4netns, usernet

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.makedirs(usernet.run_dir(), mode=0o700, exist_ok=True)
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)

    def holder_body() -> int:
        mine.close()
        from rootless.network import usernet_holder

        return usernet_holder.main(theirs)

    net = holder = None
    try:
        holder = userns.fork_userns(holder_body, extra_unshare_flags=sc.CLONE_NEWNET,
                                    pdeathsig=signal.SIGKILL)  # fmt: skip
        theirs.close()
        if _recv(mine) != "netns":
            raise RootlessError("the namespace holder failed: see usernetd.log")
        ns = f"/proc/{holder.pid}/ns"
        net = slirp4netns.start(f"{ns}/net", f"{ns}/user", usernet.run_dir(), {}, [])
        mine.send(f"slirp {net.api_socket}".encode())
        said = _recv(mine)
        if said != "ready":
            raise RootlessError(said.removeprefix("error: ") or "the namespace holder died")
    except BaseException as e:  # noqa: B036 - the client waiting must hear why
        _say(ready_fd, f"error: {e}")
        if holder is not None:
            holder.kill_and_reap()
        if net is not None:
            net.kill()
        return 125
    _say(ready_fd, "ready")
    os.close(ready_fd)
    print(f"usernetd: holder {holder.pid}, slirp4netns {net.helper_pid}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: holder.terminate())
    rc = holder.wait()
    net.stop()
    mine.close()
    print(f"usernetd: the holder exited ({rc}): done", flush=True)
    return rc


def _recv(sock: socket.socket, timeout: float = 30.0) -> str:
    sock.settimeout(timeout)
    try:
        return sock.recv(4096).decode(errors="replace")
    except OSError:
        return ""


if __name__ == "__main__":
    sys.exit(owner(int(sys.argv[1])))
