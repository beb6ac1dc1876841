"""images, inspect, rmi, tag, image prune, load and save, as a user runs them."""

from __future__ import annotations

import json
import os
import tarfile

import pytest
from support import oci


@pytest.fixture
def pulled(rootless, registry, busybox_ref):
    rootless.trust(registry)
    image_id = rootless("pull", "-q", busybox_ref, check=True).stdout.strip()
    return image_id


def store_dir(rootless) -> str:
    return os.path.join(rootless.data_dir, "rootless")


def test_images_table_json_quiet(rootless, pulled, busybox_ref):
    out = rootless("images", check=True).stdout.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    repo, tag = busybox_ref.rsplit(":", 1)
    row = out[1].split()
    assert row[:3] == [repo, tag, pulled[:12]]
    assert rootless("images", "-q", check=True).stdout.split() == [pulled[:12]]
    [data] = json.loads(rootless("images", "--format", "json", check=True).stdout)
    # podman 4.3 prints RepoTags null in `images --format json`; the names are in Names
    assert data["Id"] == pulled and data["Names"] == [busybox_ref] and data["RepoTags"] is None
    assert data["Size"] > 2_000_000
    fmt = rootless(
        "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", check=True
    ).stdout.strip()
    assert fmt == f"{busybox_ref} {pulled[:12]}"


def test_inspect_image(rootless, pulled, busybox_ref):
    [data] = json.loads(rootless("inspect", busybox_ref, check=True).stdout)
    assert data["Id"] == pulled
    assert data["Digest"].startswith("sha256:")
    assert data["Config"]["Env"] == [oci.PATH_ENV]
    assert data["Config"]["Labels"] == {"org.opencontainers.image.title": "busybox-test"}
    assert data["Os"] == "linux" and data["Architecture"] == "amd64"
    assert len(data["RootFS"]["Layers"]) == 3
    # by short id, and through `image inspect`, with a template
    out = rootless("image", "inspect", "--format", "{{.Config.Cmd}}", pulled[:8], check=True).stdout
    assert out.strip() == "[sh]"
    cp = rootless("inspect", "nosuch:image")
    assert cp.returncode == 125 and "nosuch" in cp.stderr


def test_tag_and_rmi_by_name(rootless, pulled, busybox_ref):
    rootless("tag", busybox_ref, "mine:v1", "example.com/team/app:2", check=True)
    [data] = json.loads(rootless("inspect", "mine:v1", check=True).stdout)
    assert sorted(data["RepoTags"]) == sorted(
        [busybox_ref, "localhost/mine:v1", "example.com/team/app:2"]
    )
    cp = rootless("rmi", "mine:v1", check=True)
    assert "Untagged: localhost/mine:v1" in cp.stdout
    assert rootless("inspect", "mine:v1").returncode == 125
    # by id with several names: refused without -f
    cp = rootless("rmi", pulled[:12])
    assert cp.returncode == 125 and "please force removal" in cp.stderr
    rootless("rmi", "-f", pulled[:12], check=True)
    assert rootless("images", "-q", check=True).stdout == ""
    root = store_dir(rootless)
    assert os.listdir(os.path.join(root, "layers")) == []
    assert os.listdir(os.path.join(root, "blobs", "sha256")) == []


def test_rmi_refuses_while_a_container_uses_the_image(rootless, pulled, busybox_ref):
    # a stopped container (no --rm) keeps using its image
    rootless("run", "--name", "web", "--network", "none", busybox_ref, "true", check=True)
    [ctr] = json.loads(rootless("inspect", "web", check=True).stdout)
    cp = rootless("rmi", busybox_ref)
    assert cp.returncode == 2 and f"image used by {ctr['Id']}" in cp.stderr
    assert rootless("images", "-q", check=True).stdout.strip() == pulled[:12]
    rootless("rmi", "-f", busybox_ref, check=True)
    assert rootless("images", "-q", check=True).stdout == ""


