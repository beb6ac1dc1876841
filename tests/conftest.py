"""Shared fixtures: the CLI runner with an isolated store, a real registry, and offline test images.

Container tests run as the unprivileged user `tester` (scripts/run-tests.sh); tests marked `root`
run in a separate pass as root. See docs/DEVELOPING.md for the fixtures' contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # so tests can `from support import oci, registry`

from support import oci  # noqa: E402
from support.images import (  # noqa: E402, F401 - the real-image corpus's session fixtures
    debian_ref,
    gcc_ref,
    image_corpus,
    nginx_ref,
    node_ref,
    postgres_ref,
    python_ref,
)
from support.podman import Podman  # noqa: E402
from support.registry import Registry  # noqa: E402

REPO = os.path.dirname(HERE)


# Modules whose behaviour turns on the caller's uid, gid or subordinate range (mappings, ownership in
# the store and on bind mounts, the overlay's ids, user namespaces). They carry the `ids` marker: the
# second user's pass (scripts/run-tests.sh) runs only these, proving no test depends on one user's ids
# without running the whole suite twice.
IDS_MODULES = {
    "test_cli", "test_escape", "test_fuse_overlay", "test_fuse_semantics", "test_harden_caps",
    "test_harden_dumpable", "test_idmap", "test_image_formats", "test_image_pull", "test_lifecycle",
    "test_mission", "test_run", "test_storage", "test_userns", "test_userns_blocked", "test_volumes",
    "test_commit", "test_build",
}  # fmt: skip
IDS_PREFIXES = ("test_keepid", "test_userns")


def pytest_collection_modifyitems(config, items):
    """Root-only tests run in the root pass, the rest as the unprivileged user (root proves nothing
    about rootless). Tests for the other pass are deselected, not skipped: make test runs both."""
    for i in items:
        mod = i.module.__name__.rsplit(".", 1)[-1] if i.module else ""
        if mod in IDS_MODULES or mod.startswith(IDS_PREFIXES):
            i.add_marker(pytest.mark.ids)
    as_root = os.geteuid() == 0
    keep = [i for i in items if ("root" in i.keywords) == as_root]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


class Rootless:
    """Runs the `rootless` CLI as a user would, with its own store, config and runtime dirs."""

    def __init__(self, base: str):
        self.base = base
        self.data_dir = os.path.join(base, "data")
        self.config_dir = os.path.join(base, "config")
        self.runtime_dir = os.path.join(base, "run")
        for d in (self.data_dir, self.config_dir, self.runtime_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("XDG_", "ROOTLESS_", "CONTAINERS_"))
        }
        env.update(
            XDG_DATA_HOME=self.data_dir,
            XDG_CONFIG_HOME=self.config_dir,
            XDG_RUNTIME_DIR=self.runtime_dir,
            LANG="C.UTF-8",
        )
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        self.env = env
        exe = shutil.which(
            "rootless", path=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        )
        self.argv0 = [exe] if exe else [sys.executable, "-m", "rootless"]

    def trust(self, *registries: Registry, search: bool = True) -> str:
        """Write a user registries.conf that marks these loopback registries insecure (HTTP)."""
        path = os.path.join(self.config_dir, "containers", "registries.conf")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lines = []
        if search:
            lines.append(
                "unqualified-search-registries = [{}]".format(
                    ", ".join(f'"{r.host}"' for r in registries)
                )
            )
        for r in registries:
            lines += ["", "[[registry]]", f'location = "{r.host}"', "insecure = true"]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def __call__(
        self,
        *args: str,
        check: bool = False,
        input: str | bytes | None = None,
        timeout: float = 120,
        text: bool = True,
        env: dict | None = None,
    ) -> subprocess.CompletedProcess:
        if isinstance(input, bytes):
            text = False
        cp = subprocess.run(
            [*self.argv0, *args],
            input=input,
            capture_output=True,
            text=text,
            timeout=timeout,
            env={**self.env, **(env or {})},
        )
        if check and cp.returncode != 0:
            raise AssertionError(
                f"rootless {' '.join(args)} exited {cp.returncode}\n{cp.stdout}\n{cp.stderr}"
            )
        return cp

    def cleanup(self) -> None:
        """Remove the store, including files owned by subordinate ids (through `rootless unshare`)."""
        if os.geteuid() != 0 and os.path.isdir(self.data_dir):
            subprocess.run(
                [*self.argv0, "unshare", "rm", "-rf", self.data_dir],
                env=self.env,
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def rootless(tmp_path):
    r = Rootless(str(tmp_path / "rootless"))
    yield r
    if not os.environ.get("ROOTLESS_TEST_KEEP"):
        r.cleanup()


@pytest.fixture
def podman(tmp_path):
    """Rootless podman beside `rootless`, with its own config, store and runtime dirs under
    tmp_path (tests/support/podman.py); call podman.trust(registry) before pulling."""
    p = Podman(str(tmp_path / "podman"))
    yield p
    p.cleanup()


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    reg = Registry(str(tmp_path_factory.mktemp("registry"))).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory):
    return oci.build_busybox_layout(str(tmp_path_factory.mktemp("layouts") / "busybox"))


@pytest.fixture(scope="session")
def busybox_ref(registry, busybox_layout):
    """127.0.0.1:PORT/busybox:latest (OCI); also :docker (Docker v2s2) and :baduid (uid 70000)."""
    registry.push(busybox_layout, "latest", "busybox:latest", fmt="oci")
    registry.push(busybox_layout, "latest", "busybox:docker", fmt="docker")
    registry.push(busybox_layout, "baduid", "busybox:baduid", fmt="oci")
    return f"{registry.host}/busybox:latest"
