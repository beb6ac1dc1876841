"""The Docker Python SDK (PyPI `docker`), unchanged, against `rootless system service`."""

from __future__ import annotations

import os

import docker
import pytest
from conftest import Rootless
from support.dockerapi import Service


@pytest.fixture(scope="module")
def svc(tmp_path_factory, registry, busybox_ref):
    store = Rootless(str(tmp_path_factory.mktemp("dockerapi-sdk")))
    store.trust(registry)
    service = Service(store).start()
    yield service
    service.stop()
    store.cleanup()


@pytest.fixture(scope="module")
def client(svc):
    c = docker.DockerClient(base_url=svc.host, version="auto", timeout=120)
    yield c
    c.close()


def test_ping_version_info(client, svc):
    assert client.ping() is True
    v = client.version()
    assert v["ApiVersion"] == "1.41"
    assert client.api.api_version == "1.41"  # "auto" negotiated through /version
    info = client.info()
    assert info["OSType"] == "linux" and info["Containers"] == 0
    assert oct(os.stat(svc.path).st_mode & 0o777) == "0o600"


def test_images(client, busybox_ref):
    img = client.images.pull(busybox_ref)
    assert busybox_ref in img.tags
    assert img.id.startswith("sha256:")
    again = client.images.get(busybox_ref)
    assert again.id == img.id
    assert any(busybox_ref in i.tags for i in client.images.list())
    assert img.tag("mine/busybox", "v1") is True
    assert "localhost/mine/busybox:v1" in client.images.get(img.id).tags
    client.images.remove("localhost/mine/busybox:v1")
    assert "localhost/mine/busybox:v1" not in client.images.get(img.id).tags
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("no/such:image")


def test_unsupported_is_an_api_error(client):
    resp = client.api._get(client.api._url("/swarm"))
    assert resp.status_code == 501
    assert "not implemented" in resp.json()["message"]


def test_build(client, svc, busybox_ref, tmp_path):
    """POST /build: the SDK's images.build and `docker build` (the classic builder's tar upload)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "greeting").write_text("hello from the context\n")
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox_ref}\nARG WHO=nobody\nCOPY greeting /greeting\n"
        'RUN echo "built for $WHO" > /who\nLABEL stage=api\nCMD ["cat", "/greeting", "/who"]\n'
    )
    image, log = client.images.build(path=str(ctx), tag="localhost/apibuilt:1",
                                     buildargs={"WHO": "sdk"}, rm=True)  # fmt: skip
    assert any("Successfully built" in (e.get("stream") or "") for e in log)
    assert image.labels.get("stage") == "api" and "localhost/apibuilt:1" in image.tags
    out = client.containers.run("localhost/apibuilt:1", remove=True)
    assert out == b"hello from the context\nbuilt for sdk\n"
    cp = svc.docker("build", "-t", "localhost/clibuilt", "--build-arg", "WHO=cli", str(ctx))
    assert "Successfully tagged localhost/clibuilt:latest" in cp.stdout
    assert (
        svc.docker("run", "--rm", "localhost/clibuilt").stdout
        == "hello from the context\nbuilt for cli\n"
    )
    (ctx / "Dockerfile").write_text(f"FROM {busybox_ref}\nRUN exit 3\n")
    with pytest.raises(docker.errors.BuildError) as e:
        client.images.build(path=str(ctx))
    assert "exit" in str(e.value)
    for name in ("localhost/apibuilt:1", "localhost/clibuilt"):
        client.images.remove(name)
