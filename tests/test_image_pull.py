"""Pulling from a real local registry: formats, multi-arch, digests, registries.conf, integrity,
concurrency, id ranges and the store's crash safety."""

from __future__ import annotations

import json
import os
import pwd
import subprocess

import pytest
from support import oci
from support.proxy import FlipProxy

from rootless import idmap


def mapped(container_id: int) -> tuple[int, int]:
    """The host uid and gid a container id lands on for the test user (from /etc/subuid, subgid)."""
    m = idmap.for_user()
    return m.to_host_uid(container_id), m.to_host_gid(container_id)


def store_dir(rootless) -> str:
    return os.path.join(rootless.data_dir, "rootless")


def listing(rootless, sub: str) -> list[str]:
    try:
        return sorted(os.listdir(os.path.join(store_dir(rootless), sub)))
    except FileNotFoundError:
        return []


def inspect(rootless, name: str) -> dict:
    cp = rootless("inspect", name, check=True)
    [data] = json.loads(cp.stdout)
    return data


def layer_file(rootless, data: dict, layer: int, path: str) -> str:
    diff = data["RootFS"]["Layers"][layer].split(":", 1)[1]
    return os.path.join(store_dir(rootless), "layers", diff, "diff", path)


def test_pull_oci_by_tag(rootless, registry, busybox_ref):
    rootless.trust(registry)
    cp = rootless("pull", busybox_ref, check=True)
    image_id = cp.stdout.strip()
    assert len(image_id) == 64
    assert "Copying blob" in cp.stderr  # plain progress lines when not on a terminal
    data = inspect(rootless, busybox_ref)
    assert data["Id"] == image_id
    assert data["RepoTags"] == [busybox_ref]
    assert data["Config"]["Cmd"] == ["sh"]
    assert data["Config"]["ExposedPorts"] == {"80/tcp": {}}
    assert data["ManifestType"] == "application/vnd.oci.image.manifest.v1+json"
    assert len(data["RootFS"]["Layers"]) == 3
    # ownership lands as mapped ids: container uid 1000 -> first subuid + 999
    st = os.lstat(layer_file(rootless, data, 0, "opt/owned-1000"))
    assert (st.st_uid, st.st_gid) == mapped(1000)
    st = os.lstat(layer_file(rootless, data, 0, "bin/busybox"))
    assert st.st_uid == os.getuid() and st.st_mode & 0o777 == 0o755
    assert st.st_mtime == oci.EPOCH
    hl1 = os.lstat(layer_file(rootless, data, 0, "opt/hl1"))
    hl2 = os.lstat(layer_file(rootless, data, 0, "opt/hl2"))
    assert hl1.st_ino == hl2.st_ino and hl1.st_nlink == 2
    assert os.readlink(layer_file(rootless, data, 0, "opt/link")) == "keep/k"
    assert os.stat(layer_file(rootless, data, 0, "tmp")).st_mode & 0o7777 == 0o1777
    # whiteouts as 0/0 character devices, opaque dirs as the user.overlay.opaque xattr
    wh = os.lstat(layer_file(rootless, data, 1, "etc/motd-layer1"))
    assert (
        os.major(wh.st_rdev) == 0
        and os.minor(wh.st_rdev) == 0
        and (wh.st_mode & 0o170000) == 0o020000
    )
    assert os.path.exists(layer_file(rootless, data, 1, "opt/gone"))
    assert os.getxattr(layer_file(rootless, data, 1, "opt/data"), "user.overlay.opaque") == b"y"
    assert not os.path.exists(layer_file(rootless, data, 1, "etc/.wh.motd-layer1"))
    # a second pull downloads nothing
    cp = rootless("pull", busybox_ref, check=True)
    assert cp.stdout.strip() == image_id
    assert "skipped: already exists" in cp.stderr
    assert listing(rootless, "tmp") == []


def test_pull_quiet_prints_only_the_id(rootless, registry, busybox_ref):
    rootless.trust(registry)
    cp = rootless("pull", "-q", busybox_ref, check=True)
    assert cp.stderr == ""
    assert len(cp.stdout.strip()) == 64


