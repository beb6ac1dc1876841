"""A multi-container app from a compose file, run by podman-compose unchanged against rootless.

Both installed podman-compose versions (Debian's 1.0.3 and PyPI's 1.6, tests/support/compose.py)
bring up the same app: a busybox web server whose pages live in a named volume, published on a host
port, and a client on the compose network that waits for the server (`depends_on`) and fetches a
page from it by service name. The test writes the page with `exec`, reads what the client got with
`logs`, fetches the page from the host through the published port, lists the app with `ps`, takes
it `down` and `up` again (the page is still there: the volume kept it), and finally `down -v`:
nothing is left (no container, volume, pod, process, mount; 1.6 also removes the network, 1.0.3
keeps it, as both do under podman).
"""

import json

import pytest
from support import leftovers
from support.compose import Compose, write_file
from support.net import free_port, http_get
from support.wait import poll

APP = """\
services:
  web:
    image: {image}
    # sh stops httpd on TERM (as PID 1 httpd would ignore it, and `down` would wait 10 s)
    command: ["sh", "-c", "trap 'exit 0' TERM; httpd -f -v -p 8080 -h /www & wait"]
    volumes:
      - pages:/www
    ports:
      - "{port}:8080"
  client:
    image: {image}
    command:
      - sh
      - -c
      - >-
        trap 'exit 0' TERM;
        until wget -q -O /tmp/page http://web:8080/index.html; do sleep 0.2; done;
        echo "client got: $$(cat /tmp/page)";
        while :; do sleep 1 & wait $$!; done
    depends_on:
      - web
volumes:
  pages:
"""


def _names(rootless, *args) -> list[str]:
    out = rootless(*args, check=True).stdout
    return sorted(out.split())


def _nothing_running(rootless):
    """No container of the app, and no process or mount of the store (monitors, namespace holders,
    the network helper and its namespaces, fuse daemons)."""
    assert _names(rootless, "ps", "-a", "--format", "{{.Names}}") == []
    try:
        poll(lambda: not leftovers.processes(rootless), timeout=30)
    except AssertionError:
        raise AssertionError(f"left running: {leftovers.processes(rootless)}") from None
    assert leftovers.mounts(rootless) == []


@pytest.fixture
def app_store(rootless):
    """The rootless store, with whatever a failed test left running removed afterwards."""
    yield rootless
    if leftovers.processes(rootless):
        rootless("pod", "rm", "-af", "-t", "0")
        rootless("rm", "-af", "-t", "0")
        poll(lambda: not leftovers.processes(rootless), timeout=30)


@pytest.mark.parametrize("version", ["1.0.3", "1.6"])
def test_compose_app_end_to_end(app_store, registry, busybox_ref, tmp_path, version):
    rootless = app_store
    rootless.trust(registry)
    project = str(tmp_path / "shop")
    port = free_port()
    write_file(project, APP.format(image=busybox_ref, port=port))
    compose = Compose(rootless, version, project)

    compose("up", "-d")
    assert _names(rootless, "ps", "--format", "{{.Names}}") == ["shop_client_1", "shop_web_1"]
    # the compose network and volume, made with podman-compose's labels
    (vol,) = json.loads(rootless("volume", "inspect", "shop_pages", check=True).stdout)
    assert vol["Labels"]["io.podman.compose.project"] == "shop"
    (net,) = json.loads(rootless("network", "inspect", "shop_default", check=True).stdout)
    assert net["labels"]["io.podman.compose.project"] == "shop" and net["dns_enabled"]
    # 1.6 puts the app in a pod of its own (`pod create --infra=false --share=`, `run --pod`)
    pods = _names(rootless, "pod", "ps", "--format", "{{.Name}}")
    assert pods == (["pod_shop"] if version == "1.6" else [])

    # exec writes the page into the volume; the client, waiting on the compose network, gets it
    # from the server by its service name
    compose("exec", "-T", "web", "sh", "-c", f"echo served-by-{version} > /www/index.html")
    logs = poll(
        lambda: "client got: served-by" in (out := compose("logs", "client").stdout) and out,
        timeout=60,
    )
    assert f"client got: served-by-{version}" in logs
    # published port, from the host
    assert http_get(f"http://127.0.0.1:{port}/index.html") == f"served-by-{version}\n"
    web = compose("logs", "web")  # busybox httpd -v logs each request on stderr
    assert "response:200" in web.stdout + web.stderr
    # exec's output and a name lookup from inside a container
    out = compose("exec", "-T", "client", "wget", "-q", "-O-", "http://web:8080/index.html")
    assert f"served-by-{version}" in out.stdout.splitlines()  # 1.0.3 adds its own lines
    ps = compose("ps").stdout
    assert "shop_web_1" in ps and "shop_client_1" in ps and f"0.0.0.0:{port}->8080/tcp" in ps

    # down keeps the named volume; up again serves the same page
    compose("down")
    _nothing_running(rootless)
    assert _names(rootless, "volume", "ls", "-q") == ["shop_pages"]
    compose("up", "-d")
    page = poll(lambda: http_get(f"http://127.0.0.1:{port}/index.html"), timeout=60)
    assert page == f"served-by-{version}\n"

    # down -v: nothing left
    compose("down", "-v")
    _nothing_running(rootless)
    assert _names(rootless, "volume", "ls", "-q") == []
    assert _names(rootless, "pod", "ps", "-q") == []
    nets = _names(rootless, "network", "ls", "-q")
    assert nets == (["podman", "shop_default"] if version == "1.0.3" else ["podman"])
