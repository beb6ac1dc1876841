"""Hostile images: layers, registry answers and archives.

Layer tarballs: every way out of the layer is refused and nothing lands outside the store. Each
image has one layer built with tarfile (support.oci.make_tar) and is pushed to the real registry;
the pull must fail with a one-line error (or, for a harmless replacement, succeed) and the target
outside the store must stay untouched. A failed layer leaves nothing in the store.

Registry answers (support.proxy.FaultProxy) and archives (`load`) with fields of the wrong JSON
type, digests that would walk out of the store, broken token answers, truncated or non-tar
streams: each is one `Error:` line that names the problem, exit 125, no Python exception name,
and no image or tmp entry left. (Timeouts, size caps and retries: test_registry_limits.py.)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile

import pytest
from support import oci
from support.oci import Entry
from support.proxy import FaultProxy, Reply


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


# --- hostile registry answers and archives: one `Error:` line, never a Python type -------------
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
PYTHON_NAMES = re.compile(
    r"Traceback|\b\w+(Error|Exception)\b|TooManyRedirects|httpx|h11|internal error"
)
BAD = "sha256:../../../../../../../etc/passwd"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def one_error(cp, *fragments: str) -> None:
    stderr = cp.stderr.decode() if isinstance(cp.stderr, bytes) else cp.stderr
    assert cp.returncode == 125, (cp.returncode, stderr)
    errors = [x for x in stderr.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1, stderr
    assert not PYTHON_NAMES.search(stderr), stderr
    for f in fragments:
        assert f in errors[0], (f, errors[0])


def good_image() -> tuple[dict, bytes, bytes]:
    """(manifest, config, layer) of a one-layer image."""
    layer = oci.make_tar([Entry("etc", "dir"), Entry("etc/ok", data=b"ok")])
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
        }
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": sha(layer),
                "size": len(layer),
            }
        ],
    }
    return manifest, config, layer


def _layer0(m: dict, **kw) -> dict:
    return dict(m, layers=[dict(m["layers"][0], **kw)])


def _config(cfg: bytes):
    """A manifest change that serves `cfg` as the config."""
    return lambda m: (
        dict(m, config=dict(m["config"], digest=sha(cfg), size=len(cfg))),
        {sha(cfg): cfg},
    )


MANIFEST_CASES = {
    "list": (lambda m: b"[1, 2]", "not a JSON object"),
    "not-json": (lambda m: b"<html>oops</html>", "not JSON"),
    "nested-deep": (lambda m: b"[" * 200_000, "not JSON"),
    "config-5": (lambda m: dict(m, config=5), "config descriptor"),
    "layers-text": (lambda m: dict(m, layers="x"), "layers is not a list"),
    "layer-5": (lambda m: dict(m, layers=[5]), "layer 1"),
    "layer-digest-escape": (lambda m: _layer0(m, digest=BAD), "invalid digest"),
    "config-digest-escape": (
        lambda m: dict(m, config=dict(m["config"], digest=BAD)),
        "invalid digest",
    ),
    "size-text": (lambda m: _layer0(m, size="12"), "invalid size"),
    "size-negative": (lambda m: _layer0(m, size=-1), "invalid size"),
    "size-bool": (lambda m: _layer0(m, size=True), "invalid size"),
    "mediatype-5": (lambda m: dict(m, mediaType=5), "mediaType"),
    "index-dict": (
        lambda m: {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": {}},
        "not a list",
    ),
    "index-platform": (
        lambda m: {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": sha(b"x"), "size": 1, "platform": 5}
            ],
        },
        "platform",
    ),
    "index-digest-escape": (
        lambda m: {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": BAD, "size": 1}],
        },
        "invalid digest",
    ),
    "config-list": (_config(b"[]"), "not a JSON object"),
    "config-rootfs-list": (_config(b'{"rootfs": []}'), "rootfs"),
    "config-diffid-escape": (
        _config(json.dumps({"rootfs": {"diff_ids": [BAD]}}).encode()),
        "invalid digest",
    ),
    "config-diffids-count": (
        _config(b'{"rootfs": {"diff_ids": []}}'),
        "0 layers but the manifest 1",
    ),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_hostile_registry_documents(rootless, registry, case):
    manifest, config, layer = good_image()
    change, fragment = MANIFEST_CASES[case]
    out = change(manifest)
    blobs = {sha(config): config, sha(layer): layer}
    if isinstance(out, tuple):
        out, more = out
        blobs.update(more)
    body = out if isinstance(out, bytes) else json.dumps(out).encode()
    mt = (
        out.get("mediaType")
        if isinstance(out, dict) and isinstance(out.get("mediaType"), str)
        else OCI_MANIFEST
    )
    with FaultProxy(registry.url) as fault:
        fault.replies["/manifests/latest"] = Reply(200, body, {"Content-Type": mt})
        for d, b in blobs.items():
            fault.replies[f"/blobs/{d}"] = Reply(200, b)
        cp = rootless("pull", "--tls-verify=false", f"{fault.host}/evil/doc:latest", timeout=60)
    one_error(cp, fragment)
    assert_nothing_stored(rootless)


def _token(realm: str, body: Reply | None, scheme: str = "Bearer"):
    replies = {
        "=/v2/": Reply(401, b"", {"WWW-Authenticate": f'{scheme} realm="{realm}",service="x"'})
    }
    if body is not None:
        replies["/token"] = body
    return replies


TOKEN_CASES = {
    "list": (lambda p: _token(f"{p}/token", Reply(200, b"[1]")), "no JSON token"),
    "token-5": (lambda p: _token(f"{p}/token", Reply(200, b'{"token": 5}')), "no usable token"),
    "token-newline": (
        lambda p: _token(f"{p}/token", Reply(200, b'{"token": "a\\nb"}')),
        "no usable token",
    ),
    "huge": (lambda p: _token(f"{p}/token", Reply(200, 30 << 20, chunked=True)), "1 MiB"),
    "realm-garbage": (lambda p: _token("::::", None), "token"),
    "realm-file": (lambda p: _token("file:///etc/passwd", None), "token"),
    "negotiate": (lambda p: _token(f"{p}/token", None, "Negotiate"), "unsupported authentication"),
}


@pytest.mark.parametrize("case", sorted(TOKEN_CASES))
def test_hostile_token_answers(rootless, registry, busybox_ref, case):
    make, fragment = TOKEN_CASES[case]
    with FaultProxy(registry.url) as fault:
        fault.replies.update(make(fault.url))
        cp = rootless("pull", "--tls-verify=false", f"{fault.host}/busybox:latest", timeout=60)
    one_error(cp, fragment)
    assert_nothing_stored(rootless)


def _tar(path: str, members: dict[str, bytes], mode: str = "w") -> str:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


def _docker_archive(entries, config: bytes | None = None) -> dict[str, bytes]:
    _, cfg, layer = good_image()
    return {"manifest.json": json.dumps(entries).encode(), "c.json": config or cfg, "l.tar": layer}


GOOD_ENTRY = {"Config": "c.json", "Layers": ["l.tar"], "RepoTags": ["good:v1"]}
ARCHIVE_CASES = {
    "config-5": (_docker_archive([dict(GOOD_ENTRY, Config=5)]), "Config"),
    "manifest-dict": (_docker_archive({"a": 1}), "not a list of images"),
    "manifest-empty": (_docker_archive([]), "not a list of images"),
    "entry-5": (_docker_archive([5]), "not an object"),
    "layers-text": (_docker_archive([dict(GOOD_ENTRY, Layers="l.tar")]), "Layers"),
    "layers-5": (_docker_archive([dict(GOOD_ENTRY, Layers=[5])]), "Layers"),
    "repotags-5": (_docker_archive([dict(GOOD_ENTRY, RepoTags=5)]), "RepoTags"),
    "missing-layer": (_docker_archive([dict(GOOD_ENTRY, Layers=["nope.tar"])]), "lacks nope.tar"),
    "config-not-json": (_docker_archive([GOOD_ENTRY], b"{nope"), "not JSON"),
    "config-list": (_docker_archive([GOOD_ENTRY], b"[]"), "not a JSON object"),
    "config-rootfs-list": (_docker_archive([GOOD_ENTRY], b'{"rootfs": []}'), "rootfs"),
    "config-diffid-escape": (
        _docker_archive([GOOD_ENTRY], json.dumps({"rootfs": {"diff_ids": [BAD]}}).encode()),
        "invalid digest",
    ),
    "too-many-layers": (_docker_archive([dict(GOOD_ENTRY, Layers=["l.tar"] * 501)]), "501 layers"),
    "oci-manifests-dict": ({"index.json": b'{"schemaVersion": 2, "manifests": {}}'}, "not a list"),
    "oci-digest-escape": (
        {"index.json": json.dumps({"manifests": [{"digest": BAD, "size": 1}]}).encode()},
        "invalid digest",
    ),
    "oci-index-not-json": ({"index.json": b"\xff\xfe"}, "not JSON"),
    "neither": ({"hello.txt": b"hi"}, "neither a docker-archive"),
}


@pytest.mark.parametrize("case", sorted(ARCHIVE_CASES))
def test_hostile_archives(rootless, tmp_path, case):
    members, fragment = ARCHIVE_CASES[case]
    path = _tar(str(tmp_path / "evil.tar"), members)
    one_error(rootless("load", "-i", path), fragment)
    assert_nothing_stored(rootless)


def test_broken_archive_streams(rootless, tmp_path):
    good = _tar(str(tmp_path / "good.tar.gz"), _docker_archive([GOOD_ENTRY]), "w:gz")
    data = open(good, "rb").read()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    one_error(rootless("load", "-i", str(tmp_path / "cut.tar.gz")), "truncated")
    (tmp_path / "junk.tar.bz2").write_bytes(b"BZh91AY&SY" + b"x" * 300)
    one_error(rootless("load", "-i", str(tmp_path / "junk.tar.bz2")), "not a tar file")
    one_error(rootless("load", input=b"\x1f\x8b" + b"\0" * 100), "tar")
    assert_nothing_stored(rootless)
    cp = rootless("load", "-i", good, check=True)  # and the good one loads
    assert cp.stdout == "Loaded image: docker.io/library/good:v1\n"


CONFIG_CASES = {
    "search-5": ("registries.conf", "unqualified-search-registries = 5\n", "must be a list"),
    "search-items": ("registries.conf", "unqualified-search-registries = [1]\n", "a string"),
    "aliases-list": ("registries.conf", "aliases = [1]\n", "[aliases]"),
    "registry-table": ("registries.conf", "registry = 5\n", "[[registry]]"),
    "mirror-string": (
        "registries.conf",
        '[[registry]]\nlocation = "a.example"\nmirror = "b.example"\n',
        "mirrors",
    ),
    "insecure-text": (
        "registries.conf",
        '[[registry]]\nlocation = "a.example"\ninsecure = "yes"\n',
        "true or false",
    ),
    "prefix-5": ("registries.conf", "[[registry]]\nprefix = 5\n", "prefix"),
    "retry-text": ("containers.conf", '[engine]\nretry = "many"\n', "retry"),
    "retry-delay-bad": ("containers.conf", '[engine]\nretry_delay = "soon"\n', "retry_delay"),
    "containers-conf-toml": ("containers.conf", "[engine\n", "TOML"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_hostile_config_files(rootless, case):
    name, text, fragment = CONFIG_CASES[case]
    path = os.path.join(rootless.config_dir, "containers", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    one_error(rootless("pull", "a.example/x:v1", timeout=60), fragment, name)


def test_malformed_auth_files_are_read_as_no_credentials(rootless, registry, busybox_ref):
    rootless.trust(registry)
    auth = os.path.join(rootless.runtime_dir, "containers", "auth.json")
    os.makedirs(os.path.dirname(auth), exist_ok=True)
    for data in ({"auths": [1]}, {"auths": {registry.host: {"auth": 5}}}):
        with open(auth, "w") as f:
            json.dump(data, f)
        rootless("pull", "-q", busybox_ref, check=True)  # anonymous, as with no entry


def test_hostile_upload_answers(rootless, registry, busybox_ref):
    rootless.trust(registry)
    rootless("pull", "-q", busybox_ref, check=True)
    with FaultProxy(registry.url, methods=("POST",)) as fault:
        fault.replies["/blobs/uploads/"] = Reply(202, b"", {"Location": "http://[::1"})
        cp = rootless("push", "--tls-verify=false", busybox_ref, f"{fault.host}/up:v1")
        one_error(cp, "bad location")
        fault.replies["/blobs/uploads/"] = Reply(202, b"", {"Location": "ftp://elsewhere/x"})
        one_error(rootless("push", "--tls-verify=false", busybox_ref, f"{fault.host}/up:v1"), "ftp")
        fault.replies["/blobs/uploads/"] = Reply(
            500, b'{"errors": [{"code": "UNKNOWN", "message": "disk on fire"}]}'
        )
        cp = rootless(
            "push", "--tls-verify=false", "--retry", "0", busybox_ref, f"{fault.host}/up:v1"
        )
        one_error(cp, "HTTP 500", "disk on fire")
