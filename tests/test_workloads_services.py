"""Real services in real Debian images (docs/images.md), as the unprivileged user, on both storage
drivers: PostgreSQL (initdb, the server as the `postgres` user through gosu and through su, SQL with
psql, shared memory, a clean stop) and nginx (a file served on `-p`, reloaded with SIGHUP)."""

import os
import socket
import stat
import struct

import pytest
from support.images import (
    DRIVERS,
    curl,
    exec_ok,
    free_port,
    start,
    subordinate_id,
    wait_for_http,
    wait_for_log,
    workload_store,
)
from support.wait import poll

pytestmark = pytest.mark.workload

PG_BIN = "/usr/lib/postgresql/15/bin"
READY = "database system is ready to accept connections"
SQL = (
    "CREATE TABLE t (id int PRIMARY KEY, name text);"
    "INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000) g;"
    "SELECT count(*), max(id) FROM t;"
)
# a parallel query: its workers are background processes sharing dynamic shared memory (/dev/shm)
PARALLEL = (
    "SET force_parallel_mode = on; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;"
    "SET min_parallel_table_scan_size = 0;"
    "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM t;"
)


@pytest.fixture(scope="module")
def store(tmp_path_factory, registry, postgres_ref, nginx_ref):
    r = workload_store(str(tmp_path_factory.mktemp("services")), registry, postgres_ref, nginx_ref)
    yield r
    r("rm", "-af", "-t", "0", timeout=300)
    r.cleanup()


def psql(store, name, sql, *opts):
    return exec_ok(store, name, "psql", "-v", "ON_ERROR_STOP=1", "-qXAt", *opts, "-c", sql)


def top(store, name) -> list[list[str]]:
    cp = store("top", name, "user", "huser", "comm", check=True)
    return [line.split() for line in cp.stdout.splitlines()[1:]]


def pg_answers_on(port: int) -> bool:
    """From the host through the published port: PostgreSQL answers an SSLRequest with one byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(struct.pack("!II", 8, 80877103))
        return s.recv(1) == b"N"


@pytest.mark.parametrize("driver", DRIVERS)
def test_postgres_entrypoint_gosu_volume_and_clean_stop(store, postgres_ref, driver, tmp_path):
    """As users run the official image: -e, -p and PGDATA on a -v volume; the entry point makes the
    cluster and switches to postgres with gosu."""
    data = tmp_path / "pgdata"
    data.mkdir()
    port = free_port()
    name = start(
        store, driver, f"pg-{driver}", "-e", "POSTGRES_HOST_AUTH_METHOD=trust",
        "-p", f"{port}:5432", "-v", f"{data}:/var/lib/postgresql/data", postgres_ref,
    )  # fmt: skip
    try:
        wait_for_log(store, name, READY, timeout=120)
        pg_uid = int(exec_ok(store, name, "id", "-u", "postgres"))
        assert 0 < pg_uid
        assert psql(store, name, SQL, "-U", "postgres") == "1000|1000\n"
        plan = psql(store, name, "SELECT 1 FROM t LIMIT 0;" + PARALLEL, "-U", "postgres")
        assert "Workers Launched: " in plan and "Workers Launched: 0" not in plan, plan
        # over TCP inside the container, and through the published port from the host
        assert psql(store, name, "SELECT current_user", "-h", "127.0.0.1", "-U", "postgres") == (
            "postgres\n"
        )
        assert poll(lambda: pg_answers_on(port))
        # every server process is the postgres user: on the host, its subordinate uid
        procs = top(store, name)
        assert procs and all(p[0] == "postgres" for p in procs), procs
        assert {p[1] for p in procs} == {str(subordinate_id("uid", pg_uid))}, procs
        # the cluster on the volume belongs to the same subordinate uid on the host, 0700: the host
        # user cannot look in, except through `rootless unshare` (as with podman unshare)
        st = os.stat(data)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (subordinate_id("uid", pg_uid), 0o700)
        with pytest.raises(PermissionError):
            os.listdir(data)
        cp = store("unshare", "stat", "-c", "%u", str(data / "PG_VERSION"), check=True)
        assert cp.stdout == f"{pg_uid}\n"
        # a clean stop, and the data is there at the next start
        store("stop", "-t", "60", name, check=True, timeout=120)
        assert store("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
        assert "database system is shut down" in store("logs", name).stderr
        store("start", name, check=True)
        logs = wait_for_log(store, name, READY, timeout=120, count=2)
        assert "database system was interrupted" not in logs  # no crash recovery
        assert psql(store, name, "SELECT count(*) FROM t", "-U", "postgres") == "1000\n"
    finally:
        store("rm", "-f", "-t", "0", name, timeout=120)
        store("unshare", "rm", "-rf", str(data))


def test_stop_sends_the_images_stop_signal(store, postgres_ref):
    """The image's STOPSIGNAL SIGINT: a fast shutdown, as under podman (SIGTERM is a smart one)."""
    name = start(store, "overlay", "pgstop", "--network", "none", postgres_ref)
    try:
        wait_for_log(store, name, READY, timeout=120)
        store("stop", "-t", "60", name, check=True, timeout=120)
        assert "received fast shutdown request" in store("logs", name).stderr
        cp = store("inspect", "--format", "{{.Config.StopSignal}}", name, check=True)
        assert cp.stdout.strip() in ("SIGINT", "2")
    finally:
        store("rm", "-f", "-t", "0", name, timeout=120)


