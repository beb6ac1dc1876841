"""`push` to a real registry (issue #16), and `save -m` / save keeping the name asked for.

Push then pull into a fresh store by digest gives the same image (inspect's Digest and Id), and
skopeo sees in the registry what was pushed. The wire protocol is watched through
support.proxy.FaultProxy's request log: HEAD before upload, cross-repository mounts, monolithic
PUTs and chunked PATCHes. Auth as for pull: Bearer tokens (scope pull,push) and Basic, through
--creds, --authfile and `login`. Every bad flag is one `Error:` line, exit 125; Ctrl-C mid-push
leaves the store as it was.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import tarfile
import tempfile
import time

import pytest
from conftest import Rootless
from support import oci
from support.oci import Entry
from support.proxy import FaultProxy
from support.registry import Registry
from support.tokenserver import TokenRegistry, TokenServer

USER, PASSWORD = "bob", "push-pw"
PYTHON_NAMES = re.compile(r"Traceback|\b\w+(Error|Exception)\b|httpx|internal error")
STEPS = ["Getting image source signatures", "Writing manifest to image destination"]


def inspect(rootless, name: str) -> dict:
    [data] = json.loads(rootless("inspect", name, check=True).stdout)
    return data


def skopeo(*args: str) -> str:
    cp = subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, timeout=60, env=_skopeo_env()
    )
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def _skopeo_env() -> dict:
    """skopeo as an anonymous reader: none of the user's credentials, and a private runtime dir of
    its own (without one it falls back to /run/containers/UID, which a root-run podman may have made
    root-only on the host, and fails with "permission denied")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_AUTH", "XDG_"))}
    runtime = tempfile.mkdtemp(prefix="skopeo-run-")
    auth = os.path.join(runtime, "auth.json")
    with open(auth, "w") as f:
        f.write("{}")
    return {**env, "XDG_RUNTIME_DIR": runtime, "REGISTRY_AUTH_FILE": auth}


def one_error(cp, *fragments: str) -> str:
    assert cp.returncode == 125, (cp.returncode, cp.stdout, cp.stderr)
    lines = [x for x in cp.stderr.splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("Error:")]
    assert len(errors) == 1, cp.stderr
    assert not PYTHON_NAMES.search(cp.stderr), cp.stderr
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


@pytest.fixture
def other(tmp_path):
    """A second, empty store: where a pushed image is pulled back."""
    r = Rootless(str(tmp_path / "other"))
    yield r
    r.cleanup()


@pytest.fixture
def pulled(rootless, registry, busybox_ref):
    rootless.trust(registry)
    rootless("pull", "-q", busybox_ref, check=True)
    return inspect(rootless, busybox_ref)


def test_push_then_pull_by_digest_gives_the_same_image(
    rootless, other, registry, busybox_ref, pulled, tmp_path
):
    dest = f"{registry.host}/pushed/busybox:v1"
    digestfile = tmp_path / "digest"
    cp = rootless("push", busybox_ref, dest, "--digestfile", str(digestfile), check=True)
    assert cp.stdout == ""
    lines = cp.stderr.splitlines()
    assert [lines[0], lines[-1]] == STEPS, cp.stderr
    layers = [x["Digest"] for x in pulled["Layers"]] if "Layers" in pulled else None
    blobs = sorted(x.removeprefix("Copying blob ") for x in lines if x.startswith("Copying blob"))
    assert len(blobs) == 3 and all(b.startswith("sha256:") for b in blobs)
    assert f"Copying config sha256:{pulled['Id']}" in lines
    # an unchanged image keeps its manifest, so the digest is the one it was pulled with
    digest = digestfile.read_text()
    assert digest == pulled["Digest"]
    # the registry holds what was pushed (skopeo's view)
    raw = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{dest}")
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == digest
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{dest}"))
    assert info["Digest"] == digest
    assert sorted(info["Layers"]) == blobs
    if layers:
        assert sorted(layers) == blobs
    # and a fresh store pulls it back by digest: same image, and it runs
    other.trust(registry)
    other("pull", f"{registry.host}/pushed/busybox@{digest}", check=True)
    back = inspect(other, f"{registry.host}/pushed/busybox@{digest}")
    assert (back["Digest"], back["Id"]) == (digest, pulled["Id"])
    cp = other(
        "run", "--rm", "--network", "none", back["Id"], "cat", "/etc/layer2-added", check=True
    )
    assert cp.stdout == "added in layer 2\n"
    # `image push` is the same verb; the destination defaults to the image's name
    rootless("tag", busybox_ref, f"{registry.host}/pushed/byname:v2", check=True)
    rootless("image", "push", "-q", f"{registry.host}/pushed/byname:v2", check=True)
    raw = skopeo(
        "inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/pushed/byname:v2"
    )
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == digest


