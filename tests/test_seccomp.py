"""Seccomp exactly as podman: the profile's source and rules, its compiled-program cache, threads in
a container, and every syscall's outcome compared with podman's, side by side.

The comparison runs tests/support/syscall_probe.c (built here with gcc -static) in the same image
under `rootless run` and `podman run` (runc): every syscall number with invalid arguments, plus
clone3/clone/unshare with and without CLONE_NEW* flags and the argument-filtered calls, for the
default capabilities, --cap-add SYS_ADMIN and --cap-add ALL.
"""

import errno
import itertools
import json
import os
import subprocess

import pytest
from conftest import REPO, Rootless
from support.podman import Podman

from rootless.errors import ContainerError
from rootless.runtime import capabilities, seccomp

SYSTEM_JSON = "/usr/share/containers/seccomp.json"  # Debian's golang-github-containers-common
PROBE_SRC = os.path.join(REPO, "tests", "support", "syscall_probe.c")
NET = ("--network", "none")

THREADS_C = r"""
#include <pthread.h>
#include <stdio.h>
static void *work(void *arg) { *(int *)arg *= 2; return arg; }
int main(void) {
    pthread_t t[4]; int v[4] = {1, 2, 3, 4}, sum = 0;
    for (int i = 0; i < 4; i++) {
        int rc = pthread_create(&t[i], NULL, work, &v[i]);
        if (rc) { printf("pthread_create: error %d\n", rc); return 1; }
    }
    for (int i = 0; i < 4; i++) { pthread_join(t[i], NULL); sum += v[i]; }
    printf("threads ok %d\n", sum);
    return 0;
}
"""


def _gcc(src: str, out: str) -> str:
    subprocess.run(["gcc", "-static", "-O1", "-pthread", "-o", out, src], check=True)
    return out


@pytest.fixture(scope="module")
def bins(tmp_path_factory):
    d = tmp_path_factory.mktemp("bins")
    os.chmod(d, 0o755)
    (d / "threads.c").write_text(THREADS_C)
    return {
        "probe": _gcc(PROBE_SRC, str(d / "syscall_probe")),
        "threads": _gcc(str(d / "threads.c"), str(d / "threads")),
    }


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    r = Rootless(str(tmp_path_factory.mktemp("seccomp")))
    r.trust(registry)
    r("pull", busybox_ref, check=True)
    r.img = busybox_ref
    yield r
    r.cleanup()


def system_profile() -> dict:
    assert os.path.exists(SYSTEM_JSON), "install golang-github-containers-common (setup-host.sh)"
    with open(SYSTEM_JSON) as f:
        return json.load(f)


# --- the profile, without containers ------------------------------------------------------------
def gated_caps(*profiles) -> list[str]:
    """Every capability a rule of these profiles includes or excludes (names without CAP_)."""
    caps = set()
    for prof in profiles:
        for rule in prof["syscalls"]:
            for key in ("includes", "excludes"):
                caps.update((rule.get(key) or {}).get("caps") or [])
    return sorted(c.removeprefix("CAP_") for c in caps)


def test_builtin_profile_is_the_system_profile():
    """Same rules for every architecture and every subset of the capabilities rules mention."""
    system, builtin = system_profile(), seccomp.builtin_profile()
    caps = gated_caps(system, builtin)
    assert "SYS_ADMIN" in caps and "AUDIT_WRITE" in caps
    arches = ["amd64", "x86", "arm64", "arm", "s390x", "ppc64le", "mips64", "riscv64"]
    checked = 0
    for arch in arches:
        for n in range(len(caps) + 1):
            for subset in itertools.combinations(caps, n):
                want = seccomp.resolve(system, frozenset(subset), arch)
                got = seccomp.resolve(builtin, frozenset(subset), arch)
                assert (got[0], sorted(got[1]), sorted(got[2])) == (
                    want[0],
                    sorted(want[1]),
                    sorted(want[2]),
                ), f"{arch} caps={subset}"
                checked += 1
    assert checked == len(arches) * 2 ** len(caps)
    # and libseccomp compiles both to the same program here
    for caps in (capabilities.DEFAULT, capabilities.DEFAULT | {"SYS_ADMIN"}):
        assert seccomp.bpf(builtin, caps) == seccomp.bpf(system, caps)


