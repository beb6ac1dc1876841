"""`rename` and `version` as podman 4.3 does them, run as the unprivileged user beside podman:
rename works on created and running containers, keeps the id, refuses a taken or malformed name
with podman's message and exit code; version prints the Client block and takes --format."""

import json

import pytest
from conftest import Rootless
from support import stores

NONE = ("--network", "none")


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    yield from stores.busybox_store(
        Rootless, tmp_path_factory, registry, busybox_ref, "verbs-rename"
    )


def names(tool) -> list[str]:
    return sorted(tool("ps", "-a", "--format", "{{.Names}}", check=True).stdout.split())


def test_rename_running_and_created_containers(rl):
    cid = rl("run", "-d", "--name", "r1", *NONE, rl.img, "sleep", "60", check=True).stdout.strip()
    rl("create", "--name", "c1", *NONE, rl.img, "true", check=True)
    rl("rename", "r1", "r3", check=True)
    rl("container", "rename", "c1", "c2", check=True)
    assert names(rl) == ["c2", "r3"]
    assert rl("inspect", "-f", "{{.Id}} {{.State.Status}}", "r3", check=True).stdout.split() == [
        cid,
        "running",
    ]
    assert rl("exec", "r3", "hostname", check=True).stdout.strip() == cid[:12]  # unchanged
    rl("rename", "r3", "r3", check=True)  # its own name: nothing to do, as podman
    assert rl("start", "-a", "c2").returncode == 0
    rl("rm", "-f", "-t", "0", "r3", "c2", check=True)


def test_rename_errors_as_podman(rl, podman, registry):
    podman.trust(registry)
    podman("pull", "-q", rl.img, check=True)
    for tool in (rl, podman):
        for n in ("x1", "x2"):
            tool("create", "--name", n, *NONE, rl.img, "true", check=True)
    cases = [("x1", "x2"), ("x1", "bad name"), ("nosuch", "y"), ("x1",)]
    for args in cases:
        mine, theirs = rl("rename", *args), podman("rename", *args)
        assert mine.returncode == theirs.returncode == 125, args
        assert mine.stderr.startswith("Error: ") and mine.stderr.count("\n") == 1, mine.stderr
        assert mine.stdout == theirs.stdout == ""
    # the same words as podman where podman's words are about the user's input
    assert rl("rename", "x1", "bad name").stderr == podman("rename", "x1", "bad name").stderr
    assert rl("rename", "nosuch", "y").stderr == podman("rename", "nosuch", "y").stderr
    assert "already in use" in rl("rename", "x1", "x2").stderr
    assert names(rl) == names(podman) == ["x1", "x2"]
    for tool in (rl, podman):
        tool("rm", "x1", "x2", check=True)


def test_version_as_podman(rl, podman):
    mine, theirs = rl("version", check=True).stdout, podman("version", check=True).stdout
    assert [ln.split(":")[0] for ln in mine.splitlines()][:3] == [
        "Client",
        "Version",
        "API Version",
    ]
    assert [ln.split(":")[0] for ln in theirs.splitlines()][:3] == [
        "Client",
        "Version",
        "API Version",
    ]
    data = json.loads(rl("version", "--format", "json", check=True).stdout)
    assert set(data["Client"]) == set(
        json.loads(podman("version", "--format", "json").stdout)["Client"]
    )
    fmt = "{{.Client.Version}} {{.Client.OsArch}}"
    out = rl("version", "--format", fmt, check=True).stdout.split()
    assert out[0] == data["Client"]["Version"]
    assert out[1] == podman("version", "--format", "{{.Client.OsArch}}", check=True).stdout.strip()
    cp = rl("version", "--format", "{{.Bogus}}")
    assert cp.returncode == podman("version", "--format", "{{.Bogus}}").returncode == 125
    assert cp.stderr.startswith("Error: template: ") and cp.stderr.count("\n") == 1