def test_pull_docker_v2s2(rootless, registry, busybox_ref):
    rootless.trust(registry)
    ref = busybox_ref.replace(":latest", ":docker")
    rootless("pull", ref, check=True)
    data = inspect(rootless, ref)
    assert data["ManifestType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert data["Config"]["Cmd"] == ["sh"]


def test_pull_by_digest(rootless, registry, busybox_layout, busybox_ref):
    rootless.trust(registry)
    digest = registry.push(busybox_layout, "latest", "busybox:bydigest")
    ref = f"{registry.host}/busybox@{digest}"
    rootless("pull", ref, check=True)
    data = inspect(rootless, ref)
    assert data["Digest"] == digest
    assert f"{registry.host}/busybox@{digest}" in data["RepoDigests"]
    assert (
        rootless("images", "--format", "{{.Repository}} {{.Tag}}", check=True).stdout.strip()
        == "<none> <none>"
    )


def test_short_name_search_registry(rootless, registry, busybox_ref):
    rootless.trust(registry)
    cp = rootless("pull", "busybox", check=True)
    assert rootless("images", "-q", check=True).stdout.strip() == cp.stdout.strip()[:12]
    assert inspect(rootless, "busybox")["RepoTags"] == [busybox_ref]


def test_plain_http_needs_trust(rootless, registry, busybox_ref):
    cp = rootless("pull", busybox_ref)
    assert cp.returncode == 125
    assert "--tls-verify=false" in cp.stderr and "Traceback" not in cp.stderr
    rootless("pull", "--tls-verify=false", busybox_ref, check=True)


@pytest.fixture(scope="module")
def multiarch_ref(registry, tmp_path_factory):
    layout = str(tmp_path_factory.mktemp("multiarch") / "layout")
    descs = []
    for arch, variant in (("amd64", None), ("arm64", "v8"), ("arm", "v7")):
        tar = oci.make_tar([oci.Entry("etc", "dir"), oci.Entry("etc/arch", data=arch.encode())])
        descs.append(
            oci.add_image(layout, arch, [tar], architecture=arch, variant=variant, index=False)
        )
    oci.add_index(layout, "multi", descs)
    registry.push(layout, "multi", "multi:oci", fmt="oci")
    registry.push(layout, "multi", "multi:docker", fmt="docker")
    return f"{registry.host}/multi"


@pytest.mark.parametrize("tag", ["oci", "docker"])
def test_multiarch_default_and_platform(rootless, registry, multiarch_ref, tag):
    rootless.trust(registry)
    ref = f"{multiarch_ref}:{tag}"
    rootless("pull", ref, check=True)
    data = inspect(rootless, ref)
    assert data["Architecture"] == "amd64"
    with open(layer_file(rootless, data, 0, "etc/arch")) as f:
        assert f.read() == "amd64"
    rootless("pull", "--platform", "linux/arm64", ref, check=True)
    data = inspect(rootless, ref)
    assert data["Architecture"] == "arm64"
    cp = rootless("pull", "--platform", "linux/s390x", ref)
    assert cp.returncode == 125 and "linux/s390x" in cp.stderr and "linux/arm64/v8" in cp.stderr


def test_registries_conf_alias_and_mirror(rootless, registry, busybox_ref):
    path = os.path.join(rootless.config_dir, "containers", "registries.conf")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(
            "unqualified-search-registries = []\n"
            "[aliases]\n"
            f'"mybox" = "{registry.host}/busybox"\n'
            "[[registry]]\n"
            f'location = "{registry.host}"\n'
            "insecure = true\n"
            "[[registry]]\n"
            'location = "registry.invalid/mirrored"\n'
            "[[registry.mirror]]\n"
            f'location = "{registry.host}"\n'
            "insecure = true\n"
        )
    rootless("pull", "mybox", check=True)
    assert inspect(rootless, "mybox")["RepoTags"] == [busybox_ref]
    # registry.invalid/mirrored/busybox is served by the mirror at registry.host/busybox
    rootless("pull", "registry.invalid/mirrored/busybox:latest", check=True)
    assert (
        "registry.invalid/mirrored/busybox:latest"
        in inspect(rootless, "registry.invalid/mirrored/busybox")["RepoTags"]
    )
    cp = rootless("pull", "nothere")
    assert cp.returncode == 125 and "unqualified-search-registries" in cp.stderr


def test_corrupted_blob_in_transit(rootless, registry, busybox_layout, busybox_ref):
    with open(os.path.join(busybox_layout, "index.json")) as f:
        index = json.load(f)
    desc = next(
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == "latest"
    )
    with open(os.path.join(busybox_layout, "blobs", *desc["digest"].split(":"))) as f:
        manifest = json.load(f)
    big = max(manifest["layers"], key=lambda x: x["size"])["digest"]
    proxy = FlipProxy(registry.url, {big}).start()
    try:
        cp = rootless("pull", "--tls-verify=false", f"{proxy.host}/busybox:latest")
    finally:
        proxy.stop()
    assert proxy.hits >= 1
    assert cp.returncode == 125
    assert "digest" in cp.stderr and "Traceback" not in cp.stderr
    assert big.split(":")[1] not in listing(rootless, "blobs/sha256")
    assert listing(rootless, "images") == []
    assert listing(rootless, "tmp") == []


def test_two_parallel_pulls(rootless, registry, busybox_ref):
    rootless.trust(registry)
    procs = [
        subprocess.Popen(
            [*rootless.argv0, "pull", busybox_ref],
            env=rootless.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0]
    assert len(listing(rootless, "images")) == 1
    assert len(listing(rootless, "layers")) == 3
    assert listing(rootless, "tmp") == []


def test_id_outside_subuid_range(rootless, registry, busybox_ref):
    rootless.trust(registry)
    ref = busybox_ref.replace(":latest", ":baduid")
    cp = rootless("pull", ref)
    assert cp.returncode == 125
    assert "70000" in cp.stderr and "docs/subuid.md" in cp.stderr
    assert len(cp.stderr.strip().splitlines()[-1]) < 400
    assert listing(rootless, "images") == []
    assert listing(rootless, "tmp") == []
    for name in listing(rootless, "layers"):  # whatever layers were finished are complete
        assert os.path.isdir(os.path.join(store_dir(rootless), "layers", name, "diff"))


def test_stale_tmp_is_cleaned(rootless, registry, busybox_ref):
    rootless.trust(registry)
    stale = os.path.join(store_dir(rootless), "tmp", "12345-deadbeef")
    os.makedirs(os.path.join(stale, "diff", "etc"))
    os.utime(stale, (1, 1))
    with open(stale + ".lock", "w"):
        pass  # a lock file nobody holds: its owner was killed
    rootless("pull", busybox_ref, check=True)
    assert listing(rootless, "tmp") == []


def test_missing_image_and_bad_reference(rootless, registry, busybox_ref):
    rootless.trust(registry)
    cp = rootless("pull", f"{registry.host}/nosuch:latest")
    assert cp.returncode == 125 and "not found" in cp.stderr
    cp = rootless("pull", "UPPER/case")
    assert cp.returncode == 125 and "lowercase" in cp.stderr


def busybox_layers_desc(layout: str) -> list[dict]:
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    desc = next(
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == "latest"
    )
    with open(os.path.join(layout, "blobs", *desc["digest"].split(":"))) as f:
        return json.load(f)["layers"]


def test_transient_errors_are_retried(rootless, registry, busybox_layout, busybox_ref):
    big = max(busybox_layers_desc(busybox_layout), key=lambda x: x["size"])["digest"]
    proxy = FlipProxy(registry.url, fail_first={big: 2}).start()
    try:
        rootless("pull", "--tls-verify=false", f"{proxy.host}/busybox:latest", check=True)
    finally:
        proxy.stop()
    assert proxy.failed == 2


def test_killed_pull_leaves_old_state_and_next_pull_recovers(
    rootless, registry, busybox_layout, busybox_ref
):
    import signal
    import time

    big = max(busybox_layers_desc(busybox_layout), key=lambda x: x["size"])["digest"]
    proxy = FlipProxy(registry.url, stall={big}).start()
    try:
        p = subprocess.Popen(
            [*rootless.argv0, "pull", "--tls-verify=false", f"{proxy.host}/busybox:latest"],
            env=rootless.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        # wait until the small layers are in and the big blob's download is under way
        while time.monotonic() < deadline and not (
            [n for n in listing(rootless, "tmp") if not n.endswith(".lock")]
            and len(listing(rootless, "layers")) >= 2
        ):
            time.sleep(0.05)
        assert p.poll() is None
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    finally:
        proxy.stop()
    assert listing(rootless, "images") == []
    for name in listing(rootless, "layers"):
        assert os.path.isdir(os.path.join(store_dir(rootless), "layers", name, "diff"))
    assert big.split(":")[1] not in listing(rootless, "blobs/sha256")
    rootless.trust(registry)
    rootless("pull", busybox_ref, check=True)
    assert listing(rootless, "tmp") == []
    assert len(listing(rootless, "layers")) == 3


def test_helper_process_extraction_path(rootless, registry, busybox_ref):
    """The fallback used when the caller already has threads: one helper process per layer."""
    rootless.trust(registry)
    env = {"ROOTLESS_EXTRACT_HELPER": "1"}
    rootless("pull", busybox_ref, check=True, env=env)
    data = inspect(rootless, busybox_ref)
    st = os.lstat(layer_file(rootless, data, 0, "opt/owned-1000"))
    assert (st.st_uid, st.st_gid) == mapped(1000)
    cp = rootless("pull", busybox_ref.replace(":latest", ":baduid"), env=env)
    assert cp.returncode == 125 and "docs/subuid.md" in cp.stderr
    assert pwd.getpwuid(os.getuid()).pw_name in cp.stderr
    assert listing(rootless, "tmp") == []


def test_terminal_progress_shows_extraction(rootless, registry, busybox_ref):
    """On a terminal each layer's bar goes from its download through "extracting" to "done"."""
    from support.term import Terminal

    rootless.trust(registry)
    term = Terminal([*rootless.argv0, "pull", busybox_ref], rootless.env)
    try:
        assert term.wait(120) == 0, term.out[-800:]
    finally:
        term.close()
    screen = term.out.decode(errors="replace")
    assert "extracting" in screen
    last = screen.rsplit("Copying config", 1)[0].rsplit("\x1b[J", 1)[-1]
    bars = [x for x in last.splitlines() if x.startswith("Copying blob")]
    assert len(bars) == 3 and all(x.rstrip().endswith("done") for x in bars), last
