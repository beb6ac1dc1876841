"""Hostile layer tarballs: every way out of the layer is refused and nothing lands outside the store.

Each image has one layer built with tarfile (support.oci.make_tar) and is pushed to the real
registry; the pull must fail with a one-line error (or, for a harmless replacement, succeed) and the
target outside the store must stay untouched. A failed layer leaves nothing in the store.
"""

from __future__ import annotations

import os

import pytest
from support import oci
from support.oci import Entry


def store_dir(rootless) -> str:
    return os.path.join(rootless.data_dir, "rootless")


def push_layer(registry, tmp_path, name: str, entries: list[Entry]) -> str:
    layout = str(tmp_path / f"layout-{name}")
    oci.add_image(layout, "latest", [oci.make_tar(entries)])
    registry.push(layout, "latest", f"evil/{name}:latest")
    return f"{registry.host}/evil/{name}:latest"


def up_to_root(path: str) -> str:
    return "../" * 30 + path.lstrip("/")


def assert_nothing_stored(rootless):
    root = store_dir(rootless)
    for sub in ("images", "layers", "tmp"):
        assert os.listdir(os.path.join(root, sub)) == [], sub


def pull_refused(rootless, registry, ref: str, fragment: str):
    rootless.trust(registry)
    cp = rootless("pull", ref)
    assert cp.returncode == 125, cp.stderr
    last = cp.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and fragment in last, cp.stderr
    assert "Traceback" not in cp.stderr
    assert_nothing_stored(rootless)


def test_dotdot_is_refused(rootless, registry, tmp_path):
    target = tmp_path / "outside" / "dotdot-pwned"
    target.parent.mkdir()
    ref = push_layer(
        registry,
        tmp_path,
        "dotdot",
        [Entry("etc", "dir"), Entry(up_to_root(str(target)), data=b"x")],
    )
    pull_refused(rootless, registry, ref, "'..'")
    assert not target.exists()


def test_absolute_path_is_refused(rootless, registry, tmp_path):
    target = tmp_path / "outside" / "abs-pwned"
    target.parent.mkdir()
    ref = push_layer(
        registry, tmp_path, "absolute", [Entry("etc", "dir"), Entry(str(target), data=b"x")]
    )
    pull_refused(rootless, registry, ref, "absolute")
    assert not target.exists()


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_write_through_planted_symlink_is_refused(rootless, registry, tmp_path, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    link_target = str(outside) if kind == "absolute" else up_to_root(str(outside))
    ref = push_layer(
        registry,
        tmp_path,
        f"symlink-{kind}",
        [
            Entry("escape", "symlink", target=link_target),
            Entry("escape/pwned", data=b"x"),
        ],
    )
    pull_refused(rootless, registry, ref, "symlink")
    assert os.listdir(outside) == []


def test_dir_through_planted_symlink_is_refused(rootless, registry, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    ref = push_layer(
        registry,
        tmp_path,
        "symlink-dir",
        [
            Entry("a", "dir"),
            Entry("a/b", "symlink", target=str(outside)),
            Entry("a/b/c", "dir"),
            Entry("a/b/c/pwned", data=b"x"),
        ],
    )
    pull_refused(rootless, registry, ref, "symlink")
    assert os.listdir(outside) == []


@pytest.mark.parametrize("how", ["absolute", "dotdot", "via-symlink"])
def test_hardlink_to_outside_is_refused(rootless, registry, tmp_path, how):
    secret = tmp_path / "outside" / "secret"
    secret.parent.mkdir()
    secret.write_text("secret")
    entries = [Entry("etc", "dir")]
    if how == "absolute":
        entries.append(Entry("etc/stolen", "hardlink", target=str(secret)))
        fragment = "absolute"
    elif how == "dotdot":
        entries.append(Entry("etc/stolen", "hardlink", target=up_to_root(str(secret))))
        fragment = "'..'"
    else:
        entries += [
            Entry("dir", "symlink", target=str(secret.parent)),
            Entry("etc/stolen", "hardlink", target="dir/secret"),
        ]
        fragment = "symlink"
    ref = push_layer(registry, tmp_path, f"hardlink-{how}", entries)
    pull_refused(rootless, registry, ref, fragment)
    assert secret.stat().st_nlink == 1
    assert secret.read_text() == "secret"


def test_file_replacing_a_planted_symlink_does_not_follow_it(rootless, registry, tmp_path):
    victim = tmp_path / "outside" / "victim"
    victim.parent.mkdir()
    victim.write_text("original")
    ref = push_layer(
        registry,
        tmp_path,
        "replace-symlink",
        [
            Entry("f", "symlink", target=str(victim)),
            Entry("f", data=b"overwritten"),
        ],
    )
    rootless.trust(registry)
    cp = rootless("pull", ref, check=True)
    assert victim.read_text() == "original"
    del cp


def test_device_nodes_are_skipped_with_one_warning(rootless, registry, tmp_path):
    ref = push_layer(
        registry,
        tmp_path,
        "devices",
        [
            Entry("dev", "dir"),
            Entry("dev/null", "chardev", devmajor=1, devminor=3),
            Entry("dev/sda", "blockdev", devmajor=8, devminor=0),
            Entry("dev/fifo", "fifo"),
            Entry("etc", "dir"),
            Entry("etc/ok", data=b"ok"),
        ],
    )
    rootless.trust(registry)
    cp = rootless("pull", ref, check=True)
    warnings = [line for line in cp.stderr.splitlines() if "device node" in line]
    assert len(warnings) == 1 and "2 device nodes" in warnings[0]
    [layer] = os.listdir(os.path.join(store_dir(rootless), "layers"))
    diff = os.path.join(store_dir(rootless), "layers", layer, "diff")
    assert sorted(os.listdir(os.path.join(diff, "dev"))) == ["fifo"]


def test_truncated_and_garbage_layers_leave_nothing(rootless, registry, tmp_path):
    layout = str(tmp_path / "layout-garbage")
    oci.add_image(layout, "latest", [b"this is not a tar archive at all" * 40], compress="none")
    registry.push(layout, "latest", "evil/garbage:latest")
    pull_refused(rootless, registry, f"{registry.host}/evil/garbage:latest", "tar")
