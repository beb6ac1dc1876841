"""--log-driver and --log-opt beside podman 4.3: none (nothing logged, `logs` refuses as podman),
json-file (podman's k8s-file under that name), path= (the log elsewhere), max-size= (the log is
truncated when a write would pass it, as conmon does), inspect's HostConfig.LogConfig, and the
errors."""

import json
import os

import pytest
from conftest import Rootless
from support import stores
from support.wait import poll

NONE = ("--network", "none")
SIXTY = "for i in $(seq 1 60); do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done; sleep 300"


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    yield from stores.busybox_store(Rootless, tmp_path_factory, registry, busybox_ref, "logdriver")


@pytest.fixture
def pm(podman, registry, rl):
    return stores.podman_with(podman, registry, rl.img)


def log_config(tool, cid) -> dict:
    return json.loads(
        tool("inspect", "-f", "{{json .HostConfig.LogConfig}}", cid, check=True).stdout
    )


@pytest.mark.parametrize("driver", ["none", "json-file", "k8s-file"])
def test_drivers_as_podman(rl, pm, driver, tmp_path):
    got = {}
    for tool in (rl, pm):
        cid = tool("run", "-d", *NONE, "--log-driver", driver, rl.img, "sh", "-c", "echo hi; sleep 300",
                   check=True).stdout.strip()  # fmt: skip
        poll(lambda t=tool, c=cid: t("top", c).returncode == 0, timeout=30)
        cfg = log_config(tool, cid)
        if driver == "none":
            out = tool("logs", cid)
            got[tool] = (cfg["Type"], cfg["Path"], cfg["Size"], out.returncode, out.stderr)
        else:
            poll(lambda t=tool, c=cid: t("logs", c).stdout == "hi\n", timeout=30)
            got[tool] = (cfg["Type"], bool(cfg["Path"]), cfg["Size"])
        tool("rm", "-f", "-t", "0", cid)
    assert got[rl] == got[pm]
    assert rl("run", "--rm", *NONE, "--log-driver", driver, rl.img, "echo", "fg").stdout == "fg\n"


def test_path_and_max_size(rl, pm, tmp_path):
    sizes = {}
    for tool, name in ((rl, "mine.log"), (pm, "theirs.log")):
        path = str(tmp_path / name)
        cid = tool("run", "-d", *NONE, "--log-opt", f"path={path}", "--log-opt", "max-size=1k", rl.img,
                   "sh", "-c", SIXTY, check=True).stdout.strip()  # fmt: skip
        poll(lambda t=tool, c=cid: "line-60-" in t("logs", c).stdout, timeout=30)
        cfg = log_config(tool, cid)
        lines = tool("logs", cid).stdout.splitlines()
        sizes[tool] = (
            cfg["Path"] == path,
            cfg["Size"],
            0 < len(lines) < 60,
            os.path.getsize(path) <= 1000,
        )
        tool("rm", "-f", "-t", "0", cid)
    assert sizes[rl] == sizes[pm] == (True, "1kB", True, True)


def test_errors_as_podman(rl, pm):
    for args in (
        ["--log-driver", "bogus"],
        ["--log-opt", "noequals"],
        ["--log-opt", "max-size=bogus"],
    ):
        mine, theirs = (
            rl("create", *NONE, *args, rl.img, "true"),
            pm("create", *NONE, *args, rl.img, "true"),
        )
        assert mine.returncode == theirs.returncode == 125, args
        assert mine.stderr == theirs.stderr, args
    # podman fails tag= when the container starts (conmon's 126); rootless at once
    out = rl("create", *NONE, "--log-opt", "tag=x", rl.img, "true")
    assert out.returncode == 125 and "--log-tag" in out.stderr and out.stderr.count("\n") == 1
    assert rl("ps", "-aq").stdout == ""
