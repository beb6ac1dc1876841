"""The real-image corpus in tests: session fixtures that push the cached Debian images to the
session registry, and helpers the workload tests share.

scripts/build-test-images.sh (as root) builds the corpus into an OCI layout under
/var/cache/rootless/test-images/KEY (or $ROOTLESS_TEST_IMAGES/KEY), KEY hashing the recipes
(tests/support/imagebuild.py). A missing layout fails the tests that need it, with the command
that builds it: these tests are never skipped.

`ROOTLESS_TEST_SECCOMP_UNCONFINED=1` adds `--security-opt seccomp=unconfined` to every workload
container (`run_opts()`), to tell a seccomp problem from another one while developing. It is off by
default and CI never sets it.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import textwrap

import pytest
from support import imagebuild, imagerecipes
from support.net import free_port  # noqa: F401 - also imported from here
from support.wait import poll


def corpus_layout() -> str:
    """The cached OCI layout for the current recipes, or a test failure that says how to build it."""
    cache = os.environ.get("ROOTLESS_TEST_IMAGES", imagebuild.DEFAULT_CACHE)
    path = os.path.join(cache, imagebuild.recipe_key())
    if not os.path.exists(os.path.join(path, "index.json")):
        env = f"ROOTLESS_TEST_IMAGES={cache} " if "ROOTLESS_TEST_IMAGES" in os.environ else ""
        pytest.fail(
            f"the real-image corpus is not built for these recipes ({path} is missing): "
            f"run `sudo {env}scripts/build-test-images.sh` (as root), then the tests again",
            pytrace=False,
        )
    return path


def run_opts() -> list[str]:
    """Options every workload container gets (see the module docstring)."""
    if os.environ.get("ROOTLESS_TEST_SECCOMP_UNCONFINED") == "1":
        return ["--security-opt", "seccomp=unconfined"]
    return []


def subordinate_id(kind: str, container_id: int) -> int:
    """The host id a container id other than 0 maps to, from /etc/subuid or /etc/subgid (kind
    "uid" or "gid") of the user running the tests: container id N >= 1 is the range's start + N - 1,
    as podman maps it."""
    names = {str(os.getuid())}  # entries name the user by name or by uid, in both files
    try:
        names.add(pwd.getpwuid(os.getuid()).pw_name)
    except KeyError:
        pass
    with open(f"/etc/sub{kind}") as f:
        for line in f:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[0] in names:
                start, count = int(parts[1]), int(parts[2])
                assert container_id <= count, f"{kind} {container_id} is outside the range"
                return start + container_id - 1
    raise AssertionError(f"no /etc/sub{kind} range for this user")


@pytest.fixture(scope="session")
def image_corpus() -> str:
    return corpus_layout()


def _push(registry, layout: str, layout_ref: str, dest: str) -> str:
    registry.push(layout, layout_ref, dest, fmt="oci")
    return f"{registry.host}/{dest}"


@pytest.fixture(scope="session")
def debian_ref(registry, image_corpus):
    """Debian bookworm minbase (debootstrap), one layer: 127.0.0.1:PORT/debian:bookworm."""
    return _push(registry, image_corpus, imagerecipes.BASE_REF, "debian:bookworm")


@pytest.fixture(scope="session")
def python_ref(registry, image_corpus):
    """bookworm + python3."""
    return _push(registry, image_corpus, "python", "python:bookworm")


@pytest.fixture(scope="session")
def node_ref(registry, image_corpus):
    """bookworm + nodejs."""
    return _push(registry, image_corpus, "node", "node:bookworm")


@pytest.fixture(scope="session")
def gcc_ref(registry, image_corpus):
    """bookworm + gcc, libc6-dev and make."""
    return _push(registry, image_corpus, "gcc", "gcc:bookworm")


@pytest.fixture(scope="session")
def postgres_ref(registry, image_corpus):
    """bookworm + PostgreSQL 15 and gosu, with the official image's entry point conventions."""
    return _push(registry, image_corpus, "postgres", "postgres:bookworm")


@pytest.fixture(scope="session")
def nginx_ref(registry, image_corpus):
    """bookworm + nginx: nginx -g 'daemon off;', port 80, logs to stdout/stderr."""
    return _push(registry, image_corpus, "nginx", "nginx:bookworm")


# --- helpers for the workload tests ------------------------------------------------------------------

DRIVERS = ["overlay", "fuse-overlay"]  # every workload runs on both (docs/storage.md)


def workload_store(base: str, registry, *refs: str):
    """A `Rootless` store for a test module, with these images pulled once; the module's containers
    share it (both storage drivers use the same image layers)."""
    from conftest import Rootless

    r = Rootless(base)
    r.trust(registry)
    for ref in refs:
        r("pull", "-q", ref, check=True, timeout=600)
    return r


def start(store, driver: str, name: str, *args: str) -> str:
    """`rootless --storage-driver DRIVER run -d --name NAME ARGS...`; returns the name."""
    store("--storage-driver", driver, "run", "-d", "--name", name, *run_opts(), *args, check=True)
    return name


def curl(url: str, *extra: str) -> str:
    """What a user's curl on the host gets (a failing status or no answer raises)."""
    cp = subprocess.run(
        ["curl", "-sSf", "--max-time", "10", *extra, url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cp.returncode == 0, f"curl {url}: exit {cp.returncode}: {cp.stderr.strip()}"
    return cp.stdout


def wait_for_http(url: str, timeout: float = 60) -> str:
    return poll(lambda: curl(url), timeout=timeout, interval=0.2)


def wait_for_log(store, name: str, text: str, timeout: float = 60, count: int = 1) -> str:
    """Poll `rootless logs NAME` until it holds `text` `count` times (the container must run)."""

    def seen():
        cp = store("logs", name)
        out = cp.stdout + cp.stderr
        if out.count(text) >= count:
            return out
        state = store("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        assert state == "running", f"{name} is {state} before logging {text!r}:\n{out}"
        return None

    return poll(seen, timeout=timeout, interval=0.2)


def write_files(d: str, files: dict[str, str]) -> str:
    """Write `files` (name: text, dedented) into the directory d; returns d."""
    os.makedirs(d, exist_ok=True)
    for name, text in files.items():
        path = os.path.join(d, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
    return d


def exec_ok(store, name: str, *argv: str, timeout: float = 180) -> str:
    """`rootless exec NAME ARGV...`, which must succeed; returns its stdout."""
    cp = store("exec", name, *argv, timeout=timeout)
    assert cp.returncode == 0, f"exec {argv}: exit {cp.returncode}\n{cp.stdout}\n{cp.stderr}"
    return cp.stdout
