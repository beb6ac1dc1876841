"""The DNS responder on each user-defined network's gateway, as aardvark-dns answers for podman 4.

It runs inside the per-user network helper (rootless.network.usernetd), which feeds it datagrams
from the UDP sockets bound on the gateways (port 53) and calls ``Forwarder.poll`` from its loop.
The wire format is dnslib's (a maintained encoder and decoder of DNS packets).

Answers, for a query from a container on some networks:
- A/AAAA of a container on one of the same networks: by its name, its network aliases, its short
  ID (and names registered later, e.g. its pod's), case-insensitive, with or without the search
  domain ``dns.podman``; TTL 0 (containers come and go). A name with no address of the asked
  family gets an empty answer.
- PTR of such a container's address: its names.
- Anything else is forwarded to the upstream servers (the host's resolvers, through slirp4netns),
  each tried in turn with a share of 5 seconds; from a container only on internal networks, and for
  names under ``dns.podman``, the answer is NXDOMAIN instead.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable

from dnslib import AAAA, PTR, QTYPE, RCODE, RR, A, DNSRecord

SEARCH_DOMAIN = "dns.podman"
FORWARD_BUDGET = 5.0


def _reverse_ip(qname: str) -> str | None:
    name = qname.rstrip(".").lower()
    try:
        if name.endswith(".in-addr.arpa"):
            return str(
                ipaddress.ip_address(".".join(reversed(name[: -len(".in-addr.arpa")].split("."))))
            )
        if name.endswith(".ip6.arpa"):
            nibbles = "".join(reversed(name[: -len(".ip6.arpa")].split(".")))
            return str(ipaddress.ip_address(":".join(nibbles[i : i + 4] for i in range(0, 32, 4))))
    except ValueError:
        return None
    return None


def short_name(qname: str) -> str:
    name = qname.rstrip(".").lower()
    if name.endswith("." + SEARCH_DOMAIN):
        name = name[: -len(SEARCH_DOMAIN) - 1]
    return name


class Book:
    """What the responder knows, asked from the helper: ``lookup(requester, name)`` -> addresses
    (None: unknown name), ``reverse(requester, ip)`` -> names, ``internal(requester, gateway)``."""

    def __init__(self, lookup: Callable, reverse: Callable, internal: Callable):
        self.lookup, self.reverse, self.internal = lookup, reverse, internal


def answer(
    data: bytes, requester: str, gateway: str, book: Book
) -> tuple[bytes | None, DNSRecord | None]:
    """(reply, None) for a query answered here, (None, query) for one to forward, (None, None) for
    a packet that is no query."""
    try:
        req = DNSRecord.parse(data)
    except Exception:  # noqa: BLE001 - dnslib raises several kinds on garbage
        return None, None
    if not req.questions or req.header.qr:
        return None, None
    q = req.q
    qname = str(q.qname)
    reply = req.reply()
    reply.header.ra = 1
    if q.qtype in (QTYPE.A, QTYPE.AAAA):
        ips = book.lookup(requester, short_name(qname))
        if ips is not None:
            for ip in ips:
                if q.qtype == QTYPE.A and ":" not in ip:
                    reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(ip), ttl=0))
                elif q.qtype == QTYPE.AAAA and ":" in ip:
                    reply.add_answer(RR(q.qname, QTYPE.AAAA, rdata=AAAA(ip), ttl=0))
            return reply.pack(), None
    elif q.qtype == QTYPE.PTR:
        ip = _reverse_ip(qname)
        names = book.reverse(requester, ip) if ip else None
        if names:
            for n in names:
                reply.add_answer(RR(q.qname, QTYPE.PTR, rdata=PTR(n + "."), ttl=0))
            return reply.pack(), None
    if book.internal(requester, gateway) or short_name(qname) != qname.rstrip(".").lower():
        reply.header.rcode = RCODE.NXDOMAIN
        return reply.pack(), None
    return None, req


class _Pending:
    def __init__(self, data: bytes, client, reply_sock: socket.socket, servers: list[str]):
        self.data, self.client, self.reply_sock = data, client, reply_sock
        self.servers = list(servers)
        self.sock: socket.socket | None = None
        self.deadline = 0.0


class Forwarder:
    """Queries on their way upstream: one UDP socket per attempt, registered with the helper's
    selector through `watch(sock, callback)` / `unwatch(sock)`."""

    def __init__(self, servers: Callable[[], list[str]], watch: Callable, unwatch: Callable):
        self.servers, self.watch, self.unwatch = servers, watch, unwatch
        self.pending: list[_Pending] = []

    def forward(self, req: DNSRecord, data: bytes, client, reply_sock: socket.socket) -> None:
        p = _Pending(data, client, reply_sock, self.servers())
        self.pending.append(p)
        self._next(p, req)

    def _next(self, p: _Pending, req: DNSRecord | None = None) -> None:
        self._drop_sock(p)
        while p.servers:
            server = p.servers.pop(0)
            family = socket.AF_INET6 if ":" in server else socket.AF_INET
            s = socket.socket(
                family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
            )
            try:
                s.connect((server, 53))
                s.send(p.data)
            except OSError:
                s.close()
                continue
            p.sock = s
            p.deadline = time.monotonic() + FORWARD_BUDGET / max(1, len(p.servers) + 1)
            self.watch(s, lambda: self._reply(p))
            return
        self._fail(p, req)

    def _reply(self, p: _Pending) -> None:
        try:
            data = p.sock.recv(65535)
        except OSError:
            return self._next(p)
        self._drop_sock(p)
        self.pending.remove(p)
        try:
            p.reply_sock.sendto(data, p.client)
        except OSError:
            pass

    def _fail(self, p: _Pending, req: DNSRecord | None) -> None:
        if p in self.pending:
            self.pending.remove(p)
        try:
            req = req or DNSRecord.parse(p.data)
            reply = req.reply()
            reply.header.rcode = RCODE.SERVFAIL
            p.reply_sock.sendto(reply.pack(), p.client)
        except Exception:  # noqa: BLE001 - nothing more to do for this client
            pass

    def _drop_sock(self, p: _Pending) -> None:
        if p.sock is not None:
            self.unwatch(p.sock)
            p.sock.close()
            p.sock = None

    def poll(self) -> float | None:
        """Move timed-out queries on; seconds until the next deadline (None: nothing pending)."""
        now = time.monotonic()
        for p in list(self.pending):
            if p.deadline <= now:
                self._next(p)
        return min((p.deadline - now for p in self.pending), default=None)

    def close(self) -> None:
        for p in self.pending:
            self._drop_sock(p)
        self.pending.clear()
