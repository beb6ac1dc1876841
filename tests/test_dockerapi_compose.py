"""docker-compose 1.29 (Debian's, a Docker API client in Python) unchanged against `rootless system
service`: a web server and a client on the project's network, the client finding the server by its
service name, a named volume that keeps the server's page across `down` and `up`, a published
port fetched from the host, `ps`, `logs`, `exec`, and `down -v` leaving no container, network or
volume behind."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import Rootless
from support import leftovers
from support.dockerapi import Service
from support.net import free_port, http_get
from support.wait import poll

APP = """\
version: "3"
services:
  web:
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]
    volumes:
      - pages:/www
    ports:
      - "127.0.0.1:{port}:8080"
  client:
    image: {image}
    command: ["sh", "-c", "until wget -qO- http://web:8080/; do sleep 0.2; done; echo; echo fetched"]
    depends_on: [web]
volumes:
  pages:
"""


@pytest.fixture
def svc(tmp_path, registry, busybox_ref):
    store = Rootless(str(tmp_path / "store"))
    store.trust(registry)
    store("pull", "-q", busybox_ref, check=True)
    service = Service(store).start()
    yield service
    store("rm", "-af", "-t", "0", timeout=300)
    service.stop()
    store.cleanup()


def compose(svc, project: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**svc.env, "HOME": svc.store.base, "COMPOSE_INTERACTIVE_NO_CLI": "1"}
    cp = subprocess.run(["/usr/bin/docker-compose", *args], cwd=project, env=env, text=True,
                        capture_output=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
    if check and cp.returncode != 0:
        raise AssertionError(f"docker-compose {' '.join(args)} exited {cp.returncode}\n"
                             f"{cp.stdout}\n{cp.stderr}\n--- service ---\n{svc.output()[-3000:]}")  # fmt: skip
    return cp


def test_docker_compose_app(svc, busybox_ref, tmp_path):
    rl, port = svc.store, free_port()
    project = tmp_path / "shop"
    project.mkdir()
    (project / "docker-compose.yml").write_text(APP.format(image=busybox_ref, port=port))
    p = str(project)
    compose(svc, p, "up", "-d")
    assert rl("network", "exists", "shop_default").returncode == 0
    assert rl("volume", "exists", "shop_pages").returncode == 0
    compose(svc, p, "exec", "-T", "web", "sh", "-c", "echo hello > /www/index.html")
    assert poll(lambda: http_get(f"http://127.0.0.1:{port}/"), timeout=30) == "hello\n"
    # the client reached the server by its service name on the project's network
    poll(lambda: "fetched" in compose(svc, p, "logs", "client").stdout, timeout=60)
    assert "hello" in compose(svc, p, "logs", "--no-color", "client").stdout
    ps = compose(svc, p, "ps").stdout
    assert "shop_web_1" in ps and "shop_client_1" in ps
    names = sorted(rl("ps", "-a", "--format", "{{.Names}}").stdout.split())
    assert names == ["shop_client_1", "shop_web_1"]
    # down keeps the volume: up again serves the same page
    compose(svc, p, "down")
    assert rl("ps", "-aq").stdout == "" and rl("network", "exists", "shop_default").returncode == 1
    compose(svc, p, "up", "-d")
    assert poll(lambda: http_get(f"http://127.0.0.1:{port}/"), timeout=30) == "hello\n"
    compose(svc, p, "down", "-v")
    assert rl("ps", "-aq").stdout == "" and rl("volume", "ls", "-q").stdout == ""
    poll(lambda: not [x for x in leftovers.processes(rl) if "system service" not in x[1]],
         timeout=30)  # fmt: skip
    assert leftovers.mounts(rl) == []
    assert os.path.exists(svc.path)  # the service is still there for the next client


HEALTHY = """\
version: "2.4"
services:
  db:
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3; touch /tmp/ready; sleep 300 & wait"]
    healthcheck:
      test: ["CMD", "test", "-e", "/tmp/ready"]
      interval: 1s
      retries: 30
  app:
    image: {image}
    command: ["sh", "-c", "echo started after the db was healthy"]
    depends_on:
      db:
        condition: service_healthy
"""


def test_depends_on_service_healthy(svc, busybox_ref, tmp_path):
    """A service's healthcheck (run by the container's monitor) gates `up` of its dependent."""
    project = tmp_path / "gated"
    project.mkdir()
    (project / "docker-compose.yml").write_text(HEALTHY.format(image=busybox_ref))
    p = str(project)
    out = compose(svc, p, "up", "-d")
    assert "gated_app_1" in out.stdout + out.stderr
    rl = svc.store
    db = rl("inspect", "-f", "{{.State.Healthcheck.Status}}", "gated_db_1", check=True)
    assert db.stdout == "healthy\n"
    poll(lambda: "started after" in compose(svc, p, "logs", "app").stdout, timeout=30)
    compose(svc, p, "down")
    assert rl("ps", "-aq").stdout == ""
