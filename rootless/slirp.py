"""Container networking modes and their helper processes: ``--network`` parsing, slirp4netns (the
default, started as podman starts it), pasta (rootless.pasta), none and host.

Owns ``parse_network()``, ``start()`` and ``NetworkHandle``; the slirp4netns API-socket client
(``add_hostfwd`` / ``list_hostfwd``).

How the runtime uses it (after the container's user+net namespaces exist, before the user process
execs; the runtime owns the container processes, this module owns the helper)::

    mode, opts = parse_network(value)             # "slirp4netns[:k=v,...]", "pasta[:args]", "none", "host"
    ports = netutil.parse_publish_all(publish)    # + netutil.publish_all(exposed) for -P
    net = start(mode, f"/proc/{pid}/ns/net", f"/proc/{pid}/ns/user", ctr_runtime_dir, opts, ports)
    ... write net.resolv_conf() and netutil.hosts_content(hostname, net.address, names, net.hosts_entries())
    ... inside the container's setup process (no trio running): netutil.setup_loopback()
    ... when the container has exited:  net.stop()

Lifetime: the exit fd. ``start()`` makes a pipe; the helper (slirp4netns ``-e``, or the pasta guard)
holds the read end and exits as soon as it reads EOF, i.e. once every copy of the write end,
``NetworkHandle.exit_fd``, is closed. The kernel closes it when its holder dies for any reason,
SIGKILL included, so the helper can never outlive the process that holds it. The runtime must therefore:

- keep ``exit_fd`` open in exactly the process whose life is the container's life: ``rootless run``
  itself in the foreground, or the container's monitor (the parent that waits for the container's
  init) when detached -- after forking that monitor, the other process calls ``net.release()``;
- close it in every other process it forks that may outlive the container (the fd is O_CLOEXEC, so
  anything that execs -- including the container process -- drops it by itself);
- call ``net.stop()`` when the container exits normally (closes the fd, terminates and reaps).

The helpers are started in their own session so that a terminal's Ctrl-C reaches the container and
rootless, not them; the exit fd is what ends them.
"""

import errno
import ipaddress
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import time

from rootless.netutil import (
    HOST_ALIAS,
    NetworkError,
    PortMapping,
    close_quietly,
    host_gateway,
    host_nameservers,
    is_loopback,
)

_log = logging.getLogger("rootless")

MODES = ("slirp4netns", "pasta", "none", "host")
DEFAULT_MODE = "slirp4netns"
READY_TIMEOUT = 10.0
API_SOCKET = "slirp4netns.sock"

_SLIRP_BOOL_OPTS = ("allow_host_loopback", "enable_ipv6")
_SLIRP_OPTS = (*_SLIRP_BOOL_OPTS, "mtu", "cidr", "port_handler", "outbound_addr")


