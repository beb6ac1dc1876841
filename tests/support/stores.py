"""A module's store: one Rootless instance with the busybox test image pulled, shared by a test
module (pulling once), emptied of pods and containers at the end; and the after-each-test check that
nothing is left running or mounted."""

from __future__ import annotations

from support import leftovers
from support.wait import poll


def busybox_store(rootless_cls, tmp_path_factory, registry, busybox_ref, name: str):
    """Generator for a module-scoped fixture: a store named NAME with busybox pulled (`.img`)."""
    r = rootless_cls(str(tmp_path_factory.mktemp(name)))
    r.trust(registry)
    r("pull", busybox_ref, check=True)
    r.img = busybox_ref
    yield r
    r("pod", "rm", "-af", "-t", "0", timeout=300)
    r("rm", "-af", "-t", "0", timeout=300)
    r.cleanup()


def podman_with(podman, registry, ref: str):
    """The `podman` fixture trusting `registry`, with `ref` pulled: the side-by-side reference."""
    podman.trust(registry)
    podman("pull", "-q", ref, check=True)
    return podman


def assert_nothing_left(store) -> None:
    """No process of the store's containers outlives the test, and nothing of it stays mounted."""
    try:
        poll(lambda: not leftovers.processes(store), timeout=20)
    except AssertionError:
        raise AssertionError(f"left running: {leftovers.processes(store)}") from None
    assert leftovers.mounts(store) == []
