"""Healthchecks beside podman 4.3: --health-* flags and their errors, `healthcheck run` (output,
exit code, the status and failing streak it leaves), inspect's Config.Healthcheck and
State.Healthcheck, ps's "(healthy)"; and what podman needs systemd timers for: the monitor runs the
check every interval, so a container turns unhealthy and healthy again by itself."""

import json

import pytest
from conftest import Rootless
from support import stores
from support.wait import poll

NONE = ("--network", "none")
HC = "{{json .State.Healthcheck}}"


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    yield from stores.busybox_store(Rootless, tmp_path_factory, registry, busybox_ref, "health")


@pytest.fixture
def pm(podman, registry, rl):
    return stores.podman_with(podman, registry, rl.img)


def health(tool, cid) -> dict:
    return json.loads(tool("inspect", "-f", HC, cid, check=True).stdout)


def test_healthcheck_run_as_podman(rl, pm):
    args = [
        "--health-cmd",
        "test -e /tmp/ok",
        "--health-interval",
        "disable",
        "--health-retries",
        "2",
    ]
    ids = {}
    for tool in (rl, pm):
        ids[tool] = tool(
            "run", "-d", *NONE, *args, rl.img, "sleep", "300", check=True
        ).stdout.strip()
    try:
        cfg = "{{json .Config.Healthcheck}}"
        assert json.loads(rl("inspect", "-f", cfg, ids[rl]).stdout) == json.loads(
            pm("inspect", "-f", cfg, ids[pm]).stdout
        )
        assert (
            health(rl, ids[rl])
            == health(pm, ids[pm])
            == {"Status": "starting", "FailingStreak": 0, "Log": None}
        )
        for step in ("fail", "fail", "fix", "ok"):
            if step == "fix":
                for tool in (rl, pm):
                    tool("exec", ids[tool], "touch", "/tmp/ok", check=True)
                continue
            mine, theirs = rl("healthcheck", "run", ids[rl]), pm("healthcheck", "run", ids[pm])
            assert (mine.returncode, mine.stdout, mine.stderr) == (
                theirs.returncode,
                theirs.stdout,
                theirs.stderr,
            ), step
            a, b = health(rl, ids[rl]), health(pm, ids[pm])
            assert (a["Status"], a["FailingStreak"], len(a["Log"])) == (
                b["Status"],
                b["FailingStreak"],
                len(b["Log"]),
            )
            assert [e["ExitCode"] for e in a["Log"]] == [e["ExitCode"] for e in b["Log"]]
            status = rl("ps", "--format", "{{.Status}}", "-f", f"id={ids[rl]}").stdout
            assert status.endswith(f"({a['Status']})\n"), status
        assert a["Status"] == "healthy"
    finally:
        for tool in (rl, pm):
            tool("rm", "-f", "-t", "0", ids[tool])


def test_errors_as_podman(rl, pm):
    for args in (
        ["--health-cmd", "true", "--health-interval", "bogus"],
        ["--health-cmd", "true", "--health-retries", "0"],
        ["--health-cmd", "true", "--health-timeout", "0s"],
        ["--health-cmd", "true", "--health-start-period", "-1s"],
        ["--no-healthcheck", "--health-cmd", "true"],
    ):
        mine, theirs = (
            rl("create", *NONE, *args, rl.img, "true"),
            pm("create", *NONE, *args, rl.img, "true"),
        )
        assert mine.returncode == theirs.returncode == 125, args
        assert mine.stderr == theirs.stderr, args
    mine = rl("create", *NONE, "--health-retries", "bogus", rl.img, "true")
    theirs = pm("create", *NONE, "--health-retries", "bogus", rl.img, "true")
    assert mine.returncode == theirs.returncode == 125
    assert mine.stderr == theirs.stderr.splitlines(keepends=True)[0]  # podman adds a "See" line
    assert rl("ps", "-aq").stdout == ""
    plain = {
        t: t("run", "-d", *NONE, rl.img, "sleep", "300", check=True).stdout.strip()
        for t in (rl, pm)
    }
    made = {
        t: t("create", *NONE, "--health-cmd", "true", rl.img, "true", check=True).stdout.strip()
        for t in (rl, pm)
    }
    try:
        for which in (plain, made):
            mine, theirs = rl("healthcheck", "run", which[rl]), pm("healthcheck", "run", which[pm])
            assert mine.returncode == theirs.returncode == 125
            assert mine.stderr == theirs.stderr.replace(which[pm], which[rl])
        mine, theirs = rl("healthcheck", "run", "nosuch"), pm("healthcheck", "run", "nosuch")
        assert mine.returncode == theirs.returncode == 125 and mine.stderr == theirs.stderr
    finally:
        for t in (rl, pm):
            t("rm", "-f", "-t", "0", plain[t], made[t])


def test_the_monitor_runs_the_check(rl):
    """Every interval, while the container runs, detached or in the foreground."""
    cid = rl("run", "-d", *NONE, "--health-cmd", "test -e /tmp/ok", "--health-interval", "1s",
             "--health-retries", "2", rl.img, "sleep", "300", check=True).stdout.strip()  # fmt: skip
    try:
        poll(lambda: health(rl, cid)["Status"] == "unhealthy", timeout=60)
        assert health(rl, cid)["FailingStreak"] >= 2
        rl("exec", cid, "touch", "/tmp/ok", check=True)
        poll(lambda: health(rl, cid)["Status"] == "healthy", timeout=60)
        assert "(healthy)" in rl("ps", "--format", "{{.Status}}").stdout
        assert len(health(rl, cid)["Log"]) <= 5  # podman keeps the last five
    finally:
        rl("rm", "-f", "-t", "0", cid)
    out = rl("run", "--name", "fg", *NONE, "--health-cmd", "echo checked", "--health-interval", "1s",
             rl.img, "sleep", "4", check=True)  # fmt: skip
    assert out.returncode == 0
    log = health(rl, "fg")["Log"]
    assert log and log[0]["Output"] == "checked\n" and log[0]["ExitCode"] == 0
    rl("rm", "fg", check=True)


def test_the_images_healthcheck(rl, tmp_path):
    (tmp_path / "Containerfile").write_text(f"FROM {rl.img}\nHEALTHCHECK --interval=1s CMD true\n")
    # HEALTHCHECK is Docker's: the OCI format has no place for it (buildah drops it there too)
    rl("build", "-q", "--format", "docker", "-t", "localhost/healthy", str(tmp_path), check=True)
    cid = rl("run", "-d", *NONE, "localhost/healthy", "sleep", "300", check=True).stdout.strip()
    try:
        cfg = json.loads(rl("inspect", "-f", "{{json .Config.Healthcheck}}", cid).stdout)
        assert cfg["Test"] == ["CMD-SHELL", "true"] and cfg["Interval"] == 10**9
        poll(lambda: health(rl, cid)["Status"] == "healthy", timeout=60)
    finally:
        rl("rm", "-f", "-t", "0", cid)
    off = rl(
        "create", "--no-healthcheck", *NONE, "localhost/healthy", "true", check=True
    ).stdout.strip()
    data = json.loads(rl("inspect", off, check=True).stdout)[0]
    assert "Healthcheck" not in data["Config"] and "Healthcheck" not in data["State"]
    rl("rm", off, check=True)
    rl("rmi", "localhost/healthy", check=True)
