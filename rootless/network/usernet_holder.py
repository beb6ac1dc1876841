"""The holder of the per-user network namespace: root in its user namespace, in its network
namespace, it serves the control socket (rootless.network.usernet has the protocol) from one
single-threaded selector loop.

The namespace: IPv4/IPv6 forwarding on, proxy ARP on (slirp4netns's tap0 then answers for the
containers' addresses, so packets from and to them need no NAT: slirp4netns sees them as they are
and published ports go straight to the container's address on its bridge). Per network in use: a
bridge named as the network's ``network_interface``, with the gateway addresses; forwarding off on
it for an internal network (nothing it sends is routed anywhere); a DNS responder
(rootless.network.dns) on each gateway when the network has DNS. Per container endpoint: a veth
pair, one end on the bridge, the other created in the container's network namespace and
configured there (address, up, default route unless internal). Sessions end when their
connection closes; the bridge of a network goes with its last endpoint, and the holder exits after
its last session (under the client lock: rootless.network.usernet).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import os
import selectors
import socket

from rootless.network import netlink, slirpapi, usernet

UPSTREAM = "10.0.2.3"  # slirp4netns's DNS forwarder: the host's resolvers, loopback ones included


class Endpoint:
    def __init__(self, network: str, interface: str, veth: str, ips: list, gateways: list, mac: str,
                 aliases: list[str]):  # fmt: skip
        self.network, self.interface, self.veth = network, interface, veth
        self.ips, self.gateways, self.mac, self.aliases = ips, gateways, mac, aliases

    def reply(self, dns: bool) -> dict:
        return {"network": self.network, "interface": self.interface, "mac": self.mac, "aliases": self.aliases,
                "ips": [str(i) for i in self.ips], "gateways": self.gateways,
                "dns": list(self.gateways) if dns else []}  # fmt: skip


class Session:
    def __init__(self, cid: str, name: str, conn: socket.socket):
        self.cid, self.name, self.conn = cid, name, conn
        self.pid = 0
        self.endpoints: dict[str, Endpoint] = {}
        self.forwards: list[int] = []
        self.names: list[str] = []

    def all_names(self, ep: Endpoint) -> list[str]:
        return [self.name, self.cid[:12], *ep.aliases, *self.names]


class Net:
    """A network whose bridge is up here."""

    def __init__(self, config: dict):
        self.config = config
        self.name, self.bridge = config["name"], config["network_interface"]
        self.subnets = [ipaddress.ip_network(s["subnet"]) for s in config.get("subnets") or ()]
        self.gateways = [s["gateway"] for s in config.get("subnets") or () if s.get("gateway")]
        self.internal = bool(config.get("internal"))
        self.dns = bool(config.get("dns_enabled")) and bool(self.gateways)
        self.taken: dict[str, str] = {}  # ip -> container id
        self.socks: list[socket.socket] = []

    def cidrs(self) -> list[str]:
        return [f"{g}/{n.prefixlen}" for g in self.gateways for n in self.subnets
                if ipaddress.ip_address(g) in n]  # fmt: skip

    def allocate(self, cid: str, wanted: list[str]) -> list:
        out = []
        for net in self.subnets:
            want = next(
                (ipaddress.ip_address(w) for w in wanted if ipaddress.ip_address(w) in net), None
            )
            if want is not None:
                if str(want) in self.taken:
                    raise Refused(f"requested ip address {want} is already allocated to container ID "
                                  f"{self.taken[str(want)]}", 126)  # fmt: skip
                ip = want
            else:
                ip = next(
                    (
                        h
                        for h in _hosts(net)
                        if str(h) not in self.taken and str(h) not in self.gateways
                    ),
                    None,
                )
                if ip is None:
                    raise Refused(
                        f"no free address left in subnet {net} of network {self.name}", 126
                    )
            self.taken[str(ip)] = cid
            out.append(ipaddress.ip_interface(f"{ip}/{net.prefixlen}"))
        return out


def _hosts(net):
    if net.version == 6:
        first = int(net.network_address) + 1
        return (ipaddress.ip_address(first + i) for i in range(min(net.num_addresses - 1, 1 << 16)))
    return net.hosts()


class Refused(Exception):
    def __init__(self, message: str, code: int = 125):
        super().__init__(message)
        self.code = code


class Holder:
    def __init__(self, owner: socket.socket):
        self.owner = owner
        self.sel = selectors.DefaultSelector()
        self.sessions: dict[str, Session] = {}
        self.conns: dict[socket.socket, Session | None] = {}
        self.nets: dict[str, Net] = {}
        self.ipr = netlink.iproute_in()
        self.api_socket = ""
        self.listener: socket.socket | None = None
        from rootless.network import dns

        self.dns = dns
        self.book = dns.Book(self.lookup, self.reverse, self.internal)
        self.forwarder = dns.Forwarder(self.upstreams, self.watch, self.unwatch)

    # ---- the loop ---------------------------------------------------------------------------
    def watch(self, sock, callback) -> None:
        self.sel.register(sock, selectors.EVENT_READ, callback)

    def unwatch(self, sock) -> None:
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def serve(self) -> None:
        self.watch(self.owner, self.owner_gone)
        self.watch(self.listener, self.accept)
        while self.listener is not None:
            timeout = self.forwarder.poll()
            if not self.sessions:  # the client that started us holds the lock until it attached
                timeout = 0.05 if timeout is None else min(timeout, 0.05)
            for key, _ in self.sel.select(timeout):
                key.data()
            if not self.sessions:
                self.maybe_exit()

    def owner_gone(self) -> None:
        self.stop_listening()

    def stop_listening(self) -> None:
        if self.listener is not None:
            self.unwatch(self.listener)
            self.listener.close()
            self.listener = None

    def maybe_exit(self) -> None:
        """No session left: exit, unless a client is attaching (it holds the lock)."""
        fd = os.open(os.path.join(os.path.dirname(usernet.run_dir()), "usernet.lock"),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # fmt: skip
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return
            if self.sel.select(0) or self.sessions:
                return  # a request is waiting: serve it first
            try:
                os.unlink(usernet.ctl_path())
            except OSError:
                pass
            self.stop_listening()
        finally:
            os.close(fd)

    def accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.setblocking(True)
        self.conns[conn] = None
        self.watch(conn, lambda: self.on_request(conn))

    def on_request(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(1 << 20)
        except OSError:
            data = b""
        if not data:
            return self.close_conn(conn)
        try:
            msg = json.loads(data)
            reply = {"ok": True, **(self.handle(conn, msg) or {})}
        except Refused as e:
            reply = {"ok": False, "error": str(e), "code": e.code}
        except Exception as e:  # noqa: BLE001 - one line back to the client, and the loop goes on
            from rootless.errors import describe

            reply = {"ok": False, "error": describe(e), "code": 125}
        try:
            conn.send(json.dumps(reply).encode())
        except OSError:
            self.close_conn(conn)

    def close_conn(self, conn: socket.socket) -> None:
        self.unwatch(conn)
        session = self.conns.pop(conn, None)
        conn.close()
        if session is not None and self.sessions.get(session.cid) is session:
            self.end(session)

    # ---- requests ---------------------------------------------------------------------------
    def handle(self, conn, msg: dict) -> dict | None:
        op = msg.get("op")
        if op == "attach":
            old = self.sessions.get(msg["id"])
            if old is not None:
                self.end(old)
            s = Session(msg["id"], msg.get("name") or msg["id"][:12], conn)
            self.sessions[s.cid], self.conns[conn] = s, s
            return {"pid": os.getpid()}
        if op == "status":
            return {"sessions": {c: {"name": s.name, "networks": sorted(s.endpoints)} for c, s in self.sessions.items()},
                    "bridges": sorted(n.bridge for n in self.nets.values())}  # fmt: skip
        s = self.sessions.get(msg.get("id", ""))
        if s is None:
            raise Refused(f"container {msg.get('id', '')[:12]} is not running on a network")
        if op == "connect":
            return {"endpoints": self.connect(s, msg)}
        if op == "disconnect":
            self.disconnect(s, msg["network"])
            return None
        if op == "ports":
            self.publish(s, msg["ports"])
            return None
        if op == "names":
            s.names = [n for n in msg.get("names") or () if n]
            return None
        raise Refused(f"unknown request {op!r}")

    def connect(self, s: Session, msg: dict) -> list[dict]:
        s.pid = int(msg.get("pid") or s.pid)
        if msg.get("names"):
            s.names = [n for n in msg["names"] if n]
        done: list[Endpoint] = []
        try:
            for want in msg["endpoints"]:
                if want["name"] in s.endpoints:
                    raise Refused(f"container {s.cid} is already connected to network "
                                  f'"{want["name"]}": network is already connected')  # fmt: skip
                ep = self.add_endpoint(s, want)
                done.append(ep)
        except BaseException:
            for ep in done:
                self.drop_endpoint(s, ep)
            raise
        return [ep.reply(self.nets[ep.network].dns) for ep in done]

    def add_endpoint(self, s: Session, want: dict) -> Endpoint:
        net = self.net_up(want["config"])
        ips = net.allocate(s.cid, want.get("ips") or [])
        veth = "veth" + os.urandom(4).hex()
        try:
            mtu = int((want["config"].get("options") or {}).get("mtu") or 0) or None
            nsfd = os.open(f"/proc/{s.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                netlink.add_veth(
                    self.ipr, net.bridge, veth, want["interface"], nsfd, want.get("mac"), mtu
                )
            finally:
                os.close(nsfd)
            gws = [] if net.internal else [g for g in net.gateways]
            with netlink.iproute_in(f"/proc/{s.pid}/ns/net") as ipr:
                mac = netlink.configure_peer(ipr, want["interface"], [str(i) for i in ips], gws)
        except BaseException as e:
            netlink.delete_link(self.ipr, veth)
            for ip in ips:
                net.taken.pop(str(ip.ip), None)
            self.net_maybe_down(net)
            if isinstance(e, Refused):
                raise
            raise Refused(f"connecting to network {net.name}: {e}") from None
        ep = Endpoint(
            net.name,
            want["interface"],
            veth,
            ips,
            net.gateways,
            mac,
            list(want.get("aliases") or ()),
        )
        s.endpoints[net.name] = ep
        return ep

    def drop_endpoint(self, s: Session, ep: Endpoint) -> None:
        netlink.delete_link(self.ipr, ep.veth)
        net = self.nets.get(ep.network)
        s.endpoints.pop(ep.network, None)
        if net is not None:
            for ip in ep.ips:
                net.taken.pop(str(ip.ip), None)
            self.net_maybe_down(net)

    def disconnect(self, s: Session, network: str) -> None:
        ep = s.endpoints.get(network)
        if ep is None:
            raise Refused(f"container {s.name} is not connected to network {network}")
        self.drop_endpoint(s, ep)

    def publish(self, s: Session, ports: list) -> None:
        target = next(
            (str(i.ip) for ep in s.endpoints.values() for i in ep.ips if i.version == 4), None
        )
        if target is None:
            raise Refused("published ports need an IPv4 address on a network")
        for host_ip, host_port, ctr_port, proto in ports:
            args = {"proto": proto, "host_addr": host_ip or "0.0.0.0", "host_port": host_port,
                    "guest_addr": target, "guest_port": ctr_port}  # fmt: skip
            reply = slirpapi.request(self.api_socket, {"execute": "add_hostfwd", "arguments": args})
            ret = reply.get("return")
            if "error" in reply or not isinstance(ret, dict) or "id" not in ret:
                raise Refused(f"cannot publish {host_ip or '0.0.0.0'}:{host_port}->{ctr_port}/{proto}: "
                              f"the host port is in use or the address is not on this host")  # fmt: skip
            s.forwards.append(ret["id"])

    def end(self, s: Session) -> None:
        """A session is over: its interfaces, addresses, names and ports go."""
        self.sessions.pop(s.cid, None)
        for fid in s.forwards:
            try:
                slirpapi.request(
                    self.api_socket, {"execute": "remove_hostfwd", "arguments": {"id": fid}}
                )
            except Exception:  # noqa: BLE001 - slirp4netns is gone with everything else
                pass
        for ep in list(s.endpoints.values()):
            self.drop_endpoint(s, ep)

    # ---- bridges ------------------------------------------------------------------------------
    def net_up(self, config: dict) -> Net:
        net = self.nets.get(config["name"])
        if net is not None:
            return net
        net = Net(config)
        mtu = int((config.get("options") or {}).get("mtu") or 0) or None
        netlink.bridge_up(self.ipr, net.bridge, net.cidrs(), mtu)
        if net.internal:
            _sysctl(f"net/ipv4/conf/{net.bridge}/forwarding", "0")
            _sysctl(f"net/ipv6/conf/{net.bridge}/forwarding", "0")
        if net.dns:
            for gw in net.gateways:
                net.socks.append(self.dns_socket(gw))
        self.nets[net.name] = net
        return net

    def net_maybe_down(self, net: Net) -> None:
        if any(net.name in s.endpoints for s in self.sessions.values()) or net.taken:
            return
        for sock in net.socks:
            self.unwatch(sock)
            sock.close()
        netlink.delete_link(self.ipr, net.bridge)
        self.nets.pop(net.name, None)

    def dns_socket(self, gateway: str) -> socket.socket:
        family = socket.AF_INET6 if ":" in gateway else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        sock.setsockopt(socket.SOL_IP if family == socket.AF_INET else socket.SOL_IPV6,
                        15 if family == socket.AF_INET else 64, 1)  # IP_FREEBIND / IPV6_FREEBIND # fmt: skip
        sock.bind((gateway, 53))
        self.watch(sock, lambda: self.on_dns(sock, gateway))
        return sock

    def on_dns(self, sock: socket.socket, gateway: str) -> None:
        try:
            data, client = sock.recvfrom(65535)
        except OSError:
            return
        reply, forward = self.dns.answer(data, client[0], gateway, self.book)
        if reply is not None:
            try:
                sock.sendto(reply, client)
            except OSError:
                pass
        elif forward is not None:
            self.forwarder.forward(forward, data, client, sock)

    # ---- what the DNS responder asks ----------------------------------------------------------
    def _networks_of(self, requester: str, gateway: str | None) -> list[str]:
        nets = [ep.network for s in self.sessions.values() for ep in s.endpoints.values()
                if any(str(i.ip) == requester for i in ep.ips)]  # fmt: skip
        if not nets and gateway:
            nets = [n.name for n in self.nets.values() if gateway in n.gateways]
        return nets

    def lookup(self, requester: str, name: str) -> list[str] | None:
        nets = set(self._networks_of(requester, None)) or {n.name for n in self.nets.values()}
        found: list[str] = []
        for s in self.sessions.values():
            for ep in s.endpoints.values():
                if ep.network in nets and name in (n.lower() for n in s.all_names(ep)):
                    found += [str(i.ip) for i in ep.ips]
        return found or None

    def reverse(self, requester: str, ip: str) -> list[str] | None:
        nets = set(self._networks_of(requester, None))
        for s in self.sessions.values():
            for ep in s.endpoints.values():
                if ep.network in nets and any(str(i.ip) == ip for i in ep.ips):
                    return [s.name]
        return None

    def internal(self, requester: str, gateway: str) -> bool:
        nets = self._networks_of(requester, gateway)
        return bool(nets) and all(self.nets[n].internal for n in nets if n in self.nets)

    def upstreams(self) -> list[str]:
        from rootless.network import etc

        return [UPSTREAM, *(s for s in etc.host_nameservers() if not etc.is_loopback(s))]

    def close(self) -> None:
        for s in list(self.sessions.values()):
            self.end(s)
        self.forwarder.close()
        for conn in list(self.conns):
            conn.close()


def _sysctl(name: str, value: str) -> None:
    try:
        with open(f"/proc/sys/{name}", "w") as f:
            f.write(value)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


def main(owner: socket.socket) -> int:
    """The holder (see the module docstring); runs in the new user and network namespaces."""
    from rootless.network.usernet import sockaddr

    netlink.loopback_up()
    _sysctl("net/ipv4/ip_forward", "1")
    _sysctl("net/ipv4/conf/all/proxy_arp", "1")
    _sysctl("net/ipv6/conf/all/forwarding", "1")
    _sysctl("net/ipv6/conf/default/accept_dad", "0")
    owner.send(b"netns")
    said = owner.recv(4096).decode(errors="replace")
    if not said.startswith("slirp "):
        return 125
    h = Holder(owner)
    h.api_socket = said.split(" ", 1)[1]
    path = usernet.ctl_path()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    dir_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
    try:
        h.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        h.listener.bind(sockaddr(path, dir_fd))
        h.listener.listen(64)
        h.listener.setblocking(False)
    finally:
        os.close(dir_fd)
    owner.send(b"ready")
    try:
        h.serve()
    finally:
        h.close()
    return 0
