"""`create`, `start` (-a, several) and `init` as podman 4.3 does them, run as the unprivileged user:
create takes run's options, prints the full id and leaves the container "created"; start runs it."""

import json
import re

import pytest
from conftest import Rootless
from support import stores

NONE = ("--network", "none")


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    yield from stores.busybox_store(
        Rootless, tmp_path_factory, registry, busybox_ref, "verbs-create"
    )


def test_create_then_start(rl):
    cp = rl(
        "create", "--name", "c1", *NONE, "-e", "X=y", rl.img, "sh", "-c", 'echo "hi $X"; exit 3'
    )
    assert cp.returncode == 0, cp.stderr
    cid = cp.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    ps = rl("ps", "-a", "--format", "{{.Names}} {{.Status}}", check=True).stdout.split("\n")
    assert "c1 Created" in ps
    assert rl("inspect", "-f", "{{.State.Status}}", "c1", check=True).stdout.strip() == "created"
    info = json.loads(rl("container", "inspect", cid, check=True).stdout)[0]
    assert "X=y" in info["Config"]["Env"]
    assert info["Config"]["Cmd"] == ["sh", "-c", 'echo "hi $X"; exit 3']
    assert not rl("logs", "c1", check=True).stdout  # nothing ran
    cp = rl("start", "-a", "c1")
    assert (cp.returncode, cp.stdout) == (3, "hi y\n")
    assert rl("inspect", "-f", "{{.State.ExitCode}}", "c1", check=True).stdout.strip() == "3"
    # the same name again: podman's exit code, one line
    cp = rl("create", "--name", "c1", *NONE, rl.img, "true")
    assert cp.returncode == 125 and cp.stderr.startswith("Error: ") and cp.stderr.count("\n") == 1
    rl("rm", "c1", check=True)


def test_container_create_and_start_several(rl):
    a = rl("container", "create", "--name", "a", *NONE, rl.img, "sleep", "60", check=True)
    rl("create", "--name", "b", *NONE, rl.img, "sleep", "60", check=True)
    assert len(a.stdout.strip()) == 64
    cp = rl("start", "a", "b")
    assert (cp.returncode, cp.stdout) == (0, "a\nb\n"), cp.stderr
    st = rl("inspect", "-f", "{{.State.Status}}", "a", "b", check=True).stdout.split()
    assert st == ["running", "running"]
    rl("rm", "-f", "-t", "0", "a", "b", check=True)


def test_create_bad_input(rl):
    cp = rl("create", *NONE, "--restart", "sometimes", rl.img, "true")
    assert cp.returncode == 125 and cp.stderr.startswith("Error: ")
    assert "Traceback" not in cp.stderr
    cp = rl("create", *NONE, "localhost/no-such-image:1", "true")
    assert cp.returncode == 125 and cp.stderr.splitlines()[-1].startswith("Error: ")
    assert rl("ps", "-aq", check=True).stdout == ""  # nothing half-made
    cp = rl("create", "-d", rl.img)  # -d is run's
    assert cp.returncode == 125


def test_init(rl):
    rl("create", "--name", "i", *NONE, rl.img, "sleep", "60", check=True)
    cp = rl("init", "i")
    assert (cp.returncode, cp.stdout) == (0, "i\n"), cp.stderr
    assert rl("inspect", "-f", "{{.State.Status}}", "i", check=True).stdout == "initialized\n"
    ps = rl("ps", "-a", "--format", "{{.Names}} {{.Status}}", check=True).stdout.split("\n")
    assert "i Initialized" in ps
    cp = rl("init", "i")  # podman: once only
    assert cp.returncode == 125
    assert cp.stderr.endswith("has already been created in runtime: container state improper\n")
    cp = rl("start", "i")
    assert (cp.returncode, cp.stdout) == (0, "i\n"), cp.stderr
    assert rl("inspect", "-f", "{{.State.Status}}", "i", check=True).stdout == "running\n"
    assert rl("container", "init", "i").returncode == 125  # running
    rl("stop", "-t", "0", "i", check=True)
    assert rl("init", "i", check=True).stdout == "i\n"  # exited -> initialized again
    cp = rl("init", "nope")
    assert cp.returncode == 125 and cp.stderr == (
        'Error: no container with name or ID "nope" found: no such container\n'
    )
    rl("rm", "i", check=True)
