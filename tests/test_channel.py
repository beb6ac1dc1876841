"""The channel between rootless's processes: every message survives the trip, with its fd; EOF is
seen once every holder of the other end has exec'd or exited; garbage is never taken for a message."""

import os

import pytest

from rootless.runtime.channel import (
    Channel,
    Failed,
    Go,
    MountFuse,
    Pid,
    Pty,
    Ready,
    Started,
    decode,
    encode,
)

MESSAGES = [
    Pid("init", 4242),
    Go(),
    Ready(),
    Started(),
    Failed(127, "executable file `nosuch` not found in $PATH: No such file or directory"),
    Failed(125, "cannot create a user namespace: Operation not permitted", errno=1),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_messages_round_trip(msg):
    a, b = Channel.pair()
    with a, b:
        assert a.send(msg)
        got = b.recv(timeout=5)
    assert type(got) is type(msg) and got == msg


def test_a_failure_is_one_line_and_bounded():
    got = decode(encode(Failed(2, "first line\nsecond\0line " + "x" * 10000)))
    assert "\n" not in got.message and "\0" not in got.message
    assert got.message.startswith("first line second line") and len(got.message) <= 4000


def test_fds_travel_with_their_message():
    r, w = os.pipe()
    a, b = Channel.pair()
    with a, b:
        a.send(Pty(r))
        a.send(MountFuse(os.getpid(), "lowerdir=/l:/m,upperdir=/u", w))
        pty, mount = b.recv(timeout=5), b.recv(timeout=5)
    os.close(r)
    os.close(w)
    assert isinstance(pty, Pty) and pty.fd >= 0 and pty.fd != r
    assert mount.options == "lowerdir=/l:/m,upperdir=/u" and mount.pid == os.getpid()
    os.write(mount.fd, b"through the passed fd")
    assert os.read(pty.fd, 100) == b"through the passed fd"
    os.close(pty.fd)
    os.close(mount.fd)


def test_eof_once_the_other_end_is_gone_and_no_peer_means_send_fails():
    a, b = Channel.pair()
    b.close()
    assert a.recv(timeout=5) is None
    assert a.send(Go()) is False
    a.close()


@pytest.mark.parametrize("raw", [b"Pid\0init", b"Pid\0init\0notanint", b"Nope\0", b"Go\0extra"])
def test_garbage_is_not_a_message(raw):
    with pytest.raises(ValueError):
        decode(raw)