def _bool(value: str, key: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes", ""):
        return True
    if v in ("false", "0", "no"):
        return False
    raise NetworkError(f"invalid value {value!r} for slirp4netns option {key}: use true or false")


def parse_network(value: str | None) -> tuple[str, dict]:
    """Parse a ``--network`` value into (mode, options). Empty means slirp4netns."""
    value = (value or "").strip()
    if not value or value in ("private", "default"):
        return DEFAULT_MODE, {}
    mode, _, rest = value.partition(":")
    if mode == "slirp4netns":
        opts: dict = {}
        for item in filter(None, rest.split(",")):
            key, eq, val = item.partition("=")
            key = key.strip()
            if key not in _SLIRP_OPTS:
                raise NetworkError(
                    f"unknown slirp4netns option {key!r}: use one of {', '.join(_SLIRP_OPTS)}"
                )
            if key in _SLIRP_BOOL_OPTS:
                opts[key] = _bool(val, key)
            elif key == "mtu":
                try:
                    opts[key] = int(val)
                except ValueError:
                    opts[key] = -1
                if not 68 <= opts[key] <= 65521:
                    raise NetworkError(
                        f"invalid slirp4netns mtu {val!r}: use a number from 68 to 65521"
                    )
            elif key == "cidr":
                try:
                    net = ipaddress.IPv4Network(val, strict=False)
                except ValueError:
                    net = None
                if net is None or net.prefixlen > 25:
                    raise NetworkError(
                        f"invalid slirp4netns cidr {val!r}: use an IPv4 network of /25 or larger, e.g. 10.0.2.0/24"
                    )
                opts[key] = str(net)
            elif key == "port_handler":
                if val != "slirp4netns":
                    raise NetworkError(
                        f"unsupported slirp4netns port_handler {val!r}: only port_handler=slirp4netns is available"
                    )
                opts[key] = val
            else:
                opts[key] = val
        return mode, opts
    if mode == "pasta":
        return mode, {"args": [a for a in rest.split(",") if a]} if rest else {}
    if mode in ("none", "host"):
        if rest:
            raise NetworkError(f"--network {mode} takes no options: use --network {mode}")
        return mode, {}
    if mode == "bridge":
        raise NetworkError(
            "--network bridge needs a root network daemon: use slirp4netns (the default), pasta, none or host"
        )
    raise NetworkError(f"unknown network mode {mode!r}: use slirp4netns, pasta, none or host")


class NetworkHandle:
    """A running network helper (or none, for ``none``/``host``).

    ``mode``; ``pid`` (the process this module started and reaps: slirp4netns, or the pasta guard);
    ``helper_pid`` (slirp4netns or pasta itself); ``exit_fd`` (see the module docstring);
    ``ports`` (effective mappings, random host ports filled in); ``address``/``gateway``/``dns``
    (the container's IPv4 address, its gateway and DNS server, when known); ``api_socket``.
    """

    def __init__(self, mode: str, *, proc=None, helper_pid=None, exit_fd=None, ports=(), address=None,
                 gateway=None, dns=None, host_ip=None, api_socket=None, log_path=None):  # fmt: skip
        self.mode = mode
        self.proc: subprocess.Popen | None = proc
        self.pid = proc.pid if proc else None
        self.helper_pid = helper_pid if helper_pid else self.pid
        self.exit_fd = exit_fd
        self.ports: list[PortMapping] = list(ports)
        self.address = address
        self.gateway = gateway
        self.dns = dns
        self.host_ip = host_ip  # where the container reaches the host (host.containers.internal)
        self.api_socket = api_socket
        self.log_path = log_path

    def __repr__(self) -> str:
        return f"<NetworkHandle {self.mode} pid={self.pid} ports={[str(p) for p in self.ports]}>"

    def resolv_conf(self) -> str:
        """The container's /etc/resolv.conf."""
        from rootless.netutil import resolv_conf_content

        if self.dns:
            return resolv_conf_content([self.dns])
        servers = host_nameservers()
        if self.mode != "host":
            servers = [s for s in servers if not is_loopback(s)]
        return resolv_conf_content(servers)

    def hosts_entries(self) -> list[tuple[str, str]]:
        """Extra (ip, name) lines for the container's /etc/hosts: host.containers.internal where the
        host is reachable from the container."""
        return [(self.host_ip, HOST_ALIAS)] if self.host_ip else []

    def hosts(self, hostname: str, names: tuple[str, ...] = ()) -> str:
        """The whole /etc/hosts for a container with ``hostname`` (and name aliases ``names``)."""
        from rootless.netutil import hosts_content

        return hosts_content(hostname, self.address, names, self.hosts_entries())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def release(self) -> None:
        """Close this process's copy of the exit fd without stopping the helper (after the runtime has
        handed the fd to the container's monitor)."""
        close_quietly(self.exit_fd)
        self.exit_fd = None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the helper: close the exit fd, then SIGTERM, then SIGKILL; reap it. Idempotent."""
        self.release()
        proc, self.proc = self.proc, None
        if proc is None:
            for pid in {self.pid, self.helper_pid} - {None}:
                _wait_gone(pid, timeout)  # started elsewhere: not ours to reap
            return
        try:
            proc.wait(timeout=min(timeout, 1.0))
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.helper_pid and self.helper_pid != proc.pid:
            _wait_gone(self.helper_pid, timeout)

    def to_dict(self) -> dict:
        """State for the container's record (``rootless port``, ``inspect``, cleanup by another
        process): everything but the process object and the exit fd."""
        return {
            "mode": self.mode,
            "pid": self.pid,
            "helper_pid": self.helper_pid,
            "ports": [[p.host_ip, p.host_port, p.container_port, p.protocol] for p in self.ports],
            "address": self.address,
            "gateway": self.gateway,
            "dns": self.dns,
            "host_ip": self.host_ip,
            "api_socket": self.api_socket,
            "log_path": self.log_path,
        }

    @classmethod
    def from_dict(cls, state: dict) -> "NetworkHandle":
        """A handle for a helper started by another process: ``stop()`` then only waits for it to
        go (its exit fd closes with the container's monitor) and kills it after the timeout."""
        h = cls(state["mode"], ports=[PortMapping(*p) for p in state.get("ports", ())])
        for key in (
            "pid",
            "helper_pid",
            "address",
            "gateway",
            "dns",
            "host_ip",
            "api_socket",
            "log_path",
        ):
            setattr(h, key, state.get(key))
        return h

    # slirp4netns API ------------------------------------------------------------------------------
    def list_forwards(self) -> list[dict]:
        """slirp4netns ``list_hostfwd`` entries (either reply shape)."""
        if not self.api_socket:
            return []
        reply = api_request(self.api_socket, {"execute": "list_hostfwd"})
        body = reply.get("return", reply)
        if (
            "error" in reply
            or not isinstance(body, dict)
            or not isinstance(body.get("entries"), list)
        ):
            raise NetworkError(f"slirp4netns list_hostfwd failed: {_desc(reply)}")
        return body["entries"]


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return  # exited; its parent reaps it
        except (OSError, IndexError):
            return
        time.sleep(0.01)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _desc(reply: dict) -> str:
    err = reply.get("error")
    if isinstance(err, dict):
        return str(err.get("desc") or err)
    return json.dumps(reply)[:200]


def api_request(path: str, request: dict, timeout: float = 5.0) -> dict:
    """One slirp4netns API exchange: connect, send one JSON request, shut the write side, read to EOF."""
    dir_fd = None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            if (
                len(os.fsencode(path)) > 100
            ):  # too long for sockaddr_un: go through the directory's fd
                dir_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
                s.connect(f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}")
            else:
                s.connect(path)
            s.sendall(json.dumps(request).encode())
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except OSError as e:
            raise NetworkError(f"cannot talk to slirp4netns at {path}: {e.strerror or e}") from None
        finally:
            close_quietly(dir_fd)
    try:
        reply = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        raise NetworkError(
            f"slirp4netns answered {request.get('execute')} with something that is not JSON"
        ) from None
    return reply if isinstance(reply, dict) else {"return": reply}


def _tail(path: str | None, skip: tuple[str, ...] = ()) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [ln.strip() for ln in f.read().splitlines() if ln.strip()]
    except (OSError, TypeError):
        return ""
    lines = [ln for ln in lines if not any(s in ln for s in skip)]
    return lines[-1] if lines else ""


def spawn_helper(
    name: str,
    argv: list[str],
    log_path: str,
    ready: tuple[int, int],
    exit_: tuple[int, int],
    **popen,
) -> subprocess.Popen:
    """Start a network helper in its own session, its output in log_path, with the write end of the
    ready pipe and the read end of the exit pipe; the parent keeps ready[0] and exit_[1]. On failure
    every pipe end is closed and a one-line NetworkError raised."""
    (ready_r, ready_w), (exit_r, exit_w) = ready, exit_
    proc = None
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(ready_w, exit_r),
                start_new_session=True,
                **popen,
            )
    except OSError as e:
        for fd in (ready_r, ready_w, exit_r, exit_w):
            close_quietly(fd)
        raise NetworkError(f"cannot start {name}: {e.strerror or e}") from None
    finally:
        if proc is not None:
            close_quietly(ready_w)
            close_quietly(exit_r)
    return proc