@pytest.mark.parametrize("driver", DRIVERS)
def test_postgres_initdb_and_pg_ctl_as_postgres_with_su(store, postgres_ref, driver):
    name = start(store, driver, f"pgsu-{driver}", "--network", "none", postgres_ref, "sleep", "inf")
    try:

        def as_postgres(cmd):
            return exec_ok(store, name, "su", "postgres", "-c", cmd, timeout=180)

        as_postgres(f"{PG_BIN}/initdb -D /tmp/pg --auth=trust >/dev/null")
        out = as_postgres(f"{PG_BIN}/pg_ctl -D /tmp/pg -l /tmp/pg/server.log -w start")
        assert "server started" in out
        assert as_postgres(f'psql -qXAt -c "{SQL}"') == "1000|1000\n"
        assert as_postgres('psql -qXAt -c "SELECT current_user"') == "postgres\n"
        plan = as_postgres(f'psql -qXAt -c "{PARALLEL}"')
        assert "Workers Launched: " in plan and "Workers Launched: 0" not in plan, plan
        out = as_postgres(f"{PG_BIN}/pg_ctl -D /tmp/pg -m fast -w stop")
        assert "server stopped" in out
        log = exec_ok(store, name, "cat", "/tmp/pg/server.log")
        assert "received fast shutdown request" in log and "database system is shut down" in log
    finally:
        store("rm", "-f", "-t", "0", name, timeout=120)


NEW_SITE = """server {
    listen 80 default_server;
    root /srv/site;
    add_header X-Config reloaded always;
    location /hello { return 200 "hello after $1\\n"; }
}
"""


@pytest.mark.parametrize("driver", DRIVERS)
def test_nginx_serves_a_file_and_reloads_on_hup(store, nginx_ref, driver):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = start(store, driver, f"nginx-{driver}", "-p", f"{port}:80", nginx_ref)
    try:
        assert "Welcome to nginx!" in wait_for_http(url + "/")
        exec_ok(store, name, "sh", "-c", "echo version 1 > /var/www/html/index.html")
        assert curl(url + "/index.html") == "version 1\n"
        # the master is PID 1 as root, its workers www-data
        users = {p[0] for p in top(store, name)}
        assert users == {"root", "www-data"}, users
        # a new config and content, then SIGHUP to PID 1 from the host
        site = NEW_SITE.replace("$1", "kill -HUP")
        exec_ok(
            store, name, "sh", "-c",
            "mkdir -p /srv/site && echo version 2 > /srv/site/index.html"
            f" && printf '%s' '{site}' > /etc/nginx/sites-enabled/default && nginx -t -q",
        )  # fmt: skip
        assert curl(url + "/index.html") == "version 1\n"  # not before the reload
        store("kill", "-s", "HUP", name, check=True)
        poll(lambda: curl(url + "/index.html") == "version 2\n")
        assert curl(url + "/hello") == "hello after kill -HUP\n"
        assert "X-Config: reloaded" in curl(url + "/hello", "-i")
        # and `nginx -s reload` from exec (it signals the master through /run/nginx.pid)
        site = NEW_SITE.replace("$1", "nginx -s reload")
        exec_ok(
            store, name, "sh", "-c",
            f"printf '%s' '{site}' > /etc/nginx/sites-enabled/default && nginx -s reload",
        )  # fmt: skip
        poll(lambda: curl(url + "/hello") == "hello after nginx -s reload\n")
        # the access log goes to the container's stdout
        assert '"GET /hello HTTP/1.1" 200' in store("logs", name).stdout
        store("stop", name, check=True, timeout=60)
        assert store("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    finally:
        store("rm", "-f", "-t", "0", name, timeout=120)
