"""Containers and exec through the Docker API: the docker Python SDK and Debian's docker CLI,
unchanged, against `rootless system service` (rootless.api.containers, ctrstreams, exec)."""

from __future__ import annotations

import os
import socket
import time
import urllib.request

import docker
import pytest
import requests
from conftest import Rootless
from support.dockerapi import Service
from support.wait import poll

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def svc(tmp_path_factory, registry, busybox_ref):
    store = Rootless(str(tmp_path_factory.mktemp("dockerapi-ctr")))
    store.trust(registry)
    service = Service(store).start()
    yield service
    try:
        c = docker.DockerClient(base_url=service.host, version="1.41", timeout=60)
        for ctr in c.containers.list(all=True):
            ctr.remove(force=True)
        c.close()
    finally:
        service.stop()
        store.cleanup()


@pytest.fixture(scope="module")
def client(svc, busybox_ref):
    c = docker.DockerClient(base_url=svc.host, version="auto", timeout=120)
    c.images.pull(busybox_ref)
    yield c
    c.close()


def test_run_detached_logs_wait_remove(client, busybox_ref):
    c = client.containers.run(
        busybox_ref, ["sh", "-c", "echo out; echo err >&2; exit 3"], detach=True
    )
    assert c.wait(timeout=60) == {"StatusCode": 3, "Error": None}
    assert c.logs(stdout=True, stderr=False) == b"out\n"
    assert c.logs(stdout=False, stderr=True) == b"err\n"
    assert sorted(c.logs().splitlines()) == [b"err", b"out"]
    assert c.logs(tail=1) in (b"out\n", b"err\n")
    assert c.logs(timestamps=True).split(b" ", 1)[0].endswith(b"Z")
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 3
    c.remove()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(c.id)


def test_run_foreground_remove(client, busybox_ref):
    before = {c.id for c in client.containers.list(all=True)}
    out = client.containers.run(busybox_ref, ["echo", "hi"], remove=True)
    assert out == b"hi\n"
    assert {c.id for c in client.containers.list(all=True)} == before
    with pytest.raises(docker.errors.ContainerError) as e:
        client.containers.run(busybox_ref, ["sh", "-c", "echo bad >&2; exit 4"], remove=True)
    assert e.value.exit_status == 4 and b"bad" in e.value.stderr


def test_sysctls_and_read_only(client, busybox_ref):
    """HostConfig.Sysctls as `--sysctl`, ReadonlyRootfs with podman's tmpfs on /tmp."""
    script = "cat /proc/sys/kernel/shmmax; touch /tmp/x && touch /x || echo read-only"
    out = client.containers.run(busybox_ref, ["sh", "-c", script], remove=True, read_only=True,
                                sysctls={"kernel.shmmax": "65536"})  # fmt: skip
    assert out.decode().split() == ["65536", "read-only"]
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create(busybox_ref, ["true"], sysctls={"kernel.hostname": "x"})
    assert "sysctl 'kernel.hostname' is not allowed" in str(e.value)
    # PidMode/UTSMode host as --pid/--uts host
    out = client.containers.run(busybox_ref, ["sh", "-c", "readlink /proc/self/ns/pid; hostname"],
                                remove=True, pid_mode="host", uts_mode="host")  # fmt: skip
    assert out.decode().split() == [os.readlink("/proc/self/ns/pid"), os.uname().nodename]


def test_healthcheck(client, busybox_ref):
    """Config.Healthcheck as --health-*: the monitor runs it, State.Health shows it (compose's
    depends_on condition service_healthy waits on that)."""
    hc = {"test": ["CMD-SHELL", "test -e /tmp/ok"], "interval": 10**9, "retries": 1}
    c = client.containers.run(busybox_ref, ["sh", "-c", "sleep 3; touch /tmp/ok; sleep 300"],
                              detach=True, healthcheck=hc)  # fmt: skip

    def status():
        c.reload()
        return c.attrs["State"].get("Health", {}).get("Status")

    try:
        poll(lambda: status() == "unhealthy", timeout=60)
        poll(lambda: status() == "healthy", timeout=60)
        assert c.attrs["State"]["Health"]["Log"][-1]["ExitCode"] == 0
    finally:
        c.remove(force=True)


def test_auto_remove_detached(client, busybox_ref):
    c = client.containers.run(busybox_ref, ["true"], detach=True, auto_remove=True)
    assert c.wait(timeout=60, condition="removed")["StatusCode"] == 0
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(c.id)


