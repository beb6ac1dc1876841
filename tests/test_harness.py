"""The harness itself: the unprivileged user, the registry, and the offline test image."""

import json
import os
import pwd

import httpx


def test_runs_unprivileged_with_subordinate_ids():
    assert os.geteuid() != 0, "container tests must run as the unprivileged test user"
    user = pwd.getpwuid(os.geteuid()).pw_name
    with open("/etc/subuid") as f:
        assert any(line.startswith(user + ":") for line in f)
    runtime = os.environ["XDG_RUNTIME_DIR"]
    st = os.stat(runtime)
    assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o700
    assert os.access("/dev/fuse", os.R_OK | os.W_OK)
    assert os.access("/dev/net/tun", os.R_OK | os.W_OK)


def test_registry_serves_pushed_images(registry, busybox_ref):
    accept = "application/vnd.oci.image.manifest.v1+json"
    r = httpx.get(f"{registry.url}/v2/busybox/manifests/latest", headers={"Accept": accept})
    assert r.status_code == 200
    manifest = r.json()
    assert len(manifest["layers"]) == 3
    r = httpx.get(
        f"{registry.url}/v2/busybox/manifests/docker",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert r.json()["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    tags = httpx.get(f"{registry.url}/v2/busybox/tags/list").json()["tags"]
    assert sorted(tags) == ["baduid", "docker", "latest"]


def test_busybox_layout_is_valid_oci(busybox_layout):
    with open(os.path.join(busybox_layout, "index.json")) as f:
        index = json.load(f)
    refs = {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]}
    assert refs == {"latest", "baduid"}
