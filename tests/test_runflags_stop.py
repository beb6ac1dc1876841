"""How a container is stopped, and its resource limits (issue #15's --stop-signal, --stop-timeout and
--ulimit; issue #12's open-files limit), end to end as the unprivileged user beside podman 4.3:
the stop signal from the flag, else the image's STOPSIGNAL, else SIGTERM, sent by stop, restart,
rm -f and pod stop; the stop timeout (10 unless --stop-timeout) used when no -t is given; inspect's
.Config.StopSignal/.StopTimeout and .HostConfig.Ulimits as podman shows them; the limits a process
sees inside (podman's rootless defaults for nofile and nproc, --ulimit, --ulimit host) in the
container and in exec; and one `Error:` line with exit 125 for each bad value."""

import json
import os
import resource

import pytest
from conftest import Rootless
from support import stores
from support.podman import Podman
from support.wait import poll

# the container says which signal it got (in its log, or in /out/got when a volume is there);
# a handler that exits with 0 unless it sleeps first
TRAP = (
    'for s in TERM INT HUP USR1 USR2; do trap "echo got $s; '
    '[ -d /out ] && echo $s >> /out/got; sleep ${DELAY:-0}; exit ${CODE:-0}" $s; done; '
    "echo ready; while :; do sleep 0.1; done"
)
LIMITS = "ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu; ulimit -c; ulimit -Hc"


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    """The module's store, with busybox and `stopimg` (busybox with STOPSIGNAL SIGUSR1) built."""
    gen = stores.busybox_store(Rootless, tmp_path_factory, registry, busybox_ref, "runflags-stop")
    r = next(gen)
    r.stopimg = _build_stopimg(r, str(tmp_path_factory.mktemp("ctx")), busybox_ref)
    yield r
    next(gen, None)


@pytest.fixture(scope="module")
def pm(tmp_path_factory, registry, busybox_ref):
    """Podman beside it, with the same two images."""
    p = Podman(str(tmp_path_factory.mktemp("runflags-stop-podman")))
    p.trust(registry)
    try:
        p("pull", "-q", busybox_ref, check=True, timeout=300)
        _build_stopimg(p, str(tmp_path_factory.mktemp("ctx")), busybox_ref)
        p.img = busybox_ref
        yield p
    finally:
        p.cleanup()


def _build_stopimg(engine, ctx: str, base: str) -> str:
    with open(os.path.join(ctx, "Containerfile"), "w") as f:
        f.write(f"FROM {base}\nSTOPSIGNAL SIGUSR1\n")
    cp = engine("build", "-t", "stopimg", ctx, timeout=300)
    assert cp.returncode == 0, cp.stderr
    return "localhost/stopimg:latest"


def inspect(engine, name) -> dict:
    return json.loads(engine("inspect", name, check=True).stdout)[0]


def run_d(rl, *args) -> str:
    name = rl("run", "-d", "--network", "none", *args, check=True).stdout.strip()
    poll(lambda: "ready" in rl("logs", name).stdout)
    return name