def test_default_profile_is_the_system_file_then_containers_conf(tmp_path, monkeypatch):
    monkeypatch.delenv("CONTAINERS_CONF", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    system = next(p for p in seccomp.SYSTEM_PROFILES if os.path.exists(p))  # /etc's, if any
    prof = seccomp.default_profile()
    assert isinstance(prof, seccomp.ProfileFile) and prof.path == system
    # containers.conf's seccomp_profile wins, as in podman; "unconfined" means none
    conf = tmp_path / "containers" / "containers.conf"
    conf.parent.mkdir()
    mine = tmp_path / "mine.json"
    mine.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    conf.write_text(f'[containers]\n# seccomp_profile = "nope"\nseccomp_profile = "{mine}"\n')
    assert seccomp.default_profile().path == str(mine)
    conf.write_text('[containers]\nseccomp_profile = "unconfined"\n')
    assert seccomp.default_profile() is None
    conf.write_text(f'[containers]\nseccomp_profile = "{tmp_path}/missing.json"\n')
    with pytest.raises(ContainerError, match="missing.json"):
        seccomp.default_profile()
    # CONTAINERS_CONF replaces every other containers.conf
    other = tmp_path / "other.conf"
    other.write_text("[engine]\n")
    monkeypatch.setenv("CONTAINERS_CONF", str(other))
    assert seccomp.default_profile().path == system


def test_cached_program_is_found_without_reading_the_file(tmp_path):
    prof_path = tmp_path / "p.json"
    prof_path.write_text(json.dumps(seccomp.builtin_profile()))
    cache = str(tmp_path / "cache")
    caps = capabilities.DEFAULT
    prog = seccomp.bpf(seccomp.ProfileFile(str(prof_path), os.stat(prof_path)), caps, cache)
    assert prog and len(prog) % 8 == 0
    os.chmod(prof_path, 0)  # a hit must not even open it
    assert seccomp.bpf(seccomp.ProfileFile(str(prof_path), os.stat(prof_path)), caps, cache) == prog
    os.chmod(prof_path, 0o644)
    prof_path.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')  # new identity: recompiled
    other = seccomp.bpf(seccomp.ProfileFile(str(prof_path), os.stat(prof_path)), caps, cache)
    assert other != prog


def test_resolve_follows_podman_and_runc():
    prof = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrno": "ENOSYS",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},  # = default
            {"name": "kill", "action": "SCMP_ACT_ERRNO", "errno": "EACCES", "errnoRet": 1},
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                    {"index": 1, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"},
                ],
            },
            {"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
            {"names": ["acct"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "3.0"}},
            {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["SYS_CHROOT"]}},
            {"names": ["mount"], "action": "SCMP_ACT_KILL", "excludes": {"arches": ["amd64"]}},
        ],
    }
    default, arches, rules = seccomp.resolve(prof, frozenset({"SYS_CHROOT"}), "amd64", (6, 1))
    assert default == ("SCMP_ACT_ERRNO", errno.ENOSYS) and arches == ["SCMP_ARCH_X86_64"]
    eq = "SCMP_CMP_EQ"
    assert rules == [
        ("kill", ("SCMP_ACT_ERRNO", errno.EACCES), ()),  # the errno name wins
        ("clone", ("SCMP_ACT_ALLOW", None), ((0, eq, 1, 0),)),  # two conditions on arg 0: OR
        ("clone", ("SCMP_ACT_ALLOW", None), ((0, eq, 2, 0),)),
        ("clone", ("SCMP_ACT_ALLOW", None), ((1, "SCMP_CMP_MASKED_EQ", 0x7E020000, 0),)),
    ]  # and no chroot: podman compares caps spelled CAP_SYS_CHROOT
    bad = dict(prof, archMap=[{"architecture": "SCMP_ARCH_X86_64"}])
    with pytest.raises(ContainerError, match="archMap"):
        seccomp.resolve(bad, frozenset())
    assert seccomp.resolve({"syscalls": []}, frozenset()) is None  # podman: no seccomp at all


# --- in a container ------------------------------------------------------------------------------
def run(rl, *args, **kw):
    return rl("--storage-driver", "overlay", "run", "--rm", *NET, *args, **kw)


def profile_with(tmp_path, name: str, rule: dict | None) -> str:
    """The built-in profile with syscall `name` taken out of every rule, and `rule` added."""
    prof = seccomp.builtin_profile()
    for r in prof["syscalls"]:
        r["names"] = [n for n in r["names"] if n != name]
    if rule:
        prof["syscalls"].append(dict(rule, names=[name]))
    path = tmp_path / f"{name}-{len(prof['syscalls'])}.json"
    path.write_text(json.dumps(prof))
    os.chmod(tmp_path, 0o755)
    return str(path)


def probe_case(rl, bins, label, *opts) -> str:
    cp = run(rl, *opts, "-v", f"{bins['probe']}:/probe:ro", rl.img, "/probe", "0", "-1")
    assert cp.returncode == 0, cp.stderr
    results = dict(line.split(" ", 1) for line in cp.stdout.splitlines())
    return results[label]


