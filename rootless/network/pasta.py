"""``--network pasta[:ARGS]``: the pasta helper (Debian package passt, 2023-03 on Debian 12) and its guard.

pasta vs slirp4netns: pasta copies the host's address, routes and MTU into the container (so the
container sees the host's IP on an interface named like the host's), and it splices published ports
with plain sockets, so the server in the container sees the client's real source address; with
slirp4netns every published-port connection appears to come from 10.0.2.2 (its gateway).
The host's loopback stays out of reach: as podman, pasta gets ``--no-map-gw`` unless the options say
``--map-gw`` (podman's own option, not pasta's: taken out of the arguments), which lets connections
to the gateway address reach the host's loopback (host.containers.internal is then the gateway).
DNS: pasta forwards queries sent to ``DNS_FORWARD`` (169.254.1.1) to the host's first resolver, so the
container's resolv.conf points there (this also works when the host uses a 127.0.0.x stub resolver).

Lifetime: pasta has no exit fd, and this version only quits by itself when a *bind-mounted* netns file
is deleted, which an unprivileged process without a persistent netns cannot use. So pasta runs in the
foreground (``-f``) as the child of a small guard (``python -m rootless.network.pasta``) that holds
the read end of the exit fd: on EOF it terminates pasta and exits; pasta has PR_SET_PDEATHSIG=SIGKILL,
so it also dies if the guard is killed. Readiness: pasta's ``--pid`` file is the write end of a pipe;
pasta writes its pid there once it is configured and listening, and EOF without a pid means it failed.
This module is the guard's program too, so it imports only what the guard needs at module level.
"""

import os
import signal
import sys

DNS_FORWARD = "169.254.1.1"
_NOISE = ("Failed to send", "to syslog")


def parse_options(text: str) -> dict:
    """The arguments after ``pasta:`` (comma-separated), passed to pasta as they are."""
    return {"args": [a for a in text.split(",") if a]} if text else {}


def _forward_args(ports, user_args: list[str]) -> list[str]:
    """-t/-u for the published ports; "none" for every direction the user did not configure (podman's
    defaults; pasta's own default, "auto", would forward whatever happens to be bound)."""
    args = []
    for flag, long, proto in (
        ("-t", "--tcp-ports", "tcp"),
        ("-u", "--udp-ports", "udp"),
        ("-T", "--tcp-ns", ""),
        ("-U", "--udp-ns", ""),
    ):
        specs = [
            f"{m.host_ip + '/' if m.host_ip else ''}{m.host_port}:{m.container_port}"
            for m in ports
            if m.protocol == proto
        ]
        for spec in specs:
            args += [flag, spec]
        if not specs and flag not in user_args and long not in user_args:
            args += [flag, "none"]
    return args


def start(netns_path: str, userns_path: str, runtime_dir: str, options: dict, ports):
    """Start pasta (through its guard) for the namespaces at the given paths (see
    rootless.network.mode.start); `ports` are resolved already."""
    import logging

    from rootless import process
    from rootless.errors import NetworkError
    from rootless.network import etc, helper
    from rootless.network.handle import NetworkHandle

    binary = helper.find("pasta", "passt")
    user_args = list(options.get("args", ()))
    map_gw = "--map-gw" in user_args
    user_args = [a for a in user_args if a != "--map-gw"]
    if not map_gw and "--no-map-gw" not in user_args:
        user_args.append("--no-map-gw")
    if any(m.protocol == "udp" and (not m.host_ip or etc.is_loopback(m.host_ip)) for m in ports):
        logging.getLogger("rootless").warning(
            "pasta (2023-03) loses UDP replies to clients on the host's loopback; "
            "clients on the host's other addresses work"
        )
    cmd = [binary, "-f", "--config-net", *_forward_args(ports, user_args)]
    dns_forward = None
    if "--dns-forward" not in user_args:
        dns_forward = DNS_FORWARD
        cmd += ["--dns-forward", DNS_FORWARD]
    cmd += [*user_args, "--netns", netns_path, "--userns", userns_path]
    log_path = os.path.join(runtime_dir, "pasta.log")
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
    cmd += ["-P", f"/proc/self/fd/{ready_w}"]
    guard = process.python_module("rootless.network.pasta", str(exit_r), str(ready_w), *cmd)
    proc = helper.spawn("pasta", guard, log_path, (ready_r, ready_w), (exit_r, exit_w))
    gateway = etc.host_gateway()
    handle = NetworkHandle("pasta", proc=proc, exit_fd=exit_w, ports=ports, gateway=gateway, dns=dns_forward,
                           host_ip=None if "--no-map-gw" in user_args else gateway, log_path=log_path)  # fmt: skip
    with helper.starting(handle, ready_r):
        data = helper.wait_ready(ready_r, line=True)
        try:
            handle.helper_pid = int((data or b"").strip())
        except ValueError:
            why = helper.why_not_ready(proc, log_path, _NOISE)
            raise NetworkError(f"pasta failed to start: {why}") from None
    return handle


def _guard(argv: list[str]) -> int:
    """The guard: ``EXIT_FD READY_FD PASTA_ARGV...``. Runs pasta; ends it when EXIT_FD reads EOF."""
    from rootless import process

    exit_fd, ready_fd, cmd = int(argv[0]), int(argv[1]), argv[2:]
    try:
        pasta = process.spawn(cmd, pass_fds=(ready_fd,), pdeathsig=signal.SIGKILL)
    except OSError as e:
        print(f"cannot run {cmd[0]}: {e.strerror}", file=sys.stderr)
        return 127
    os.close(ready_fd)
    signal.signal(signal.SIGTERM, lambda *_: pasta.terminate())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while True:
        ready = process.wait_readable([exit_fd, pasta.pidfd])
        if pasta.pidfd in ready:
            return pasta.wait()
        if exit_fd in ready:
            pasta.stop(timeout=5)
            return 0


if __name__ == "__main__":
    sys.exit(_guard(sys.argv[1:]))
