"""A three-container app as the unprivileged user, end to end: PostgreSQL keeping its data in a
named volume, a web server on the Debian image that answers through `-p` with what it reads from the
database, and a client that writes the data. The same app comes up three ways -- containers on a
user-defined network finding each other by name, a pod sharing localhost, and `kube generate` of
that pod, validated against the Kubernetes schemas, then `kube play` -- and each time the data
survives taking the app down and up, and nothing is left after teardown -- and a fourth way, from a
compose file through both podman-compose versions, unchanged (tests/support/compose.py).

The web server is busybox's httpd (the host's static busybox, bind-mounted read-only) in the
postgres image, with a CGI script that asks psql."""

import os

import kubernetes_validate
import pytest
import yaml
from support import stores
from support.compose import VERSIONS, Compose, write_file
from support.images import exec_ok, wait_for_log, workload_store
from support.net import free_port, http_get
from support.wait import poll

pytestmark = pytest.mark.workload

READY = "database system is ready to accept connections"
PSQL = "/usr/lib/postgresql/15/bin/psql"
PGDATA = "/var/lib/postgresql/data"
SEED = (
    "CREATE TABLE IF NOT EXISTS greeting (id int PRIMARY KEY, text text);"
    "INSERT INTO greeting VALUES (1, 'hello from postgres') ON CONFLICT DO NOTHING;"
)
CGI = """#!/bin/sh
echo "Content-Type: text/plain"
echo
{psql} -h {host} -U postgres -qXAt -c "SELECT text || ' #' || count(*) OVER () FROM greeting ORDER BY id"
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory, registry, postgres_ref):
    r = workload_store(str(tmp_path_factory.mktemp("apps")), registry, postgres_ref)
    r.img = postgres_ref
    yield r
    r("pod", "rm", "-af", "-t", "0", timeout=300)
    r("rm", "-af", "-t", "0", timeout=300)
    r.cleanup()


@pytest.fixture
def rl(store):
    yield store
    store("pod", "rm", "-af", "-t", "0", check=True, timeout=300)
    store("rm", "-af", "-t", "0", check=True, timeout=300)
    store("volume", "prune", "-f", check=True)
    store("network", "prune", "-f", check=True)
    stores.assert_nothing_left(store)


def www(tmp_path, db_host: str) -> str:
    """The web server's document root: a CGI script that asks the database at db_host."""
    d = tmp_path / f"www-{db_host}"
    (d / "cgi-bin").mkdir(parents=True)
    script = d / "cgi-bin" / "greeting"
    script.write_text(CGI.format(psql=PSQL, host=db_host))
    script.chmod(0o755)
    os.chmod(d, 0o755)
    return str(d)


def web_args(root: str) -> list[str]:
    return ["-v", f"{root}:/www:ro", "-v", "/bin/busybox:/usr/local/bin/busybox:ro"]


