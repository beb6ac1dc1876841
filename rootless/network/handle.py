"""``NetworkHandle``: a container's running network helper (or none, for ``none``/``host``), what the
container's /etc files say about its network, and the state kept in the container's record.

Lifetime: the exit fd. ``start()`` makes a pipe; the helper (slirp4netns ``-e``, or the pasta guard)
holds the read end and exits as soon as it reads EOF, i.e. once every copy of the write end,
``NetworkHandle.exit_fd``, is closed. The kernel closes it when its holder dies for any reason,
SIGKILL included, so the helper can never outlive the process that holds it. The runtime therefore:

- keeps ``exit_fd`` open in exactly the process whose life is the container's life: the container's
  monitor (``rootless run`` itself in the foreground, the forked monitor when detached);
- closes it in every other process it forks that may outlive the container (the fd is O_CLOEXEC, so
  anything that execs -- including the container process -- drops it by itself);
- calls ``stop()`` when the container exits normally (closes the fd, terminates and reaps).
"""

from rootless import process
from rootless.network import etc, slirpapi
from rootless.network.helper import close_quietly
from rootless.network.ports import PortMapping

_STATE = ("pid", "helper_pid", "address", "gateway", "dns", "host_ip", "api_socket", "log_path")


class NetworkHandle:
    """A running network helper (or none, for ``none``/``host``).

    ``mode``; ``pid`` (the process rootless started and reaps: slirp4netns, or the pasta guard);
    ``helper_pid`` (slirp4netns or pasta itself); ``exit_fd`` (see the module docstring);
    ``ports`` (effective mappings, random host ports filled in); ``address``/``gateway``/``dns``
    (the container's IPv4 address, its gateway and DNS server, when known); ``host_ip`` (where the
    container reaches the host: host.containers.internal); ``api_socket`` (slirp4netns).
    """

    def __init__(self, mode: str, *, proc=None, helper_pid=None, exit_fd=None, ports=(), address=None,
                 gateway=None, dns=None, host_ip=None, api_socket=None, log_path=None):  # fmt: skip
        self.mode = mode
        self.proc: process.Child | None = proc
        self.pid = proc.pid if proc else None
        self.helper_pid = helper_pid if helper_pid else self.pid
        self.exit_fd = exit_fd
        self.ports: list[PortMapping] = list(ports)
        self.address = address
        self.gateway = gateway
        self.dns = dns
        self.host_ip = host_ip
        self.api_socket = api_socket
        self.log_path = log_path

    def __repr__(self) -> str:
        return f"<NetworkHandle {self.mode} pid={self.pid} ports={[str(p) for p in self.ports]}>"

    def resolv_conf(self) -> str:
        """The container's /etc/resolv.conf."""
        return etc.resolv_conf_for(self.mode, self.dns)

    def hosts_entries(self) -> list[tuple[str, str]]:
        """Extra (ip, name) lines for the container's /etc/hosts: host.containers.internal where the
        host is reachable from the container."""
        return [(self.host_ip, etc.HOST_ALIAS)] if self.host_ip else []

    def hosts(self, hostname: str, names: tuple[str, ...] = ()) -> str:
        """The whole /etc/hosts for a container with ``hostname`` (and name aliases ``names``)."""
        return etc.hosts(hostname, self.address, names, self.hosts_entries())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def release(self) -> None:
        """Close this process's copy of the exit fd without stopping the helper."""
        close_quietly(self.exit_fd)
        self.exit_fd = None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the helper: close the exit fd, then SIGTERM, then SIGKILL; reap it. Idempotent."""
        self.release()
        proc, self.proc = self.proc, None
        if proc is None:
            for pid in {self.pid, self.helper_pid} - {None}:
                process.wait_gone(pid, timeout)  # started elsewhere: not ours to reap
            return
        proc.stop(timeout, grace=min(timeout, 1.0))
        if self.helper_pid and self.helper_pid != proc.pid:
            process.wait_gone(self.helper_pid, timeout)

    def kill(self) -> None:
        """After a failed start: end the helper at once and reap it."""
        self.release()
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill_and_reap()

    def to_dict(self) -> dict:
        """State for the container's record (``rootless port``, ``inspect``, cleanup by another
        process): everything but the process object and the exit fd."""
        state = {"mode": self.mode, **{k: getattr(self, k) for k in _STATE}}
        state["ports"] = [
            [p.host_ip, p.host_port, p.container_port, p.protocol] for p in self.ports
        ]
        return state

    @classmethod
    def from_dict(cls, state: dict) -> "NetworkHandle":
        """A handle for a helper started by another process: ``stop()`` then only waits for it to
        go (its exit fd closes with the container's monitor) and kills it after the timeout."""
        h = cls(state["mode"], ports=[PortMapping(*p) for p in state.get("ports", ())])
        for key in _STATE:
            setattr(h, key, state.get(key))
        return h

    def list_forwards(self) -> list[dict]:
        """slirp4netns ``list_hostfwd`` entries (none for the other modes)."""
        return slirpapi.list_hostfwd(self.api_socket) if self.api_socket else []