@pytest.mark.parametrize(
    "args,manifest_type,layer_type",
    [
        (["--format", "v2s2"], "docker.distribution.manifest.v2", "diff.tar.gzip"),
        (["--compression-format", "zstd"], "oci.image.manifest.v1", "tar+zstd"),
        (["--format", "oci", "--compression-format", "gzip"], "oci.image.manifest.v1", "tar+gzip"),
    ],
    ids=["v2s2", "zstd", "oci-gzip"],
)
def test_push_formats_and_compression(
    rootless, other, registry, busybox_ref, pulled, tmp_path, args, manifest_type, layer_type
):
    repo = f"{registry.host}/formats/{'-'.join(a.strip('-') for a in args)}:v1"
    digestfile = tmp_path / "digest"
    rootless("push", "-q", *args, "--digestfile", str(digestfile), busybox_ref, repo, check=True)
    doc = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{repo}"))
    assert manifest_type in doc["mediaType"]
    assert all(layer_type in x["mediaType"] for x in doc["layers"])
    assert doc["config"]["digest"] == "sha256:" + pulled["Id"]  # the image id does not change
    other.trust(registry)
    name = repo.rsplit(":", 1)[0] + "@" + digestfile.read_text()
    other("pull", "-q", name, check=True)
    back = inspect(other, name)
    assert back["Id"] == pulled["Id"] and back["Digest"] == digestfile.read_text()
    cp = other("run", "--rm", "--network", "none", back["Id"], "cat", "/opt/keep/k", check=True)
    assert cp.stdout == "modified in layer 2\n"


def test_push_a_loaded_docker_archive(rootless, other, registry, busybox_ref, pulled, tmp_path):
    """A docker-archive holds uncompressed layers: push gzips them (containers.conf may say zstd,
    which a v2s2 manifest cannot carry, so it is gzip there and zstd with --format oci)."""
    archive = str(tmp_path / "img.tar")
    rootless("save", "-o", archive, busybox_ref, check=True)
    other("load", "-i", archive, check=True)
    loaded = inspect(other, busybox_ref)
    assert loaded["Id"] == pulled["Id"] and "docker" in loaded["ManifestType"]
    conf = os.path.join(other.config_dir, "containers", "containers.conf")
    os.makedirs(os.path.dirname(conf), exist_ok=True)
    with open(conf, "w") as f:
        f.write('[engine]\ncompression_format = "zstd"\n')
    other.trust(registry)
    for args, layer_type in (([], "diff.tar.gzip"), (["--format", "oci"], "tar+zstd")):
        dest = f"{registry.host}/loaded/{layer_type.replace('.', '-').replace('+', '-')}:v1"
        digestfile = tmp_path / "digest"
        other("push", "-q", *args, "--digestfile", str(digestfile), busybox_ref, dest, check=True)
        doc = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{dest}"))
        assert all(layer_type in x["mediaType"] for x in doc["layers"]), doc
        name = dest.rsplit(":", 1)[0] + "@" + digestfile.read_text()
        rootless("pull", "-q", name, check=True)
        assert inspect(rootless, name)["Id"] == pulled["Id"]


def _blob_requests(log, method: str, status: int | None = None) -> list[str]:
    return [
        p for m, p, s in log if m == method and "/blobs/" in p and (status is None or s == status)
    ]