def exit_code(rl, name) -> str:
    return rl("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()


# --- the stop signal ------------------------------------------------------------------------------


def test_stop_sends_the_images_stop_signal_unless_the_flag_says(rl):
    assert (
        json.loads(rl("image", "inspect", rl.stopimg, check=True).stdout)[0]["Config"]["StopSignal"]
        == "SIGUSR1"
    )
    a = run_d(rl, rl.stopimg, "sh", "-c", TRAP)
    b = run_d(rl, "--stop-signal", "hup", rl.stopimg, "sh", "-c", TRAP)
    c = run_d(rl, rl.img, "sh", "-c", TRAP)
    for name, sig, num in ((a, "USR1", 10), (b, "HUP", 1), (c, "TERM", 15)):
        assert rl("inspect", "--format", "{{.Config.StopSignal}}", name).stdout == f"{num}\n"
        rl("stop", name, check=True)
        assert rl("logs", name).stdout == f"ready\ngot {sig}\n"
        assert exit_code(rl, name) == "0"  # its handler ran: no SIGKILL
    rl("rm", a, b, c, check=True)


@pytest.mark.parametrize("value,num", [("SIGINT", 2), ("INT", 2), ("2", 2), ("usr2", 12),
                                       ("RTMIN+3", 37), ("-1", 1)])  # fmt: skip
def test_stop_signal_names_and_numbers_as_podman(rl, pm, value, num):
    for engine in (rl, pm):
        cid = engine("create", "--stop-signal", value, rl.img, "true", check=True).stdout.strip()
        assert inspect(engine, cid)["Config"]["StopSignal"] == num
        engine("rm", cid, check=True)


def test_restart_rm_f_and_pod_stop_send_the_stop_signal(rl, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    vol = ["-v", f"{out}:/out"]
    name = run_d(rl, *vol, "--stop-signal", "USR2", rl.img, "sh", "-c", TRAP)
    rl("restart", name, check=True)
    poll(lambda: rl("logs", name).stdout.count("ready") == 2)
    assert rl("inspect", "--format", "{{.State.Status}}", name).stdout == "running\n"
    rl("rm", "-f", name, check=True)
    assert (out / "got").read_text() == "USR2\nUSR2\n"  # restart's, then rm -f's
    assert rl("ps", "-aq", "--filter", f"name={name}").stdout == ""
    (out / "got").unlink()
    rl("pod", "create", "--name", "stoppod", check=True)
    try:
        run_d(rl, "--pod", "stoppod", *vol, "--name", "m1", rl.stopimg, "sh", "-c", TRAP)
        run_d(rl, "--pod", "stoppod", *vol, "--name", "m2", "--stop-signal", "INT",
              rl.img, "sh", "-c", TRAP)  # fmt: skip
        rl("pod", "stop", "stoppod", check=True)
        assert sorted((out / "got").read_text().split()) == ["INT", "USR1"]
        assert [exit_code(rl, n) for n in ("m1", "m2")] == ["0", "0"]
    finally:
        rl("pod", "rm", "-f", "-t", "0", "stoppod", timeout=120)


# --- the stop timeout -----------------------------------------------------------------------------


def test_stop_timeout_default_flag_and_t(rl):
    """The handler needs 3 seconds: the default 10 and -t 30 give it the time (it exits 7), a
    --stop-timeout of 1 does not (SIGKILL: 137)."""
    env = ["-e", "DELAY=3", "-e", "CODE=7"]
    default = run_d(rl, *env, rl.img, "sh", "-c", TRAP)
    short = run_d(rl, *env, "--stop-timeout", "1", rl.img, "sh", "-c", TRAP)
    told = run_d(rl, *env, "--stop-timeout", "1", rl.img, "sh", "-c", TRAP)
    fmt = "{{.Config.StopTimeout}}"
    assert [rl("inspect", "--format", fmt, n).stdout for n in (default, short)] == ["10\n", "1\n"]
    rl("stop", default, short, check=True)
    rl("stop", "-t", "30", told, check=True)
    assert [exit_code(rl, n) for n in (default, short, told)] == ["7", "137", "7"]
    rl("rm", default, short, told, check=True)


def test_inspect_stop_and_ulimit_fields_match_podman(rl, pm):
    cases = [
        [],
        ["--stop-signal", "QUIT", "--stop-timeout", "0"],
        ["--stop-timeout", "4294967296"],
        ["--ulimit", "nofile=100:200", "--ulimit", "core=-1"],
        ["--ulimit", "nproc=50", "--ulimit", "nofile=300", "--ulimit", "nofile=301:302"],
        ["--ulimit", "nofile=100", "--ulimit", "host"],
        ["--ulimit", "stack=8192:16384", "--ulimit", "cpu=10", "--ulimit", "fsize=-1:-1"],
    ]
    for args in cases:
        for image in (rl.img, rl.stopimg):
            mine = inspect(rl, rl("create", *args, image, "true", check=True).stdout.strip())
            theirs = inspect(pm, pm("create", *args, image, "true", check=True).stdout.strip())
            for section, key in (("Config", "StopSignal"), ("Config", "StopTimeout"),
                                 ("HostConfig", "Ulimits")):  # fmt: skip
                assert mine[section][key] == theirs[section][key], (args, image, key)
    rl("rm", "-a", check=True)
    pm("rm", "-a", check=True)


# --- ulimits --------------------------------------------------------------------------------------

ULIMITS = [
    [],  # podman's rootless defaults: nofile at the hard limit, nproc at pid_max
    ["--ulimit", "host"],
    ["--ulimit", "nofile=100:200", "--ulimit", "nproc=50:60", "--ulimit", "core=-1"],
    ["--ulimit", "nofile=300"],
    ["--ulimit", "core=0:0", "--ulimit", "nofile=64:64"],
]


@pytest.mark.parametrize("args", ULIMITS, ids=[" ".join(a) or "defaults" for a in ULIMITS])
def test_ulimits_inside_as_podman(rl, pm, args):
    seen = {}
    for engine in (rl, pm):
        cp = engine("run", "--rm", "--network", "none", *args, rl.img, "sh", "-c", LIMITS)
        assert cp.returncode == 0, cp.stderr
        seen[engine] = cp.stdout
    assert seen[rl] == seen[pm]
    if not args:  # the defaults, derived here: the caller's soft limit is not what counts
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        assert seen[rl].split()[:2] == [str(min(hard, 1048576))] * 2


def test_exec_gets_the_containers_limits(rl, pm):
    """As podman means it (its exec's process.json copies the container's limits), though
    Debian's runc 1.1.5 lets Go raise an exec'd process's soft nofile to its hard one: compared
    with the container's own process here, and with podman's hard limits."""
    seen = {}
    for engine in (rl, pm):
        name = engine("run", "-d", "--network", "none", "--ulimit", "nofile=123:456",
                      rl.img, "sh", "-c", LIMITS + "; sleep 1000", check=True).stdout.strip()  # fmt: skip
        poll(lambda e=engine, n=name: len(e("logs", n).stdout.split()) == 6)
        seen[engine] = (
            engine("logs", name).stdout,
            engine("exec", name, "sh", "-c", LIMITS, check=True).stdout,
        )
        engine("rm", "-f", "-t", "0", name, check=True)
    main, in_exec = seen[rl]
    assert main == in_exec == seen[pm][0]
    assert main.split()[:2] == ["123", "456"]
    assert main.split()[1:] == seen[pm][1].split()[1:]


def test_a_limit_above_the_hard_limit_fails_at_start_as_podman(rl, pm):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    args = ["--ulimit", f"nofile={hard}:{hard + 1}", rl.img, "true"]
    cp = rl("run", "--rm", "--network", "none", *args)
    assert cp.returncode == pm("run", "--rm", *args).returncode == 126
    assert cp.stderr.count("\n") == 1 and "nofile" in cp.stderr, cp.stderr


# --- bad values -----------------------------------------------------------------------------------

BAD = [
    (["--stop-signal", "bogus"], "--stop-signal"),
    (["--stop-signal", "0"], "--stop-signal"),
    (["--stop-signal", "65"], "1 through 64"),
    (["--stop-timeout", "-1"], "--stop-timeout"),
    (["--stop-timeout", "1.5"], "--stop-timeout"),
    (["--stop-timeout", "abc"], "--stop-timeout"),
    (["--ulimit", "nofile"], "nofile"),
    (["--ulimit", "nofile="], "nofile="),
    (["--ulimit", "bogus=1"], "invalid ulimit type: bogus"),
    (["--ulimit", "as=1000"], "invalid ulimit type: as"),
    (["--ulimit", "NOFILE=5"], "invalid ulimit type"),
    (["--ulimit", "nofile=a"], "nofile=a"),
    (["--ulimit", "nofile=1:b"], "nofile=1:b"),
    (["--ulimit", "nofile=1:2:3"], "too many"),
    (["--ulimit", "nofile=200:100"], "200 > 100"),
    (["--ulimit", "nofile=-1:100"], "soft limit"),
]


@pytest.mark.parametrize("args,word", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_values_are_one_error_line_and_125_as_podman(rl, pm, args, word):
    before = rl("ps", "-aq").stdout
    for verb in ("run", "create"):
        cp = rl(verb, "--network", "none", *args, rl.img, "true")
        assert cp.returncode == 125, cp.stderr
        lines = cp.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and word in lines[0], cp.stderr
    assert rl("ps", "-aq").stdout == before
    assert pm("create", *args, rl.img, "true").returncode == 125


def test_rm_time_needs_force(rl, pm):
    for engine in (rl, pm):
        cid = engine("create", rl.img, "true", check=True).stdout.strip()
        cp = engine("rm", "-t", "3", cid)
        assert cp.returncode == 125 and "--force" in cp.stderr, cp.stderr
        engine("rm", cid, check=True)
