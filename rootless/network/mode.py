"""``--network`` modes: parsing a value into (mode, options), starting a mode's helper, and telling
`rootless info` which helpers are installed.

How the runtime uses it (after the container's user+net namespaces exist, before its command
execs; the runtime owns the container's processes, rootless.network owns the helper)::

    mode, opts = parse_network(value)           # "slirp4netns[:k=v,...]", "pasta[:args]", "none", "host"
    ports = ports.parse_publish_all(publish)    # + ports.publish_all(exposed) for -P
    net = start(mode, f"/proc/{pid}/ns/net", f"/proc/{pid}/ns/user", ctr_runtime_dir, opts, ports)
    ... write net.resolv_conf() and net.hosts(hostname, names) into the container's /etc files
    ... in the container's init: rootless.network.netlink.loopback_up()
    ... when the container has exited: net.stop()

See rootless.network.handle for the exit-fd contract that ties a helper's life to the container's.
"""

from __future__ import annotations

from rootless.errors import NetworkError

# The helpers' modules are imported when a mode needs them: `--network none` and `host` import
# nothing more (they are on the start path of every such container).

MODES = ("slirp4netns", "pasta", "none", "host", "bridge", "container")
DEFAULT_MODE = "slirp4netns"
HELPERS = (("slirp4netns", "slirp4netns"), ("pasta", "passt"))  # (command, Debian package)


def parse_network(value: str | None) -> tuple[str, dict]:
    """Parse a ``--network`` value into (mode, options). Empty means slirp4netns; a name that is no
    mode is a user-defined network (mode "bridge", see rootless.network.bridge)."""
    value = (value or "").strip()
    if not value or value in ("private", "default"):
        return DEFAULT_MODE, {}
    mode, _, rest = value.partition(":")
    if mode == "slirp4netns":
        from rootless.network import slirp4netns

        return mode, slirp4netns.parse_options(rest)
    if mode == "pasta":
        from rootless.network import pasta

        return mode, pasta.parse_options(rest)
    if mode in ("none", "host"):
        if rest:
            raise NetworkError(f"--network {mode} takes no options: use --network {mode}")
        return mode, {}
    if mode == "container":
        if not rest:
            raise NetworkError(
                'must provide name or ID or a container when specifying "container:"'
            )
        return mode, {"container": rest}
    if mode in ("ns", "pod"):
        raise NetworkError(f"--network {mode}: is not supported: use a network, container:NAME, "
                           "slirp4netns, pasta, none or host")  # fmt: skip
    from rootless.network import bridge

    return "bridge", {"endpoints": bridge.parse_first(value)}


def parse_networks(values: list[str]) -> tuple[str, dict]:
    """Every ``--network`` value: several are only possible for networks (mode "bridge")."""
    mode, opts = parse_network(values[0] if values else None)
    if len(values) > 1:
        if mode != "bridge":
            raise NetworkError(
                f"cannot set multiple networks without bridge network mode, selected mode {mode}: invalid argument"
            )
        from rootless.network import bridge

        opts = {"endpoints": bridge.parse_more(opts["endpoints"], values[1:])}
    return mode, opts


def start(
    mode: str,
    netns_path: str,
    userns_path: str,
    runtime_dir: str,
    options: dict,
    ports: list,
):
    """Start the network helper for a container whose namespaces are at ``netns_path`` and
    ``userns_path``; return once it is ready and every port is published. On any failure raise a
    one-line NetworkError and leave no process behind. ``runtime_dir`` (the container's, existing)
    receives the API socket and the helper's log. Returns a rootless.network.handle.NetworkHandle."""
    from rootless.network.handle import NetworkHandle
    from rootless.network.ports import resolve_ports

    if mode in ("none", "host"):
        if ports:
            what = "unreachable" if mode == "none" else "already the host ports"
            raise NetworkError(
                f"-p cannot be used with --network {mode}: the container's ports are {what}"
            )
        return NetworkHandle(mode)
    if mode == "pasta":
        from rootless.network import pasta

        return pasta.start(netns_path, userns_path, runtime_dir, options, resolve_ports(ports))
    if mode == "slirp4netns":
        from rootless.network import slirp4netns

        return slirp4netns.start(netns_path, userns_path, runtime_dir, options, ports)
    raise NetworkError(f"unknown network mode {mode!r}: use slirp4netns, pasta, none or host")


def helpers_info() -> dict:
    """For ``rootless info``: which network helpers are installed, their paths and versions."""
    import shutil

    from rootless.network import helper

    out = {}
    for name, package in HELPERS:
        path = shutil.which(name)
        ver = (helper.version([path, "--version"]) or "") if path else ""
        if path and "unknown" in ver:  # Debian's pasta does not know its version
            pkg = helper.version(["dpkg-query", "-W", "-f", "version ${Version}", package])
            ver = f"{package} {pkg.split()[-1]}" if pkg else ver
        out[name] = {
            "available": bool(path),
            "path": path or "",
            "package": package,
            "version": ver,
        }
    return out