def wait_ready(fd: int, line: bool, timeout: float = READY_TIMEOUT) -> bytes | None:
    """Read the ready pipe until a byte (or, with ``line``, a whole line) arrives; None on EOF before
    that (the helper died) or on timeout."""
    deadline = time.monotonic() + timeout
    data = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if not poller.poll(left * 1000):
            continue
        chunk = os.read(fd, 256)
        if not chunk:
            return None
        data += chunk
        if not line or data.endswith(b"\n"):
            return data


def _kill_and_reap(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    proc.wait()


def missing_binary(name: str, package: str) -> NetworkError:
    return NetworkError(
        f"{name} is not installed: install the Debian package {package} (apt install {package})"
    )


def _host_address(gateway: str | None) -> str | None:
    """The host's own IPv4 address on its default route, which slirp4netns can reach."""
    if not gateway:
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((gateway, 9))  # no packet is sent
            return s.getsockname()[0]
    except OSError:
        return None


def start(
    mode: str,
    netns_path: str,
    userns_path: str,
    runtime_dir: str,
    options: dict,
    ports: list[PortMapping],
) -> NetworkHandle:
    """Start the network helper for a container whose namespaces are at ``netns_path`` and
    ``userns_path``; return once it is ready and every port is published. On any failure raise a
    one-line NetworkError and leave no process behind. ``runtime_dir`` (the container's, existing)
    receives the API socket and the helper's log. See the module docstring for the exit-fd contract."""
    from rootless.netutil import resolve_ports

    if mode in ("none", "host"):
        if ports:
            raise NetworkError(
                f"-p cannot be used with --network {mode}: the container's ports are {'unreachable' if mode == 'none' else 'already the host ports'}"
            )
        return NetworkHandle(mode)
    if mode == "pasta":
        from rootless import pasta

        return pasta.start(netns_path, userns_path, runtime_dir, options, resolve_ports(ports))
    if mode != "slirp4netns":
        raise NetworkError(f"unknown network mode {mode!r}: use slirp4netns, pasta, none or host")
    return _start_slirp4netns(netns_path, userns_path, runtime_dir, options, ports)


def _start_slirp4netns(netns_path, userns_path, runtime_dir, options, ports) -> NetworkHandle:
    from rootless.netutil import resolve_ports

    binary = shutil.which("slirp4netns")
    if not binary:
        raise missing_binary("slirp4netns", "slirp4netns")
    for m in ports:
        if ":" in m.host_ip:
            raise NetworkError(
                f"slirp4netns cannot publish on the IPv6 address {m.host_ip}: use an IPv4 host address or --network pasta"
            )
    nsenter = shutil.which("nsenter")
    if not nsenter:
        raise missing_binary("nsenter", "util-linux")
    ports = resolve_ports(ports)
    if not options.get("allow_host_loopback") and any(
        m.protocol == "udp" and (not m.host_ip or is_loopback(m.host_ip)) for m in ports
    ):
        _log.warning(
            "slirp4netns cannot return UDP replies to clients on the host's loopback without "
            "allow_host_loopback=true; use --network pasta or a non-loopback address for them"
        )
    net = ipaddress.IPv4Network(options.get("cidr", "10.0.2.0/24"), strict=False)
    address, gateway, dns = str(net[100]), str(net[2]), str(net[3])
    # A container's runtime dir can be too deep for sockaddr_un (108 bytes), so slirp4netns binds a
    # relative name in its working directory and clients connect through /proc/self/fd (api_request).
    api_socket = os.path.join(runtime_dir, API_SOCKET)
    try:
        os.unlink(api_socket)
    except FileNotFoundError:
        pass
    log_path = os.path.join(runtime_dir, "slirp4netns.log")

    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
    cmd = [binary, "--configure", f"--mtu={int(options.get('mtu', 65520))}"]
    if not options.get("allow_host_loopback"):
        cmd.append("--disable-host-loopback")
    cmd += ["--enable-sandbox", "--enable-seccomp", "-r", str(ready_w), "-e", str(exit_r)]
    if "cidr" in options:
        cmd.append(f"--cidr={net}")
    if options.get("enable_ipv6"):
        cmd.append("--enable-ipv6")
    if options.get("outbound_addr"):
        cmd.append(f"--outbound-addr={options['outbound_addr']}")
    cmd += ["--netns-type=path", f"--api-socket={API_SOCKET}", netns_path, "tap0"]
    # --enable-sandbox needs slirp4netns to be root in its user namespace (it unshares a mount
    # namespace and pivots; from the host's it fails with "setegid(0)"), so, as podman runs it inside
    # its rootless user namespace, run it inside the container's: nsenter (util-linux) joins it and
    # execs slirp4netns in the same process. It then must not get --userns-path (joining the
    # namespace it is already in fails).
    cmd = [nsenter, f"--user={userns_path}", "--preserve-credentials", *cmd]
    proc = spawn_helper(
        "slirp4netns", cmd, log_path, (ready_r, ready_w), (exit_r, exit_w), cwd=runtime_dir
    )
    handle = NetworkHandle("slirp4netns", proc=proc, exit_fd=exit_w, ports=ports, address=address, gateway=gateway,
                           dns=dns, api_socket=api_socket, log_path=log_path)  # fmt: skip
    handle.host_ip = (
        gateway if options.get("allow_host_loopback") else _host_address(host_gateway())
    )
    try:
        ok = wait_ready(ready_r, line=False)  # slirp4netns writes "1" once configured
        if not ok:
            why = _tail(log_path) or (
                "it did not become ready in time"
                if proc.poll() is None
                else f"exit status {proc.returncode}"
            )
            raise NetworkError(f"slirp4netns failed to start: {why}")
        for m in ports:
            _add_hostfwd(handle, m)
    except BaseException:
        handle.release()
        _kill_and_reap(proc)
        handle.proc = None
        raise
    finally:
        close_quietly(ready_r)
    return handle


def _add_hostfwd(handle: NetworkHandle, m: PortMapping) -> None:
    req = {
        "execute": "add_hostfwd",
        "arguments": {
            "proto": m.protocol,
            "host_addr": m.bind_ip,
            "host_port": m.host_port,
            "guest_addr": handle.address,
            "guest_port": m.container_port,
        },
    }
    reply = api_request(handle.api_socket, req)
    ret = reply.get("return")
    if "error" in reply or not isinstance(ret, dict) or "id" not in ret:
        desc = _desc(reply)
        if "failed" in desc or errno.errorcode.get(errno.EADDRINUSE, "") in desc:
            raise NetworkError(
                f"cannot publish {m}: the host port is in use or the address is not on this host"
            )
        raise NetworkError(f"cannot publish {m}: slirp4netns said {desc}")


def _version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (out.stdout + "\n" + out.stderr).splitlines():
        if line.startswith(("slirp4netns version", "pasta ")) or "version" in line.lower():
            return line.strip()
    return None


def helpers_info() -> dict:
    """For ``rootless info``: which network helpers are installed, their paths and versions."""
    out = {}
    for name, package in (("slirp4netns", "slirp4netns"), ("pasta", "passt")):
        path = shutil.which(name)
        out[name] = {
            "available": bool(path),
            "path": path or "",
            "package": package,
            "version": (_version([path, "--version"]) or "") if path else "",
        }
        if path and "unknown" in out[name]["version"]:  # Debian's pasta does not know its version
            pkg = _version(["dpkg-query", "-W", "-f", "version ${Version}", package])
            out[name]["version"] = f"{package} {pkg.split()[-1]}" if pkg else out[name]["version"]
    return out
