"""Volumes and pods with the real images (docs/images.md), as the unprivileged user on both storage
drivers: PostgreSQL keeps its data in a named volume across the removal of its container and a new
one, with a client in the same pod talking to it over localhost; the image's VOLUME becomes an
anonymous volume copied up from the image; nginx in a pod serves a python client on localhost and
the host through the pod's published port; nothing is left afterwards."""

import json
import os
import stat

import pytest
from support import leftovers
from support.images import (
    DRIVERS,
    exec_ok,
    free_port,
    run_opts,
    subordinate_id,
    wait_for_http,
    wait_for_log,
    workload_store,
)
from support.wait import poll

pytestmark = pytest.mark.workload

READY = "database system is ready to accept connections"
PGDATA = "/var/lib/postgresql/data"


@pytest.fixture(scope="module")
def store(tmp_path_factory, registry, postgres_ref, nginx_ref, python_ref):
    r = workload_store(
        str(tmp_path_factory.mktemp("apps")), registry, postgres_ref, nginx_ref, python_ref
    )
    yield r
    r("pod", "rm", "-af", "-t", "0", timeout=300)
    r("rm", "-af", "-t", "0", "-v", timeout=300)
    r("volume", "rm", "-af", timeout=300)
    r.cleanup()


def teardown(store, *pods, volumes=()):
    for p in pods:
        store("pod", "rm", "-f", "-t", "0", p, timeout=300)
    store("rm", "-af", "-t", "0", "-v", timeout=300)
    for v in volumes:
        store("volume", "rm", "-f", v, timeout=300)
    poll(lambda: not leftovers.processes(store), timeout=30)
    assert leftovers.mounts(store) == []


def psql_in_pod(store, driver, pod, image, sql) -> str:
    """A client container of the pod runs psql against the server over localhost."""
    cp = store("--storage-driver", driver, "run", "--rm", "--pod", pod, *run_opts(), "--entrypoint", "psql",
               image, "-h", "127.0.0.1", "-U", "postgres", "-qXAt", "-v", "ON_ERROR_STOP=1", "-c", sql,
               timeout=180)  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


@pytest.mark.parametrize("driver", DRIVERS)
def test_postgres_keeps_its_data_in_a_named_volume(store, postgres_ref, driver):
    pod, vol = f"db-{driver}", f"pgdata-{driver}"
    store("pod", "create", "--name", pod, check=True)
    args = (
        "--pod",
        pod,
        "-e",
        "POSTGRES_HOST_AUTH_METHOD=trust",
        "-v",
        f"{vol}:{PGDATA}",
        postgres_ref,
    )
    try:
        store(
            "--storage-driver",
            driver,
            "run",
            "-d",
            "--name",
            f"pg1-{driver}",
            *run_opts(),
            *args,
            check=True,
        )
        wait_for_log(store, f"pg1-{driver}", READY, timeout=180)
        psql_in_pod(
            store,
            driver,
            pod,
            postgres_ref,
            "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives');",
        )
        pg_uid = int(exec_ok(store, f"pg1-{driver}", "id", "-u", "postgres"))
        # the cluster in the volume belongs to postgres: on the host, its subordinate uid, 0700
        data = store(
            "volume", "inspect", "--format", "{{.Mountpoint}}", vol, check=True
        ).stdout.strip()
        st = os.stat(data)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (subordinate_id("uid", pg_uid), 0o700)
        assert data.startswith(os.path.join(store.data_dir, "rootless", "volumes"))
        store("stop", "-t", "60", f"pg1-{driver}", check=True, timeout=120)
        assert store("volume", "rm", vol).returncode == 2  # in use by the stopped container
        store("rm", f"pg1-{driver}", check=True)
        assert store("volume", "exists", vol).returncode == 0
        # a new container on the same volume: no new cluster, the data is there
        store(
            "--storage-driver",
            driver,
            "run",
            "-d",
            "--name",
            f"pg2-{driver}",
            *run_opts(),
            *args,
            check=True,
        )
        logs = wait_for_log(store, f"pg2-{driver}", READY, timeout=180)
        assert "database system was shut down at" in logs  # the cluster of the first container
        assert "The files belonging to this database system" not in logs  # no initdb
        assert psql_in_pod(store, driver, pod, postgres_ref, "SELECT v FROM kept") == "survives\n"
    finally:
        teardown(store, pod, volumes=[vol])


def test_the_images_volume_is_an_anonymous_volume_copied_up(store, postgres_ref):
    cp = store("run", "--name", "anon-pg", "--network", "none", *run_opts(), "--entrypoint", "stat",
               postgres_ref, "-c", "%U %a", PGDATA, check=True)  # fmt: skip
    assert cp.stdout == "postgres 1777\n"  # the image's directory: its owner and mode
    mounts = store("inspect", "--format", "{{json .Mounts}}", "anon-pg", check=True).stdout
    (m,) = json.loads(mounts)
    assert (m["Type"], m["Destination"]) == ("volume", PGDATA)
    assert store("volume", "inspect", "--format", "{{.Anonymous}}", m["Name"]).stdout == "true\n"
    store("rm", "-v", "anon-pg", check=True)
    assert store("volume", "exists", m["Name"]).returncode == 1
    teardown(store)


@pytest.mark.parametrize("driver", DRIVERS)
def test_nginx_and_a_python_client_in_a_pod(store, nginx_ref, python_ref, driver):
    port, pod = free_port(), f"web-{driver}"
    store("pod", "create", "--name", pod, "-p", f"127.0.0.1:{port}:80", check=True)
    try:
        store("--storage-driver", driver, "run", "-d", "--pod", pod, "--name", f"nginx-{driver}",
              *run_opts(), nginx_ref, check=True)  # fmt: skip
        assert "Welcome to nginx!" in wait_for_http(f"http://127.0.0.1:{port}/")
        exec_ok(store, f"nginx-{driver}", "sh", "-c", "echo from-the-pod > /var/www/html/app.txt")
        code = "import urllib.request; print(urllib.request.urlopen('http://localhost/app.txt').read().decode(), end='')"
        cp = store("--storage-driver", driver, "run", "--rm", "--pod", pod, *run_opts(), python_ref,
                   "python3", "-c", code, timeout=120)  # fmt: skip
        assert cp.returncode == 0 and cp.stdout == "from-the-pod\n", cp.stderr
        assert '"GET /app.txt HTTP/1.1" 200' in store("pod", "logs", pod).stdout
    finally:
        teardown(store, pod)