def test_push_protocol_head_mount_chunked(rootless, registry, busybox_ref):
    with FaultProxy(registry.url, methods=()) as proxy:  # no faults: a watching proxy
        src = f"{proxy.host}/busybox:latest"
        rootless("pull", "-q", "--tls-verify=false", src, check=True)
        # a new repository of the same registry: every blob is mounted from busybox, none sent
        proxy.log.clear()
        rootless("push", "-q", "--tls-verify=false", src, f"{proxy.host}/mounted:v1", check=True)
        mounts = [p for p in _blob_requests(proxy.log, "POST", 201) if "from=busybox" in p]
        assert len(mounts) == 4  # three layers and the config
        assert _blob_requests(proxy.log, "PUT") == [] and _blob_requests(proxy.log, "PATCH") == []
        heads = _blob_requests(proxy.log, "HEAD", 404)
        assert len(heads) == 4  # HEAD first, then the mount
        # pushing again: the registry has every blob, so only HEADs and the manifest
        proxy.log.clear()
        rootless("push", "-q", "--tls-verify=false", src, f"{proxy.host}/mounted:v1", check=True)
        assert len(_blob_requests(proxy.log, "HEAD", 200)) == 4
        assert _blob_requests(proxy.log, "POST") == []
        assert [m for m, p, s in proxy.log if "/manifests/" in p] == ["PUT"]
        # rewritten blobs are uploaded: small ones in one PUT, the big one in 64 KiB PATCHes
        proxy.log.clear()
        cp = rootless(
            "push",
            "--tls-verify=false",
            "--compression-format",
            "zstd",
            src,
            f"{proxy.host}/chunked:v1",
            env={"ROOTLESS_PUSH_CHUNK_SIZE": "65536"},
        )
        assert cp.returncode == 0, cp.stderr
        patches = _blob_requests(proxy.log, "PATCH", 202)
        assert len(patches) >= 10 and len(set(patches)) == len(patches)
        puts = _blob_requests(proxy.log, "PUT", 201)
        assert len(puts) == 3 and all("digest=sha256" in p for p in puts)  # 2 small + the big one
        assert len(_blob_requests(proxy.log, "POST", 201)) == 1  # the config, mounted
    other_store = inspect(rootless, src)
    assert other_store["Digest"]  # the source image is untouched


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_push_survives_a_lost_answer(rootless, registry, busybox_ref, pulled, method):
    """The registry took the upload request but the answer never came (a broken connection):
    a lost PUT finds the blob there (HEAD); a lost PATCH starts a new session. The image arrives."""
    with FaultProxy(registry.url, methods=(method,)) as proxy:
        proxy.drop["/blobs/uploads/"] = 1
        dest = f"{proxy.host}/lost-{method.lower()}:v1"
        cp = rootless(
            "push",
            "-q",
            "--tls-verify=false",
            "--retry-delay",
            "100ms",
            "--compression-format",
            "zstd",
            busybox_ref,
            dest,
            env={"ROOTLESS_PUSH_CHUNK_SIZE": "65536"},
        )
        assert cp.returncode == 0, cp.stderr
        dropped = [p for m, p, s in proxy.log if m == method and s == -2]
        assert len(dropped) == 1
        uploads = [p for m, p, s in proxy.log if m == "POST" and s == 202]
        assert len(uploads) == (5 if method == "PATCH" else 4)  # 3 layers + config (+ a new one)
    raw = skopeo(
        "inspect",
        "--tls-verify=false",
        "--raw",
        f"docker://{registry.host}/lost-{method.lower()}:v1",
    )
    assert len(json.loads(raw)["layers"]) == 3


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory, busybox_layout):
    tokens = TokenServer(
        str(tmp_path_factory.mktemp("push-tokens")), users={USER: PASSWORD}, anonymous=True
    ).start()
    reg = TokenRegistry(str(tmp_path_factory.mktemp("push-token-registry")), tokens).start()
    yield tokens, reg
    reg.stop()
    tokens.stop()


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory):
    reg = Registry(str(tmp_path_factory.mktemp("push-basic")), htpasswd=(USER, PASSWORD)).start()
    yield reg
    reg.stop()


def test_push_with_bearer_tokens(rootless, registry, busybox_ref, pulled, token_registry, tmp_path):
    tokens, reg = token_registry
    rootless.trust(registry, reg)
    dest = f"{reg.host}/private/busybox:v1"
    one_error(rootless("push", busybox_ref, dest), "refused", f"rootless login {reg.host}")
    before = len(tokens.requests)
    rootless("push", "-q", "--creds", f"{USER}:{PASSWORD}", busybox_ref, dest, check=True)
    reqs = tokens.requests[before:]
    assert reqs and all(r["user"] == USER for r in reqs)
    assert "repository:private/busybox:pull,push" in reqs[0]["query"]["scope"]
    # --authfile: that file only
    auth = tmp_path / "auth.json"
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    auth.write_text(json.dumps({"auths": {reg.host: {"auth": token}}}))
    rootless(
        "push", "-q", "--authfile", str(auth), busybox_ref, f"{reg.host}/private/b:v2", check=True
    )
    # and what `login` stored
    rootless("login", "-u", USER, "-p", PASSWORD, reg.host, check=True)
    rootless("push", "-q", busybox_ref, f"{reg.host}/private/c:v3", check=True)
    one_error(rootless("push", "--creds", f"{USER}:wrong", busybox_ref, dest), "rejected", reg.host)