def test_image_prune_removes_dangling(rootless, registry, pulled, busybox_ref, tmp_path):
    layout = str(tmp_path / "tiny")
    oci.add_image(
        layout,
        "latest",
        [oci.make_tar([oci.Entry("etc", "dir"), oci.Entry("etc/tiny", data=b"t")])],
    )
    digest = registry.push(layout, "latest", "tiny:latest")
    dangling = rootless("pull", "-q", f"{registry.host}/tiny@{digest}", check=True).stdout.strip()
    assert sorted(rootless("images", "-q", check=True).stdout.split()) == sorted(
        [pulled[:12], dangling[:12]]
    )
    cp = rootless("image", "prune", "-f", check=True)
    assert cp.stdout.split() == [dangling]
    assert rootless("images", "-q", check=True).stdout.split() == [pulled[:12]]  # named: kept
    rootless("image", "prune", "-a", "-f", check=True)
    assert rootless("images", "-q", check=True).stdout == ""
    assert os.listdir(os.path.join(store_dir(rootless), "layers")) == []


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_and_load_roundtrip(rootless, pulled, busybox_ref, tmp_path, fmt):
    out = tmp_path / "img.tar"
    rootless("save", "--format", fmt, "-o", str(out), busybox_ref, check=True)
    with tarfile.open(out) as tf:
        names = tf.getnames()
    assert (
        ("manifest.json" in names)
        if fmt == "docker-archive"
        else ("index.json" in names and "oci-layout" in names)
    )
    rootless("rmi", busybox_ref, check=True)
    cp = rootless("load", "-i", str(out), check=True)
    assert f"Loaded image: {busybox_ref}" in cp.stdout
    [data] = json.loads(rootless("inspect", busybox_ref, check=True).stdout)
    assert data["Id"] == pulled
    # through stdin and stdout too
    cp = rootless("save", "--format", fmt, busybox_ref, text=False, check=True)
    rootless("rmi", busybox_ref, check=True)
    cp = rootless("load", input=cp.stdout, check=True)
    assert busybox_ref.encode() in cp.stdout
    assert rootless("images", "-q", check=True).stdout.strip() == pulled[:12]


def test_load_oci_archive_built_by_the_tests(rootless, tmp_path):
    layout = str(tmp_path / "layout")
    oci.add_image(layout, "latest", oci.busybox_layers(), config=oci.BUSYBOX_CONFIG)
    out = str(tmp_path / "layout.tar")
    oci.write_oci_archive(layout, out)
    cp = rootless("load", "-i", out, check=True)
    assert "Loaded image" in cp.stdout
    [image_id] = rootless("images", "-q", "--no-trunc", check=True).stdout.split()
    [data] = json.loads(rootless("inspect", image_id, check=True).stdout)
    assert data["Config"]["Cmd"] == ["sh"]


def test_load_rejects_garbage(rootless, tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar")
    cp = rootless("load", "-i", str(bad))
    assert cp.returncode == 125 and "tar" in cp.stderr
    assert os.listdir(os.path.join(store_dir(rootless), "tmp")) == []


def test_short_name_finds_a_local_image_even_when_an_alias_points_elsewhere(
    rootless, pulled, busybox_ref
):
    # podman's shortnames.conf aliases busybox to docker.io; a tagged local localhost/busybox still wins
    conf = os.path.join(rootless.config_dir, "containers", "registries.conf")
    os.makedirs(os.path.dirname(conf), exist_ok=True)
    with open(conf, "w") as f:
        f.write('[aliases]\n"busybox" = "docker.io/library/busybox"\n')
    rootless("tag", busybox_ref, "busybox", check=True)
    cp = rootless(
        "run", "--rm", "--network", "none", "busybox", "cat", "/etc/layer2-added", check=True
    )
    assert cp.stdout == "added in layer 2\n"
    assert "Trying to pull" not in cp.stderr
