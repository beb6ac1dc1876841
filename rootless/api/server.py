"""The API's socket: listening (a unix socket, 0600, or an explicit tcp:// address, or the one
systemd passes), one thread per connection speaking HTTP/1.1 through h11, hijacked raw streams,
and the idle exit.

Why h11: it is a maintained, dependency-free HTTP/1.1 state machine (httpx already brings it in),
it leaves the socket to us, so a connection can be taken over as a raw stream after the 101
UPGRADED answer the way Docker's attach and exec start need, and the handlers stay plain blocking
calls into the library (which forks and waits) instead of being rewritten for an event loop.

Forks: the library forks monitors and exec joiners from these threads; every fd the server owns
is registered in rootless.api.fds, which closes them in any forked child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time

from rootless.api import fds, protocol, routing

log = logging.getLogger("rootless.api")


class Activity:
    """Requests in flight and the time the last one ended: the idle exit's clock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.busy = 0
        self.since = time.monotonic()

    @contextlib.contextmanager
    def request(self):
        with self.lock:
            self.busy += 1
        try:
            yield
        finally:
            with self.lock:
                self.busy -= 1
                self.since = time.monotonic()

    def idle_for(self) -> float:
        with self.lock:
            return 0.0 if self.busy else time.monotonic() - self.since


def listen(uri: str) -> tuple[socket.socket, str | None]:
    """The listening socket for a unix:// or tcp:// URI (or systemd's, LISTEN_FDS), and the path
    to remove at exit."""
    if os.environ.get("LISTEN_FDS") == "1" and os.environ.get("LISTEN_PID") == str(os.getpid()):
        sock = socket.socket(fileno=3)
        sock.set_inheritable(False)
        return sock, None
    if uri.startswith("tcp://"):
        host, _, port = uri[6:].rpartition(":")
        sock = socket.create_server((host or "127.0.0.1", int(port)))
        return sock, None
    path = uri.removeprefix("unix://")
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # 0600 from the start: no moment where others may connect
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock, path


def serve(uri: str, idle_timeout: float) -> None:
    """Serve until idle for `idle_timeout` seconds (0: forever) or SIGTERM/SIGINT."""
    sock, path = listen(uri)
    fds.own(sock.fileno())
    activity = Activity()
    conns: set[socket.socket] = set()
    sock.settimeout(0.5)
    log.info("serving the Docker API on %s", uri)
    try:
        while True:
            if idle_timeout and not conns and activity.idle_for() >= idle_timeout:
                break
            conn = fds.accept(sock, 0.5)
            if conn is None:
                continue
            conn.settimeout(None)
            conns.add(conn)
            t = threading.Thread(target=_connection, args=(conn, activity, conns), daemon=True)
            t.start()
            with activity.lock:
                activity.since = time.monotonic()
    finally:
        fds.close_socket(sock)
        if path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _connection(sock: socket.socket, activity: Activity, conns: set) -> None:
    try:
        Connection(sock, activity).run()
    except (OSError, ConnectionError):
        pass
    finally:
        conns.discard(sock)
        fds.close_socket(sock)


class Connection:
    def __init__(self, sock: socket.socket, activity: Activity):
        import h11

        self.h11 = h11
        self.sock = sock
        self.activity = activity
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)

    def _event(self):
        h11 = self.h11
        while True:
            ev = self.conn.next_event()
            if ev is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
                continue
            return ev

    def _read_request(self) -> protocol.Request | None:
        h11 = self.h11
        ev = self._event()
        if not isinstance(ev, h11.Request):
            return None
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in ev.headers}
        if self.conn.they_are_waiting_for_100_continue:
            self._send(h11.InformationalResponse(status_code=100, headers=[]))
        body = []
        while True:
            part = self._event()
            if isinstance(part, h11.Data):
                body.append(bytes(part.data))
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                return None
        return protocol.Request(ev.method.decode(), ev.target.decode("latin-1"), headers,
                               b"".join(body))  # fmt: skip

    def _send(self, event) -> None:
        data = self.conn.send(event)
        if data:
            self.sock.sendall(data)

    def run(self) -> None:
        h11 = self.h11
        while True:
            try:
                req = self._read_request()
            except h11.RemoteProtocolError:
                self.sock.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                return
            if req is None:
                return
            with self.activity.request():
                log.debug("%s %s", req.method, req.path)
                result = routing.dispatch(req)
                if isinstance(result, protocol.Hijack):
                    self._hijack(req, result)
                    return
                self._respond(result)
            if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is h11.MUST_CLOSE:
                return
            try:
                self.conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    def _headers(self, content_type: str, extra=()) -> list:
        return [
            ("Content-Type", content_type),
            ("Api-Version", protocol.API_VERSION),
            ("Server", "rootless"),
            ("Docker-Experimental", "false"),
            *extra,
        ]

    def _respond(self, result) -> None:
        h11 = self.h11
        if isinstance(result, protocol.Stream):
            self._send(h11.Response(status_code=result.status,
                                    headers=self._headers(result.content_type, result.headers)))  # fmt: skip
            try:
                for chunk in result.chunks:
                    if chunk:
                        self._send(h11.Data(data=chunk))
                    elif self._peer_gone():  # an empty chunk: the handler waits; is anyone there?
                        raise ConnectionResetError("the client went away")
            finally:
                close = getattr(result.chunks, "close", None)
                if close is not None:
                    close()
            self._send(h11.EndOfMessage())
            return
        if not isinstance(result, protocol.Response):
            result = protocol.json_response(result)
        headers = self._headers(result.content_type, result.headers)
        headers.append(("Content-Length", str(len(result.body))))
        self._send(h11.Response(status_code=result.status, headers=headers))
        if result.body:
            self._send(h11.Data(data=result.body))
        self._send(h11.EndOfMessage())

    def _peer_gone(self) -> bool:
        """Whether the client closed its end while waiting for a streamed answer (it sends nothing
        meanwhile: readable with nothing to read is its EOF)."""
        import select

        if not select.select([self.sock], [], [], 0)[0]:
            return False
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _hijack(self, req: protocol.Request, result: protocol.Hijack) -> None:
        if req.upgrade:
            head = (b"HTTP/1.1 101 UPGRADED\r\nContent-Type: %s\r\nConnection: Upgrade\r\n"
                    b"Upgrade: tcp\r\nApi-Version: %s\r\n\r\n")  # fmt: skip
        else:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nApi-Version: %s\r\n\r\n"
        self.sock.sendall(head % (result.content_type.encode(), protocol.API_VERSION.encode()))
        early = self.conn.trailing_data[0]
        result.run(self.sock, bytes(early))