def test_push_with_basic_auth(rootless, registry, busybox_ref, pulled, basic_registry):
    rootless.trust(registry, basic_registry)
    dest = f"{basic_registry.host}/busybox:v1"
    one_error(rootless("push", busybox_ref, dest), "login")
    one_error(rootless("push", "--creds", f"{USER}:nope", busybox_ref, dest), "refused")
    rootless("push", "-q", "--creds", f"{USER}:{PASSWORD}", busybox_ref, dest, check=True)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--format", "bogus"], '--format "bogus"'),
        (["--format", "v2s1"], "v2s1"),
        (["-f", "v2s2", "--compression-format", "zstd"], "zstd"),
        (["--compression-format", "lz4"], "lz4"),
        (["--compression-format", "zstd:chunked"], "zstd:chunked"),
        (["--retry", "x"], "--retry"),
        (["--retry-delay", "1y"], "--retry-delay"),
        (["--tls-verify", "maybe"], "--tls-verify"),
        (["--creds", ""], "--creds"),
        (["--creds", ":secret"], "--creds"),
        (["--authfile", "/nonexistent/auth.json"], "--authfile"),
        (["--digestfile", ""], "--digestfile"),
        (["--digestfile", "/nonexistent/dir/digest"], "/nonexistent/dir/digest"),
    ],
)
def test_push_bad_flags(rootless, registry, busybox_ref, pulled, args, fragment):
    cp = rootless("push", *args, busybox_ref, f"{registry.host}/bad/flags:v1")
    one_error(cp, fragment)
    if "/nonexistent/dir" not in fragment:  # refused before anything is sent
        assert cp.stderr.count("\n") == 1, cp.stderr


@pytest.mark.parametrize(
    "image,dest,fragment",
    [
        ("nothere:v1", "{host}/x:v1", "nothere:v1"),
        ("{id}", None, "image id"),
        ("{ref}", "{host}/x@sha256:" + "a" * 64, "digest"),
        ("{ref}", "oci-archive:/tmp/x.tar", "oci-archive"),
        ("{ref}", "{host}/UPPER/x", "lowercase"),
        ("{ref}", "127.0.0.1:1/x:v1", "127.0.0.1:1"),
        ("{ref}", "blocked.example/x:v1", "blocked"),
    ],
)
def test_push_bad_images_and_destinations(
    rootless, registry, busybox_ref, pulled, image, dest, fragment
):
    conf = rootless.trust(registry)
    with open(conf, "a") as f:
        f.write('\n[[registry]]\nlocation = "blocked.example"\nblocked = true\n')
    fill = {"host": registry.host, "id": pulled["Id"][:12], "ref": busybox_ref}
    args = [image.format(**fill)] + ([dest.format(**fill)] if dest else [])
    one_error(rootless("push", "--tls-verify=false", *args, timeout=60), fragment)


