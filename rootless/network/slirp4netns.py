"""``--network slirp4netns[:OPTIONS]`` (the default): its options, and slirp4netns started as podman
starts it, with published ports added over its API socket.

slirp4netns runs inside the container's user namespace (nsenter joins it and execs slirp4netns in
the same process): its ``--enable-sandbox`` must be root in its user namespace. The API socket is a
relative name in the container's runtime dir (slirp4netns's working directory), which can be too
deep for sockaddr_un; clients reach it through rootless.network.slirpapi.
"""

import errno
import ipaddress
import logging
import os

from rootless.errors import NetworkError
from rootless.network import etc, helper, slirpapi
from rootless.network.handle import NetworkHandle
from rootless.network.ports import PortMapping, resolve_ports

API_SOCKET = "slirp4netns.sock"
DEFAULT_CIDR = "10.0.2.0/24"  # the container is .100, the gateway .2, DNS .3
BOOL_OPTS = ("allow_host_loopback", "enable_ipv6")
OPTS = (*BOOL_OPTS, "mtu", "cidr", "port_handler", "outbound_addr")


def _bool(value: str, key: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes", ""):
        return True
    if v in ("false", "0", "no"):
        return False
    raise NetworkError(f"invalid value {value!r} for slirp4netns option {key}: use true or false")


def _option(key: str, val: str):
    if key in BOOL_OPTS:
        return _bool(val, key)
    if key == "mtu":
        try:
            mtu = int(val)
        except ValueError:
            mtu = -1
        if not 68 <= mtu <= 65521:
            raise NetworkError(f"invalid slirp4netns mtu {val!r}: use a number from 68 to 65521")
        return mtu
    if key == "cidr":
        try:
            net = ipaddress.IPv4Network(val, strict=False)
        except ValueError:
            net = None
        if net is None or net.prefixlen > 25:
            raise NetworkError(
                f"invalid slirp4netns cidr {val!r}: use an IPv4 network of /25 or larger, e.g. 10.0.2.0/24"
            )
        return str(net)
    if key == "port_handler" and val != "slirp4netns":
        raise NetworkError(
            f"unsupported slirp4netns port_handler {val!r}: only port_handler=slirp4netns is available"
        )
    return val


def parse_options(text: str) -> dict:
    """The options after ``slirp4netns:`` (``k=v,...``), checked."""
    opts: dict = {}
    for item in filter(None, text.split(",")):
        key, _, val = item.partition("=")
        key = key.strip()
        if key not in OPTS:
            raise NetworkError(f"unknown slirp4netns option {key!r}: use one of {', '.join(OPTS)}")
        opts[key] = _option(key, val)
    return opts


def _command(binary: str, net, options: dict, ready_w: int, exit_r: int) -> list[str]:
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
    return cmd


def _refuse_ipv6(ports: list[PortMapping]) -> None:
    for m in ports:
        if ":" in m.host_ip:
            raise NetworkError(
                f"slirp4netns cannot publish on the IPv6 address {m.host_ip}: use an IPv4 host address or --network pasta"
            )


def _warn_udp(ports: list[PortMapping], options: dict) -> None:
    if not options.get("allow_host_loopback") and any(
        m.protocol == "udp" and (not m.host_ip or etc.is_loopback(m.host_ip)) for m in ports
    ):
        logging.getLogger("rootless").warning(
            "slirp4netns cannot return UDP replies to clients on the host's loopback without "
            "allow_host_loopback=true; use --network pasta or a non-loopback address for them"
        )


def start(
    netns_path: str, userns_path: str, runtime_dir: str, options: dict, ports: list[PortMapping]
) -> NetworkHandle:
    """Start slirp4netns for the namespaces at the given paths (see rootless.network.mode.start)."""
    binary = helper.find("slirp4netns", "slirp4netns")
    _refuse_ipv6(ports)
    nsenter = helper.find("nsenter", "util-linux")
    ports = resolve_ports(ports)
    _warn_udp(ports, options)
    net = ipaddress.IPv4Network(options.get("cidr", DEFAULT_CIDR), strict=False)
    api_socket = os.path.join(runtime_dir, API_SOCKET)
    try:
        os.unlink(api_socket)
    except FileNotFoundError:
        pass
    log_path = os.path.join(runtime_dir, "slirp4netns.log")
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
    cmd = _command(binary, net, options, ready_w, exit_r)
    cmd += ["--netns-type=path", f"--api-socket={API_SOCKET}", netns_path, "tap0"]
    # In the container's user namespace, as podman runs it in its own: nsenter joins it and execs
    # slirp4netns in the same process (which then must not get --userns-path).
    cmd = [nsenter, f"--user={userns_path}", "--preserve-credentials", *cmd]
    proc = helper.spawn(
        "slirp4netns", cmd, log_path, (ready_r, ready_w), (exit_r, exit_w), cwd=runtime_dir
    )
    handle = NetworkHandle("slirp4netns", proc=proc, exit_fd=exit_w, ports=ports, address=str(net[100]),
                           gateway=str(net[2]), dns=str(net[3]), api_socket=api_socket, log_path=log_path)  # fmt: skip
    loopback = options.get("allow_host_loopback")
    handle.host_ip = handle.gateway if loopback else etc.host_address(etc.host_gateway())
    with helper.starting(handle, ready_r):
        if not helper.wait_ready(ready_r, line=False):  # slirp4netns writes "1" once configured
            raise NetworkError(
                f"slirp4netns failed to start: {helper.why_not_ready(proc, log_path)}"
            )
        for m in ports:
            add_hostfwd(handle, m)
    return handle


def add_hostfwd(handle: NetworkHandle, m: PortMapping) -> None:
    """Publish one port through the running slirp4netns's API socket."""
    args = {"proto": m.protocol, "host_addr": m.bind_ip, "host_port": m.host_port,
            "guest_addr": handle.address, "guest_port": m.container_port}  # fmt: skip
    reply = slirpapi.request(handle.api_socket, {"execute": "add_hostfwd", "arguments": args})
    ret = reply.get("return")
    if "error" in reply or not isinstance(ret, dict) or "id" not in ret:
        desc = slirpapi.describe(reply)
        if "failed" in desc or errno.errorcode.get(errno.EADDRINUSE, "") in desc:
            raise NetworkError(
                f"cannot publish {m}: the host port is in use or the address is not on this host"
            )
        raise NetworkError(f"cannot publish {m}: slirp4netns said {desc}")
