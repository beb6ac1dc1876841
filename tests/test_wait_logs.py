"""`wait --condition/--interval/--latest` and `logs --color/--names/--latest`, the calls
podman-compose 1.6 makes (`up` waits for `depends_on` with `wait --condition=running`; `logs`
passes `--color`), checked beside Debian's podman 4.3.1: the same output, errors and exit codes."""

import re

import pytest

# a container that waits to be told to stop, then exits 3
STOPPABLE = ["sh", "-c", "trap 'exit 3' TERM; sleep 1000 & wait"]


def _error(cp) -> str:
    """The `Error:` line (podman also warns on stderr, about the host's mounts)."""
    return "".join(ln for ln in cp.stderr.splitlines(keepends=True) if ln.startswith("Error:"))


def _wait_session(tool, image) -> list:
    """What `wait` prints along a container's life, with tool (rootless or podman)."""
    seen = []

    def wait(*args):
        cp = tool("wait", *args, timeout=60)
        seen.append((args, cp.returncode, cp.stdout, _error(cp)))

    tool("create", "--name", "c1", image, *STOPPABLE, check=True)
    wait("--condition", "created", "c1")
    wait("--condition", "bogus", "c1")
    wait("--condition", "configured", "c1")  # podman 4.3 takes neither "configured" ...
    wait("--condition", "stopping", "c1")  # ... nor "stopping"
    wait("-i", "bad", "c1")
    wait("nope", "c1")
    tool("start", "c1", check=True)
    wait("--condition=running", "c1")
    wait("--condition", "running", "--condition", "exited", "c1")
    wait("--interval", "50ms", "--condition", "running", "c1")
    tool("stop", "c1", check=True)
    wait("--condition=stopped,exited", "c1")
    wait("-i", "10", "c1")
    wait("c1")
    tool("create", "--name", "c2", image, "true", check=True)
    wait("c2")  # never started: podman's record says 0
    wait("-l")
    tool("rm", "c1", "c2", check=True)
    return seen


def test_wait_conditions_as_podman(rootless, podman, registry, busybox_ref):
    rootless.trust(registry)
    podman.trust(registry)
    ours, theirs = _wait_session(rootless, busybox_ref), _wait_session(podman, busybox_ref)
    assert ours == theirs
    assert theirs[0][1:] == (0, "-1\n", "")
    assert theirs[1][1:] == (125, "", "Error: unknown container state: bogus: invalid argument\n")


def test_wait_needs_a_container(rootless):
    cp = rootless("wait", "--condition", "running")
    assert cp.returncode == 125 and 'requires a name, id, or the "--latest" flag' in cp.stderr


def _logs_session(tool, image) -> dict:
    """What `logs` prints for three finished containers, their IDs replaced by their names."""
    ids = {}
    for i in (1, 2, 3):
        cid = tool("run", "-d", "--name", f"lg{i}", image, "sh", "-c", f"echo o{i}; echo e{i} >&2",
                   check=True).stdout.strip()  # fmt: skip
        ids[cid[:12]] = f"lg{i}"
    tool("wait", "lg1", "lg2", "lg3", check=True)
    out = {}
    for args in [("-n", "lg1"), ("--color", "lg1"), ("--color", "-n", "lg1", "lg2"),
                 ("-n", "lg3", "lg1"), ("lg2", "lg1"), ("--color", "lg1", "lg2", "lg3"),
                 ("-l",)]:  # fmt: skip
        cp = tool("logs", *args, check=True)
        texts = {"out": cp.stdout, "err": cp.stderr}
        for short, name in ids.items():
            texts = {k: v.replace(short, name + "-id") for k, v in texts.items()}
        # podman prints the containers' logs concurrently: compare the lines, not their order
        lines = {k: sorted(v.splitlines()) for k, v in texts.items()}
        lines["err"] = [ln for ln in lines["err"] if "level=warning" not in ln]
        out[args] = repr(lines)
    tool("rm", "lg1", "lg2", "lg3", check=True)
    return out


def test_logs_color_names_latest_as_podman(rootless, podman, registry, busybox_ref):
    rootless.trust(registry)
    podman.trust(registry)
    ours, theirs = _logs_session(rootless, busybox_ref), _logs_session(podman, busybox_ref)
    assert ours == theirs
    # -n alone changes nothing for one container; --color wraps each line in the container's color
    assert theirs[("-n", "lg1")] == repr({"out": ["o1"], "err": ["e1"]})
    assert theirs[("--color", "lg1")] == repr(
        {"out": ["\x1b[37mo1\x1b[0m"], "err": ["\x1b[37me1\x1b[0m"]}
    )
    assert re.search(r"\\x1b\[31mlg2 o2", theirs[("--color", "-n", "lg1", "lg2")])


@pytest.mark.parametrize("args", [("-l", "lg1"), ()])
def test_logs_bad_arguments(rootless, args):
    cp = rootless("logs", *args)
    assert cp.returncode == 125 and cp.stderr.startswith("Error: ")
