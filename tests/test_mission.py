"""The mission command: `rootless run -it alpine sh` gives an interactive shell as an unprivileged user.

Docker Hub is out of reach here, so registries.conf maps the short name to the local registry, where
`alpine` is the busybox test image; everything else is as a new user runs it: default storage driver,
default network, the image pulled on first use.
"""

import os

from support.term import Terminal

from rootless import idmap


def test_run_it_alpine_sh_is_an_interactive_shell(rootless, registry, busybox_layout):
    registry.push(busybox_layout, "latest", "alpine:latest")
    rootless.trust(registry)  # unqualified-search-registries = [the local registry]
    term = Terminal([*rootless.argv0, "run", "-it", "--rm", "alpine", "sh"], rootless.env)
    try:
        assert term.expect(b"# "), term.out  # pulled, started, and the shell prompts
        term.send(b"echo answer=$((6*7)) uid=$(id -u); cat /proc/self/uid_map\r")
        assert term.expect(b"answer=42 uid=0"), term.out
        first = idmap.for_user().uid_ranges[1]  # the full subordinate range is mapped
        assert term.expect(f"{first.host}".encode()), term.out
        term.send(b"exit 3\r")
        assert term.wait() == 3
    finally:
        term.close()
    assert b"Trying to pull" in term.out or b"Getting image" in term.out or b"Writing" in term.out
    cdir = os.path.join(rootless.data_dir, "rootless", "containers")
    assert not os.path.isdir(cdir) or os.listdir(cdir) == []  # --rm left nothing
