"""The host's loopback is out of a container's reach by default (issue #14): a listener on the
host's 127.0.0.1 cannot be reached through the gateway with pasta (podman passes --no-map-gw unless
--map-gw is asked for) nor with slirp4netns (10.0.2.2 unless allow_host_loopback=true)."""

import socket
import threading

import pytest

PROBE = (
    "gw=$(ip route | awk '/^default/ {print $3}'); [ -n \"$gw\" ] || gw=10.0.2.2; "
    'echo "gw $gw"; timeout 5 nc -w 3 $gw $PORT </dev/null; echo "nc $?"'
)
# The trailing echo keeps sh as the container's PID 1: were `timeout` exec'd as the last command, nc
# would be PID 1, immune to timeout's SIGTERM, and Debian's pasta sometimes never passes on the host
# side's FIN after nc's half-close (seen in CI: nc waits in FIN_WAIT2 forever).


@pytest.fixture
def listener():
    """A TCP listener on the host's 127.0.0.1 that greets each client."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.5)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"hello from the host loopback\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


@pytest.mark.parametrize(
    "network,reached",
    [
        ("pasta", False),
        ("pasta:--no-map-gw", False),
        ("pasta:--map-gw", True),
        ("slirp4netns", False),
        ("slirp4netns:allow_host_loopback=true", True),
    ],
)
def test_host_loopback_only_when_asked(rootless, registry, busybox_ref, listener, network, reached):
    rootless.trust(registry)
    cp = rootless("run", "--rm", "--network", network, "-e", f"PORT={listener}", busybox_ref,
                  "sh", "-c", PROBE)  # fmt: skip
    assert cp.stdout.startswith("gw "), cp.stderr
    assert ("hello from the host loopback" in cp.stdout) == reached, (cp.stdout, cp.stderr)