def test_create_inspect_env_labels(client, busybox_ref):
    c = client.containers.create(
        busybox_ref,
        ["sleep", "300"],
        name="inspected",
        environment={"GREETING": "hello", "EMPTY": ""},
        labels={"app": "web", "tier": "front"},
        working_dir="/tmp",
        user="1000",
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 2},
    )
    a = client.api.inspect_container(c.id)
    assert a["Id"] == c.id and a["Name"] == "/inspected"
    assert a["State"]["Status"] == "created" and a["State"]["Running"] is False
    assert "GREETING=hello" in a["Config"]["Env"] and "EMPTY=" in a["Config"]["Env"]
    assert a["Config"]["Labels"]["app"] == "web" and a["Config"]["Labels"]["tier"] == "front"
    assert a["Config"]["WorkingDir"] == "/tmp" and a["Config"]["User"] == "1000"
    assert a["Config"]["Cmd"] == ["sleep", "300"]
    assert a["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    c.start()
    c.reload()
    assert c.status == "running" and c.attrs["State"]["Pid"] > 0
    assert c.attrs["State"]["StartedAt"].endswith("Z")
    assert client.api._post(client.api._url("/containers/{0}/start", c.id)).status_code == 304
    top = c.top()
    assert top["Processes"] and any("sleep" in " ".join(p) for p in top["Processes"])
    stats = c.stats(stream=False)
    assert stats["id"] == c.id and "cpu_stats" in stats and "memory_stats" in stats
    assert [x.name for x in client.containers.list(filters={"label": "app=web"})] == ["inspected"]
    assert client.containers.list(filters={"label": "app=db"}) == []
    assert [x.id for x in client.containers.list(filters={"name": "^/inspected$"})] == [c.id]
    c.rename("renamed")
    assert client.containers.get("renamed").id == c.id
    c.stop(timeout=1)
    c.reload()
    assert c.status == "exited"
    assert client.api._post(client.api._url("/containers/{0}/stop", c.id)).status_code == 304
    assert c.id not in {x.id for x in client.containers.list()}
    assert c.id in {x.id for x in client.containers.list(all=True)}
    c.remove()


def test_memory_limit(client, busybox_ref):
    """HostConfig.Memory is the library's --memory: shown by inspect where cgroup v2 enforces it,
    else a 400 that says why (cgroup v1 hosts)."""
    try:
        c = client.containers.create(busybox_ref, ["true"], mem_limit="64m", nano_cpus=500000000)
    except docker.errors.APIError as e:
        assert e.status_code == 400 and "--memory" in str(e)
        return
    a = client.api.inspect_container(c.id)
    assert a["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert a["HostConfig"]["NanoCpus"] == 500000000
    c.remove()


def _fetch(url: str, deadline: float) -> bytes:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_published_port(client, busybox_ref):
    c = client.containers.run(
        busybox_ref,
        [
            "sh",
            "-c",
            "mkdir /www && echo served > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
        detach=True,
        ports={"8080/tcp": None},
    )
    try:
        c.reload()
        port = c.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        assert int(port) > 0
        assert c.ports["8080/tcp"][0]["HostPort"] == port
        listed = client.api.containers(filters={"id": c.id})[0]["Ports"]
        assert {"PrivatePort": 8080, "PublicPort": int(port), "Type": "tcp"}.items() <= listed[
            0
        ].items()
        assert _fetch(f"http://127.0.0.1:{port}/", time.monotonic() + 30) == b"served\n"
    finally:
        c.remove(force=True)


def test_exec(client, busybox_ref):
    c = client.containers.run(busybox_ref, ["sleep", "300"], detach=True)
    try:
        r = c.exec_run(["sh", "-c", "echo a; echo b >&2; exit 2"], demux=True)
        assert r.exit_code == 2 and r.output == (b"a\n", b"b\n")
        r = c.exec_run(["cat", "/etc/hostname"], tty=True)
        assert r.exit_code == 0 and r.output.strip()
        r = c.exec_run(["sh", "-c", "echo $WHO $PWD"], environment={"WHO": "me"}, workdir="/etc")
        assert r.output == b"me /etc\n"
        eid = client.api.exec_create(c.id, ["sh", "-c", "exit 5"])["Id"]
        client.api.exec_start(eid)
        assert client.api.exec_inspect(eid)["ExitCode"] == 5
        sock = client.api.exec_start(
            client.api.exec_create(c.id, ["cat"], stdin=True)["Id"], socket=True
        )
        raw = sock._sock
        raw.sendall(b"through stdin\n")
        raw.shutdown(1)  # SHUT_WR: EOF to cat
        got = b""
        raw.settimeout(30)
        while chunk := raw.recv(4096):
            got += chunk
        assert got[8:] == b"through stdin\n" and got[0] == 1
        eid = client.api.exec_create(c.id, ["sleep", "301"])["Id"]
        sock = client.api.exec_start(eid, socket=True)
        sock._sock.shutdown(socket.SHUT_RDWR)  # the client leaves: the exec ends (not held)
        sock._sock.close()
        deadline = time.monotonic() + 60
        while client.api.exec_inspect(eid)["Running"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        deadline = time.monotonic() + 60
        while "sleep 301" in "".join(" ".join(p) for p in c.top()["Processes"]):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        c.remove(force=True)


def test_errors(client, busybox_ref):
    with pytest.raises(docker.errors.NotFound) as e:
        client.containers.get("no-such-ctr")
    assert "No such container: no-such-ctr" in str(e.value)
    for call in (
        lambda: client.api.logs("no-such-ctr"),
        lambda: client.api.wait("no-such-ctr", timeout=10),
        lambda: client.api.remove_container("no-such-ctr"),
        lambda: client.api.stop("no-such-ctr"),
    ):
        with pytest.raises(docker.errors.NotFound):
            call()
    with pytest.raises(docker.errors.ImageNotFound):
        client.containers.create("127.0.0.1:1/no/such:image", ["true"])
    c = client.containers.create(busybox_ref, ["true"], name="twice")
    try:
        with pytest.raises(docker.errors.APIError) as e:
            client.containers.create(busybox_ref, ["true"], name="twice")
        assert e.value.status_code == 409
        with pytest.raises(docker.errors.APIError) as e:
            c.kill()
        assert e.value.status_code == 409
        with pytest.raises(docker.errors.APIError) as e:
            c.pause()
        assert e.value.status_code == 501
    finally:
        c.remove(force=True)
    running = client.containers.run(busybox_ref, ["sleep", "300"], detach=True)
    with pytest.raises(docker.errors.APIError) as e:
        running.remove()
    assert e.value.status_code == 409
    running.remove(force=True)
    assert client.containers.prune()["SpaceReclaimed"] == 0


def test_archive(client, busybox_ref):
    """put_archive/get_archive (testcontainers copies files so), on running and stopped containers."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"hello from the host\n"
        info = tarfile.TarInfo("dir/hello.txt")
        info.size, info.mode = len(data), 0o640
        tf.addfile(info, io.BytesIO(data))
    c = client.containers.run(busybox_ref, ["sleep", "300"], detach=True)
    try:
        assert c.put_archive("/tmp", buf.getvalue()) is True
        out = c.exec_run(["sh", "-c", "cat /tmp/dir/hello.txt; stat -c %a /tmp/dir/hello.txt"])
        assert out.output == b"hello from the host\n640\n"
        stream, st = c.get_archive("/tmp/dir")
        assert st["name"] == "dir" and st["mode"] & (1 << 31)  # Go's ModeDir
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tf:
            assert tf.extractfile("dir/hello.txt").read() == b"hello from the host\n"
        with pytest.raises(docker.errors.NotFound):
            c.get_archive("/no/such/path")
        with pytest.raises(docker.errors.APIError):
            c.put_archive("/tmp/dir/hello.txt", buf.getvalue())  # not a directory
        c.stop(timeout=0)
        stream, st = c.get_archive("/tmp/dir/hello.txt")  # stopped: from its root filesystem
        assert st["size"] == len(data) and b"hello from the host" in b"".join(stream)
    finally:
        c.remove(force=True)


def test_docker_cli(svc, client, busybox_ref):
    cp = svc.docker("run", "--rm", busybox_ref, "echo", "hi")
    assert cp.stdout == "hi\n"
    other = busybox_ref.rsplit(":", 1)[0] + ":docker"  # not pulled yet: create's 404, pull, create
    assert svc.docker("run", "--rm", other, "echo", "pulled").stdout == "pulled\n"
    cp = svc.docker("run", "--rm", busybox_ref, "sh", "-c", "echo to-err >&2; exit 7", check=False)
    assert cp.returncode == 7 and "to-err" in cp.stderr
    cp = svc.docker(
        "run", "--name", "kept", busybox_ref, "sh", "-c", "echo kept; exit 3", check=False
    )
    assert cp.returncode == 3 and cp.stdout == "kept\n"  # attach, wait next-exit, start
    assert svc.docker("start", "-a", "kept", check=False).stdout == "kept\n"
    assert svc.docker("wait", "kept").stdout == "3\n"
    assert svc.docker("logs", "kept").stdout == "kept\nkept\n"
    svc.docker("rm", "kept")
    cp = svc.docker("run", "--name", "bad", busybox_ref, "/no/such/cmd", check=False, timeout=60)
    assert cp.returncode != 0 and "/no/such/cmd" in cp.stderr
    svc.docker("rm", "-f", "bad")
    cp = svc.docker("run", "-i", "--rm", busybox_ref, "sh", "-c", "cat; echo done", input="in\n")
    assert cp.stdout == "in\ndone\n"  # attach's stdin; its EOF is the container's
    out = svc.docker("run", "--rm", "-t", busybox_ref, "tty").stdout  # raw, not multiplexed
    assert out.startswith("/dev/pts/")
    cid = svc.docker("run", "-d", "--name", "cli", "-e", "X=1", busybox_ref, "sh", "-c",
                     "echo started $X; exec sleep 300").stdout.strip()  # fmt: skip
    assert len(cid) == 64
    ps = svc.docker("ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout
    assert f"{cid[:12]} cli Up" in ps
    deadline = time.monotonic() + 30
    while svc.docker("logs", "cli").stdout != "started 1\n":
        assert time.monotonic() < deadline, svc.docker("logs", "cli").stdout
        time.sleep(0.2)
    assert svc.docker("exec", "cli", "cat", "/proc/1/cmdline").stdout == "sleep\x00300\x00"
    assert svc.docker("exec", "-i", "cli", "cat", input="piped\n").stdout == "piped\n"
    assert "sleep 300" in svc.docker("top", "cli").stdout
    assert "cli" in svc.docker("stats", "--no-stream", "cli").stdout
    assert (
        svc.docker("inspect", "-f", "{{.State.Status}} {{.Name}}", "cli").stdout == "running /cli\n"
    )
    assert svc.docker("ps", "-q", "--filter", "status=running").stdout.split() == [cid[:12]]
    svc.docker("restart", "-t", "1", "cli")
    assert svc.docker("inspect", "-f", "{{.State.Running}}", "cli").stdout == "true\n"
    svc.docker("stop", "-t", "1", "cli")
    assert svc.docker("logs", "-f", "cli").stdout == "started 1\n" * 2  # ends: it has stopped
    svc.docker("rm", "-f", "cli")
    assert "cli" not in svc.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    cp = svc.docker("logs", "cli", check=False)
    assert cp.returncode != 0 and "No such container: cli" in cp.stderr


def test_idle_exit_after_abandoned_wait(tmp_path, registry, busybox_ref):
    """A client that gives up waiting frees its connection: the service still exits when idle, and
    leaves the container running."""
    store = Rootless(str(tmp_path / "idle"))
    store.trust(registry)
    service = Service(store, idle=1).start()
    try:
        c = docker.DockerClient(base_url=service.host, version="1.41", timeout=60)
        c.images.pull(busybox_ref)
        ctr = c.containers.run(busybox_ref, ["sleep", "300"], detach=True)
        with pytest.raises(requests.exceptions.RequestException):  # it timed out
            docker.APIClient(base_url=service.host, version="1.41").wait(ctr.id, timeout=1)
        c.close()
        assert service.proc.wait(60) == 0
        assert store("ps", "-q", check=True).stdout.strip() == ctr.id[:12]
    finally:
        store("rm", "-f", "-t", "0", "-a")
        service.stop()
        store.cleanup()


@pytest.mark.root
def test_run_path_does_not_import_the_server():
    """`rootless run`'s modules (the CLI, the run verb, the library it calls) load no API code."""
    import subprocess
    import sys

    code = ("import sys, rootless.cli, rootless.commands.run, rootless.runtime.api, "
            "rootless.runtime.monitor; print(sorted(m for m in sys.modules "
            "if m.startswith('rootless.api') or m == 'h11'))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_testcontainers_generic(svc, client, busybox_ref, monkeypatch):
    """testcontainers-python's generic container with a log wait strategy and a mapped port, with
    DOCKER_HOST set and its reaper (Ryuk) disabled (TESTCONTAINERS_RYUK_DISABLED=true); when the
    tests themselves run in a container (/.dockerenv) testcontainers would reach ports through a
    bridge gateway, which slirp4netns has not: TESTCONTAINERS_CONNECTION_MODE=docker_host."""
    from testcontainers.core.config import ConnectionMode, testcontainers_config
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    monkeypatch.setenv("DOCKER_HOST", svc.host)
    monkeypatch.setattr(testcontainers_config, "_ryuk_disabled", True)
    monkeypatch.setattr(
        testcontainers_config, "connection_mode_override", ConnectionMode.docker_host
    )
    cmd = "sh -c 'mkdir /w && echo tc > /w/index.html && echo ready && exec httpd -f -p 80 -h /w'"
    wait = LogMessageWaitStrategy("ready").with_startup_timeout(60)
    with (
        DockerContainer(busybox_ref)
        .with_command(cmd)
        .with_exposed_ports(80)
        .waiting_for(wait) as ctr
    ):
        url = f"http://{ctr.get_container_host_ip()}:{ctr.get_exposed_port(80)}/"
        assert _fetch(url, time.monotonic() + 30) == b"tc\n"
        cid = ctr.get_wrapped_container().id
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(cid)


def test_docker_cli_run_it(svc, client, busybox_ref):
    """`docker run -it` from a terminal: the shell's prompt, what is typed, its exit code."""
    from support.term import Terminal

    env = {**svc.env, "DOCKER_CONFIG": os.path.join(svc.store.base, "docker-config"),
           "HOME": svc.store.base}  # fmt: skip
    term = Terminal(["/usr/bin/docker", "run", "-it", "--rm", busybox_ref, "sh"], env)
    try:
        assert term.expect(b"# "), term.out
        term.send(b"echo answer=$((6*7)); tty\r")
        assert term.expect(b"answer=42"), term.out
        assert term.expect(b"/dev/pts/"), term.out
        term.send(b"exit 3\r")
        assert term.wait(60) == 3
    finally:
        term.close()


def test_binds_and_anonymous_volumes(client, busybox_ref, tmp_path):
    """HostConfig.Binds (read-only here) and Config.Volumes: an anonymous volume, except for a
    path a bind takes (docker-compose lists those there too)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("from host\n")
    api = client.api
    cid = api.create_container(
        busybox_ref,
        ["sh", "-c", "cat /mnt/f; touch /anon/x && echo anon-ok; touch /mnt/y || echo ro"],
        volumes=["/mnt", "/anon"],
        host_config=api.create_host_config(binds={str(src): {"bind": "/mnt", "mode": "ro"}}),
    )["Id"]
    api.start(cid)
    assert api.wait(cid, timeout=60)["StatusCode"] == 0
    assert api.logs(cid, stderr=False) == b"from host\nanon-ok\nro\n"
    mounts = {m["Destination"]: m for m in api.inspect_container(cid)["Mounts"]}
    assert mounts["/mnt"]["Type"] == "bind" and mounts["/mnt"]["RW"] is False
    assert mounts["/anon"]["Type"] == "volume"
    api.remove_container(cid, v=True)
    assert not (src / "y").exists()


def test_docker_cli_cp(svc, busybox_ref, tmp_path):
    """`docker cp` both ways (HEAD, GET and PUT .../archive), a directory and a file."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("a\n")
    cid = svc.docker("run", "-d", busybox_ref, "sleep", "300").stdout.strip()
    try:
        svc.docker("cp", str(src), f"{cid}:/tmp/")
        out = svc.docker("exec", cid, "cat", "/tmp/src/sub/a.txt").stdout
        assert out == "a\n"
        svc.docker("exec", cid, "sh", "-c", "echo made inside > /tmp/src/b.txt")
        svc.docker("cp", f"{cid}:/tmp/src/b.txt", str(tmp_path / "b.txt"))
        assert (tmp_path / "b.txt").read_text() == "made inside\n"
        svc.docker("cp", f"{cid}:/tmp/src", str(tmp_path / "back"))
        assert (tmp_path / "back" / "sub" / "a.txt").read_text() == "a\n"
        bad = svc.docker("cp", f"{cid}:/no/such", str(tmp_path / "x"), check=False)
        assert bad.returncode != 0 and "/no/such" in bad.stderr
    finally:
        svc.docker("rm", "-f", cid)
