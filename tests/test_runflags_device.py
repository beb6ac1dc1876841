"""--device and --env-merge beside podman 4.3: a host device node bound into the container's /dev
(read-only without w, as rootless podman binds it), podman's errors; image variables rewritten by
--env-merge (only those the image defines, as podman 4.3)."""

import pytest
from conftest import Rootless
from support import stores

NONE = ("--network", "none")


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    yield from stores.busybox_store(
        Rootless, tmp_path_factory, registry, busybox_ref, "runflags-dev"
    )


@pytest.fixture
def pm(podman, registry, rl):
    return stores.podman_with(podman, registry, rl.img)


def seen(tool, img, args, path):
    """The device's type and mode, and whether its mount is read-only, inside the container."""
    script = (
        f"ls -l {path} | cut -c1-10; grep ' {path} ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1"
    )
    return tool("run", "--rm", *NONE, *args, img, "sh", "-c", script, check=True).stdout.split()


@pytest.mark.parametrize(
    "device, path",
    [
        ("/dev/fuse", "/dev/fuse"),
        ("/dev/fuse:/dev/fuse:r", "/dev/fuse"),
        ("/dev/null:/dev/mynull", "/dev/mynull"),
        ("/dev/net/tun:/dev/net/tun:rwm", "/dev/net/tun"),
        ("/dev/zero:rw", "/dev/zero"),
    ],
)
def test_device_as_podman(rl, pm, device, path):
    mine = seen(rl, rl.img, ["--device", device], path)
    assert mine == seen(pm, rl.img, ["--device", device], path)
    assert mine[0].startswith("c") and mine[1] == ("ro" if device.endswith(":r") else "rw")


def test_device_works(rl):
    out = rl("run", "--rm", "--device", "/dev/null:/dev/mynull", *NONE, rl.img, "sh", "-c",
             "echo gone > /dev/mynull && echo ok", check=True)  # fmt: skip
    assert out.stdout == "ok\n"


def test_device_errors_as_podman(rl, pm):
    for device in ("/dev/nosuch", "/dev/fuse:/dev/fuse:bogus", "relative", "/dev/fuse:relative",
                   "/etc/passwd", "/dev/fuse:/a:rw:x"):  # fmt: skip
        mine = rl("run", "--rm", "--device", device, *NONE, rl.img, "true")
        theirs = pm("run", "--rm", "--device", device, *NONE, rl.img, "true")
        assert mine.returncode == theirs.returncode == 125, device
        assert mine.stderr == theirs.stderr, device
    assert rl("ps", "-aq").stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["--env-merge", "PATH=/opt:${PATH}"],
        ["--env-merge", "PATH=$PATH:/x", "--env-merge", "NEW=${NOPE}y"],
        ["-e", "FOO=bar", "--env-merge", "FOO=${FOO}-x"],
        ["--env-merge", "PATH=${PATH:-d}-${NOPE:-e}"],
        ["--env-merge", "bogus"],
    ],
    ids=["prepend", "append-and-new", "e-wins", "defaults", "no-value"],
)
def test_env_merge_as_podman(rl, pm, args):
    def env(tool):
        out = tool("run", "--rm", *NONE, *args, rl.img, "env", check=True).stdout
        return sorted(line for line in out.splitlines() if not line.startswith("HOSTNAME="))

    assert env(rl) == env(pm)