def test_threads_work_and_clone3_is_allowed(rl, bins, tmp_path):
    """glibc >= 2.34 starts threads with clone3 and falls back to clone only on ENOSYS."""
    mount = ("-v", f"{bins['threads']}:/threads:ro")
    cp = run(rl, *mount, rl.img, "/threads")
    assert (cp.returncode, cp.stdout) == (0, "threads ok 20\n"), cp.stderr
    assert probe_case(rl, bins, "clone3(plain)") == "ok"  # podman's profile allows clone3
    assert probe_case(rl, bins, "clone3(NEWUSER)") == "ok"  # the user namespace confines it
    # a profile that does not list clone3 answers ENOSYS (the default): threads still start
    unlisted = profile_with(tmp_path, "clone3", None)
    assert probe_case(rl, bins, "clone3(plain)", "--security-opt", f"seccomp={unlisted}") == (
        f"errno:{errno.ENOSYS}"
    )
    cp = run(rl, *mount, "--security-opt", f"seccomp={unlisted}", rl.img, "/threads")
    assert (cp.returncode, cp.stdout) == (0, "threads ok 20\n"), cp.stderr
    # EPERM (the old default here) is what broke every threaded program
    eperm = profile_with(tmp_path, "clone3", {"action": "SCMP_ACT_ERRNO", "errnoRet": 1})
    cp = run(rl, *mount, "--security-opt", f"seccomp={eperm}", rl.img, "/threads")
    assert cp.returncode == 1 and "pthread_create: error" in cp.stdout


def test_privileged_drops_only_the_default_profile(rl, tmp_path):
    """As podman: --privileged runs unconfined unless a profile is named (other than the system's)."""
    status = ("grep", "^Seccomp:", "/proc/self/status")
    deny_mkdir = profile_with(tmp_path, "mkdir", {"action": "SCMP_ACT_ERRNO", "errnoRet": 13})
    cases = [
        ([], "2"),
        (["--privileged"], "0"),
        (["--privileged", "--security-opt", f"seccomp={SYSTEM_JSON}"], "0"),
        (["--privileged", "--security-opt", f"seccomp={deny_mkdir}"], "2"),
        (["--security-opt", "seccomp=unconfined"], "0"),
    ]
    for opts, want in cases:
        cp = run(rl, *opts, rl.img, *status)
        assert cp.stdout.split() == ["Seccomp:", want], (opts, cp.stderr)
    cp = run(rl, "--privileged", "--security-opt", f"seccomp={deny_mkdir}", rl.img, "mkdir", "/x")
    assert cp.returncode == 1 and "Permission denied" in cp.stderr


# --- side by side with podman --------------------------------------------------------------------
@pytest.fixture(scope="module")
def pm(tmp_path_factory, registry, busybox_ref):
    p = Podman(str(tmp_path_factory.mktemp("podman")))
    p.trust(registry)
    p("pull", "-q", busybox_ref, check=True)
    yield p
    p.cleanup()


def syscall_names() -> dict[int, str]:
    """Number -> name for every syscall the system profile names (as libseccomp resolves them)."""
    from rootless import syscalls as sc

    flt = sc.SeccompFilter(sc.SCMP_ACT_ALLOW)
    try:
        names = {n for r in system_profile()["syscalls"] for n in r.get("names") or []}
        return {nr: n for n in sorted(names) if (nr := flt.resolve(n)) >= 0}
    finally:
        flt.release()


def outcome(text: str) -> str:
    if text.startswith("errno:"):
        return errno.errorcode.get(int(text[6:]), text)
    return text


@pytest.mark.parametrize("caps", [[], ["SYS_ADMIN"], ["ALL"]], ids=["default", "SYS_ADMIN", "ALL"])
def test_every_syscall_as_under_podman(rl, pm, bins, caps):
    names = syscall_names()
    last = max(names) + 64  # and some numbers past the last known one (default action)
    opts = [*(f"--cap-add={c}" for c in caps), "-v", f"{bins['probe']}:/probe:ro"]
    cmd = [rl.img, "/probe", "0", str(last)]
    ours = run(rl, *opts, *cmd)
    theirs = pm("run", "--rm", *NET, *opts, *cmd, timeout=300)
    assert theirs.returncode == 0, theirs.stderr
    assert ours.returncode == 0, ours.stderr
    a = dict(line.split(" ", 1) for line in ours.stdout.splitlines())
    b = dict(line.split(" ", 1) for line in theirs.stdout.splitlines())
    assert a.keys() == b.keys()
    assert {f"nr:{nr}" for nr in names} <= a.keys()  # every syscall in the profile's list
    diff = []
    for label in b:
        if a[label] != b[label]:
            nr = label[3:] if label.startswith("nr:") else None
            name = names.get(int(nr), "?") if nr else ""
            diff.append(f"{label:28} {name:24} rootless={outcome(a[label]):10} "
                        f"podman={outcome(b[label])}")  # fmt: skip
    print(f"compared {len(b)} calls ({len(names)} named syscalls) with caps {caps or 'default'}")
    assert not diff, f"{len(diff)} differences from podman:\n" + "\n".join(diff)
