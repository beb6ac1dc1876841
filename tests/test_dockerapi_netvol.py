"""The Docker API's volume and network endpoints, driven by the Docker SDK and the docker CLI
unchanged against `rootless system service`: what they create is rootless's own (the `rootless
volume`/`network` verbs see it), containers use it (data kept in a volume, a name resolved on a
network), and Docker's status codes for missing, duplicate and busy objects."""

from __future__ import annotations

import docker
import pytest
from conftest import Rootless
from support.dockerapi import Service


@pytest.fixture(scope="module")
def svc(tmp_path_factory, registry, busybox_ref):
    store = Rootless(str(tmp_path_factory.mktemp("dockerapi-netvol")))
    store.trust(registry)
    store("pull", "-q", busybox_ref, check=True)
    service = Service(store).start()
    service.store = store
    yield service
    store("rm", "-af", "-t", "0", timeout=300)
    service.stop()
    store.cleanup()


@pytest.fixture(scope="module")
def client(svc):
    c = docker.DockerClient(base_url=svc.host, version="auto", timeout=120)
    yield c
    c.close()


def test_volumes(client, svc, busybox_ref):
    vol = client.volumes.create("appdata", labels={"tier": "db"})
    assert vol.name == "appdata" and vol.attrs["Labels"] == {"tier": "db"}
    assert client.volumes.create("appdata").name == "appdata"  # idempotent, as Docker's
    assert svc.store("volume", "exists", "appdata").returncode == 0
    assert [v.name for v in client.volumes.list(filters={"label": "tier=db"})] == ["appdata"]
    out = client.containers.run(busybox_ref, ["sh", "-c", "echo kept > /data/f"], network_mode="none",
                                volumes={"appdata": {"bind": "/data"}}, remove=True)  # fmt: skip
    assert out == b""
    got = client.containers.run(busybox_ref, ["cat", "/data/f"], network_mode="none",
                                volumes={"appdata": {"bind": "/data"}}, remove=True)  # fmt: skip
    assert got == b"kept\n"
    busy = client.containers.create(busybox_ref, ["true"], network_mode="none",
                                    volumes={"appdata": {"bind": "/data"}})  # fmt: skip
    with pytest.raises(docker.errors.APIError) as e:
        client.volumes.get("appdata").remove()
    assert e.value.status_code == 409
    busy.remove()
    client.volumes.get("appdata").remove()
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get("appdata")
    client.volumes.create("spare")
    assert "spare" in client.volumes.prune()["VolumesDeleted"]
    assert client.volumes.list() == []


def test_networks(client, svc, busybox_ref):
    net = client.networks.create("appnet", labels={"app": "shop"})
    assert svc.store("network", "exists", "appnet").returncode == 0
    with pytest.raises(docker.errors.APIError) as e:
        client.networks.create("appnet")
    assert e.value.status_code == 409
    got = client.networks.get(net.id)
    assert got.name == "appnet" and got.attrs["Labels"] == {"app": "shop"}
    assert got.attrs["IPAM"]["Config"][0]["Subnet"]
    assert "appnet" in [n.name for n in client.networks.list(filters={"label": "app=shop"})]
    web = client.containers.run(busybox_ref, ["sleep", "60"], name="web", network="appnet",
                                detach=True)  # fmt: skip
    try:
        assert "web" in [c.name for c in client.networks.get("appnet").containers]
        out = client.containers.run(busybox_ref, ["nslookup", "web"], network="appnet", remove=True)
        assert b"Address" in out
        with pytest.raises(docker.errors.APIError) as e:
            client.networks.get("appnet").remove()
        assert e.value.status_code == 403  # Docker: it has active endpoints
    finally:
        web.remove(force=True)
    client.networks.get("appnet").remove()
    with pytest.raises(docker.errors.NotFound):
        client.networks.get("appnet")
    client.networks.create("spare")
    assert "spare" in client.networks.prune()["NetworksDeleted"]


def test_docker_cli(svc, busybox_ref):
    svc.docker("volume", "create", "clivol")
    assert "clivol" in svc.docker("volume", "ls", "-q").stdout.split()
    svc.docker("network", "create", "clinet")
    assert "clinet" in svc.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    out = svc.docker("run", "--rm", "--network", "clinet", "-v", "clivol:/v", busybox_ref,
                     "sh", "-c", "echo hi > /v/x && cat /v/x").stdout  # fmt: skip
    assert out == "hi\n"
    svc.docker("network", "rm", "clinet")
    svc.docker("volume", "rm", "clivol")
    assert svc.store("volume", "ls", "-q").stdout == ""
    cp = svc.docker("volume", "inspect", "nosuch", check=False)
    assert cp.returncode != 0 and "nosuch" in cp.stderr