WEB_CMD = ["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
DB_ARGS = ["-e", "POSTGRES_HOST_AUTH_METHOD=trust", "-v", f"appdata:{PGDATA}"]


def answer(port: int) -> str:
    return poll(lambda: http_get(f"http://127.0.0.1:{port}/cgi-bin/greeting"), timeout=120)


def test_on_a_network_by_name(rl, tmp_path):
    port = free_port()
    rl("network", "create", "appnet", check=True)
    net = ["--network", "appnet"]
    root = www(tmp_path, "db")

    def up():
        rl("run", "-d", "--name", "db", *net, *DB_ARGS, rl.img, check=True, timeout=300)
        wait_for_log(rl, "db", READY, timeout=180)
        rl("run", "-d", "--name", "web", *net, "-p", f"127.0.0.1:{port}:8080",
           *web_args(root), rl.img, *WEB_CMD, check=True, timeout=300)  # fmt: skip

    up()
    # the client reaches the database by its name and writes the data
    rl("run", "--rm", "--name", "client", *net, rl.img, PSQL, "-h", "db", "-U", "postgres",
       "-v", "ON_ERROR_STOP=1", "-qc", SEED, check=True, timeout=300)  # fmt: skip
    assert answer(port) == "hello from postgres #1\n"
    # down (every container removed, the volume and network kept), up again: the data is there
    rl("rm", "-f", "-t", "10", "web", "db", check=True, timeout=300)
    assert rl("ps", "-aq").stdout == ""
    up()
    assert answer(port) == "hello from postgres #1\n"


def test_as_a_pod_then_through_kube_generate_and_play(rl, tmp_path):
    port = free_port()
    root = www(tmp_path, "localhost")

    def up():
        rl("pod", "create", "--name", "app", "-p", f"127.0.0.1:{port}:8080", check=True)
        rl("run", "-d", "--pod", "app", "--name", "db", *DB_ARGS, rl.img, check=True, timeout=300)
        wait_for_log(rl, "db", READY, timeout=180)
        rl("run", "-d", "--pod", "app", "--name", "web", *web_args(root), rl.img, *WEB_CMD,
           check=True, timeout=300)  # fmt: skip

    up()
    rl("run", "--rm", "--pod", "app", rl.img, PSQL, "-h", "localhost", "-U", "postgres",
       "-v", "ON_ERROR_STOP=1", "-qc", SEED, check=True, timeout=300)  # fmt: skip
    assert answer(port) == "hello from postgres #1\n"
    rl("pod", "rm", "-f", "-t", "10", "app", check=True, timeout=300)
    up()
    assert answer(port) == "hello from postgres #1\n"

    # the road to a cluster: the pod as Kubernetes YAML, valid for a cluster, played back
    text = rl("kube", "generate", "app", check=True).stdout
    docs = [d for d in yaml.safe_load_all(text) if d]
    for d in docs:
        kubernetes_validate.validate(d, "1.30", strict=True)
    path = tmp_path / "app.yaml"
    path.write_text(text)
    rl("pod", "rm", "-f", "-t", "10", "app", check=True, timeout=300)
    assert rl("ps", "-aq").stdout == "" and rl("pod", "ps", "-q").stdout == ""
    rl("kube", "play", str(path), check=True, timeout=300)
    db = next(n for n in rl("ps", "--format", "{{.Names}}").stdout.split() if n.endswith("db"))
    wait_for_log(rl, db, READY, timeout=180)
    assert answer(port) == "hello from postgres #1\n"  # the claim is the same named volume
    exec_ok(rl, db, PSQL, "-U", "postgres", "-qc", "INSERT INTO greeting VALUES (2, 'again')")
    assert answer(port) == "hello from postgres #2\nagain #2\n"
    rl("kube", "play", "--down", str(path), check=True, timeout=300)
    assert rl("ps", "-aq").stdout == "" and rl("pod", "ps", "-q").stdout == ""
    assert rl("volume", "exists", "appdata").returncode == 0


COMPOSE = """\
services:
  db:
    image: {image}
    environment:
      POSTGRES_HOST_AUTH_METHOD: trust
    volumes:
      - appdata:/var/lib/postgresql/data
  web:
    image: {image}
    command: ["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
    volumes:
      - ./www:/www:ro
      - /bin/busybox:/usr/local/bin/busybox:ro
    ports:
      - "127.0.0.1:{port}:8080"
    depends_on:
      - db
  client:
    image: {image}
    command:
      - sh
      - -c
      - >-
        trap 'exit 0' TERM;
        until {psql} -h db -U postgres -v ON_ERROR_STOP=1 -qc "{seed}"; do sleep 1; done;
        echo seeded; while :; do sleep 1 & wait $$!; done
    depends_on:
      - db
volumes:
  appdata:
"""


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_through_podman_compose(rl, tmp_path, version):
    port = free_port()
    project = tmp_path / "shop"
    project.mkdir()
    os.chmod(project, 0o755)
    os.rename(www(tmp_path, "db"), project / "www")
    write_file(str(project), COMPOSE.format(image=rl.img, port=port, psql=PSQL, seed=SEED))
    compose = Compose(rl, version, str(project))
    compose("up", "-d", timeout=600)
    assert answer(port) == "hello from postgres #1\n"
    compose("down", timeout=600)
    assert rl("ps", "-aq").stdout == ""
    assert rl("volume", "exists", "shop_appdata").returncode == 0
    compose("up", "-d", timeout=600)
    assert answer(port) == "hello from postgres #1\n"  # the volume kept it; the seed added nothing
    compose("down", "-v", timeout=600)
    assert rl("ps", "-aq").stdout == ""
    assert rl("volume", "exists", "shop_appdata").returncode == 1