def test_ctrl_c_mid_push_leaves_the_store_as_it_was(rootless, registry, busybox_ref, pulled):
    store = os.path.join(rootless.data_dir, "rootless")
    before = (
        sorted(os.listdir(os.path.join(store, "images"))),
        sorted(os.listdir(os.path.join(store, "blobs", "sha256"))),
    )
    with FaultProxy(registry.url, methods=("PUT", "PATCH")) as proxy:
        proxy.stall.add("/blobs/uploads/")
        p = subprocess.Popen(
            [
                *rootless.argv0,
                "push",
                "--tls-verify=false",
                "--compression-format",
                "zstd",
                busybox_ref,
                f"{proxy.host}/stalled:v1",
            ],
            env=rootless.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(
                m in ("PUT", "PATCH") for m, _ in proxy.seen
            ):
                time.sleep(0.05)
            # the upload is stalled: a rewritten blob sits in the store's tmp
            assert [n for n in os.listdir(os.path.join(store, "tmp")) if not n.endswith(".lock")]
            os.killpg(p.pid, signal.SIGINT)
            _, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    assert p.returncode == 130, err
    assert not PYTHON_NAMES.search(err), err
    assert os.listdir(os.path.join(store, "tmp")) == []
    after = (
        sorted(os.listdir(os.path.join(store, "images"))),
        sorted(os.listdir(os.path.join(store, "blobs", "sha256"))),
    )
    assert after == before


# --- save: several images, and the names asked for -------------------------------------------------
@pytest.fixture
def second(rootless, registry, tmp_path):
    layout = str(tmp_path / "second")
    oci.add_image(layout, "latest", [oci.make_tar([Entry("hello", data=b"second image\n")])])
    registry.push(layout, "latest", "second:latest")
    ref = f"{registry.host}/second:latest"
    rootless("pull", "-q", ref, check=True)
    return ref


def archive_json(path: str, name: str) -> object:
    with tarfile.open(path) as tf:
        return json.load(tf.extractfile(name))


def test_save_keeps_the_name_asked_for(rootless, other, registry, busybox_ref, pulled, tmp_path):
    rootless("tag", busybox_ref, "localhost/mine:v1", check=True)
    for fmt in ("oci-archive", "docker-archive"):
        out = str(tmp_path / f"{fmt}.tar")
        rootless("save", "--format", fmt, "-o", out, "mine:v1", check=True)
        if fmt == "oci-archive":
            [desc] = archive_json(out, "index.json")["manifests"]
            assert desc["annotations"]["org.opencontainers.image.ref.name"] == "localhost/mine:v1"
        else:
            [entry] = archive_json(out, "manifest.json")
            assert entry["RepoTags"] == ["localhost/mine:v1"]
        cp = other("load", "-i", out, check=True)
        assert cp.stdout == "Loaded image: localhost/mine:v1\n"
        assert inspect(other, "localhost/mine:v1")["Id"] == pulled["Id"]
        other("rmi", "-a", check=True)
    # by id: no name, as podman
    out = str(tmp_path / "byid.tar")
    rootless("save", "-o", out, pulled["Id"][:12], check=True)
    assert archive_json(out, "manifest.json")[0]["RepoTags"] == []


def test_save_m_writes_several_images(rootless, other, busybox_ref, pulled, second, tmp_path):
    rootless("tag", busybox_ref, "localhost/alias:v1", check=True)
    out = str(tmp_path / "multi.tar")
    rootless("save", "-m", "-o", out, busybox_ref, second, "localhost/alias:v1", check=True)
    entries = archive_json(out, "manifest.json")
    assert [e["RepoTags"] for e in entries] == [[busybox_ref, "localhost/alias:v1"], [second]]
    with tarfile.open(out) as tf:
        layer_files = [n for n in tf.getnames() if n.endswith(".tar")]
    assert len(layer_files) == len(set(layer_files)) == 4  # shared layers once
    cp = other("load", "-i", out, check=True)
    assert cp.stdout.splitlines() == [
        f"Loaded image: {busybox_ref}",
        "Loaded image: localhost/alias:v1",
        f"Loaded image: {second}",
    ]
    assert inspect(other, second)["Id"] == inspect(rootless, second)["Id"]
    # without -m, the other names are extra tags of the first image (podman)
    out = str(tmp_path / "tags.tar")
    rootless("save", "-o", out, second, "extra:t2", check=True)
    [entry] = archive_json(out, "manifest.json")
    assert entry["RepoTags"] == [second, "localhost/extra:t2"]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["-m", "--format", "oci-archive"], "only docker-archive"),
        (["--format", "tarball"], '--format "tarball"'),
        (["-o", "/nonexistent/dir/x.tar"], "/nonexistent/dir/x.tar"),
        (["-o", ""], "--output"),
    ],
)
def test_save_bad_input(rootless, busybox_ref, pulled, tmp_path, args, fragment):
    if "-o" not in args:
        args = [*args, "-o", str(tmp_path / "x.tar")]
    one_error(rootless("save", *args, busybox_ref), fragment)
    one_error(rootless("save", "-o", str(tmp_path / "y.tar"), busybox_ref, "BAD TAG"), "BAD TAG")
    one_error(
        rootless("save", "-m", "-o", str(tmp_path / "z.tar"), busybox_ref, "nothere"), "nothere"
    )
    assert not [n for n in os.listdir(tmp_path) if n.startswith(("x.tar", "y.tar", "z.tar"))]
