"""Pods as the unprivileged user, with the real CLI: an infra container holding the shared
namespaces (its pause, its network helper), containers of a pod talking over localhost, -p on the
pod answering from the host, the shared hostname and pid namespace, pod start/stop/restart/kill/
rm/ps/inspect/exists/top/logs/prune with podman's output and exit codes, ps --pod, --infra=false,
run --pod new:, refusals, and nothing left after teardown (processes, mounts, network namespaces)."""

import json
import os

import pytest
from conftest import Rootless
from support import leftovers, stores
from support.net import free_port, http_get
from support.wait import poll


@pytest.fixture(scope="module")
def store(tmp_path_factory, registry, busybox_ref):
    yield from stores.busybox_store(Rootless, tmp_path_factory, registry, busybox_ref, "pods")


@pytest.fixture
def rl(store):
    """The module's store; after each test no pod, container, process or mount is left."""
    yield store
    store("pod", "rm", "-af", "-t", "0", check=True, timeout=300)
    store("rm", "-af", "-t", "0", check=True, timeout=300)
    stores.assert_nothing_left(store)


WEB = "mkdir -p /www && echo {0} > /www/index.html && exec httpd -f -p 80 -h /www"


def state(rl, name):
    return rl("inspect", "--format", "{{.State.Status}}", name).stdout.strip()


def test_web_and_client_share_localhost_and_the_pod_publishes(rl):
    port = free_port()
    pod_id = rl(
        "pod", "create", "--name", "app", "-p", f"127.0.0.1:{port}:80", check=True
    ).stdout.strip()
    assert len(pod_id) == 64
    rl(
        "run",
        "-d",
        "--pod",
        "app",
        "--name",
        "web",
        rl.img,
        "sh",
        "-c",
        WEB.format("hello-pod"),
        check=True,
    )
    # a client container of the pod reaches the web server on localhost
    out = poll(
        lambda: (
            rl("run", "--rm", "--pod", "app", rl.img, "wget", "-qO-", "http://localhost:80/").stdout
        )
    )
    assert out == "hello-pod\n"
    # the pod's published port answers from the host (through the infra's network helper)
    assert poll(lambda: http_get(f"http://127.0.0.1:{port}/")) == "hello-pod\n"
    # the infra container holds the namespaces: the member's are the infra's
    infra = json.loads(rl("pod", "inspect", "app", check=True).stdout)["InfraContainerID"]
    ipid = int(rl("inspect", "--format", "{{.State.Pid}}", infra, check=True).stdout)
    wpid = int(rl("inspect", "--format", "{{.State.Pid}}", "web", check=True).stdout)
    for ns in ("net", "ipc", "uts", "user"):
        assert os.stat(f"/proc/{ipid}/ns/{ns}").st_ino == os.stat(f"/proc/{wpid}/ns/{ns}").st_ino, (
            ns
        )
    for ns in ("mnt", "pid"):
        assert os.stat(f"/proc/{ipid}/ns/{ns}").st_ino != os.stat(f"/proc/{wpid}/ns/{ns}").st_ino, (
            ns
        )
    with open(f"/proc/{ipid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] == b"rootless-pause"
    netns = os.stat(f"/proc/{ipid}/ns/net").st_ino
    # teardown: pod rm -f stops and removes everything, and the network namespace is gone
    assert rl("pod", "rm", "-f", "-t", "1", "app", check=True).stdout == pod_id + "\n"
    assert rl("ps", "-aq").stdout == "" and rl("pod", "ps", "-q").stdout == ""
    poll(lambda: not leftovers.in_netns(netns), timeout=20)


def test_hostname_hosts_and_a_shared_pid_namespace(rl):
    rl("pod", "create", "--name", "hp", "--hostname", "pod-host", "--share", "+pid", check=True)
    out = rl("run", "--rm", "--pod", "hp", "--name", "c1", rl.img, "sh", "-c",
             "hostname; echo $(cat /etc/hostname); grep -cw c1 /etc/hosts; ps -o pid,args", check=True).stdout  # fmt: skip
    lines = out.splitlines()
    assert lines[:3] == ["pod-host", "pod-host", "1"]
    assert any(line.split() == ["1", "rootless-pause"] for line in lines[3:]), out
    cp = rl("run", "--rm", "--pod", "hp", "--hostname", "x", rl.img, "true")
    assert (
        cp.returncode == 125 and "cannot set hostname" in cp.stderr and cp.stderr.count("\n") == 1
    )


def test_ps_inspect_top_logs_and_lifecycle(rl, podman):
    pod_id = rl("pod", "create", "--label", "tier=web", "life", check=True).stdout.strip()
    data = json.loads(rl("pod", "inspect", "life").stdout)
    assert (data["Name"], data["State"], data["NumContainers"]) == ("life", "Created", 1)
    assert data["SharedNamespaces"] == ["ipc", "net", "uts"] and data["Labels"] == {"tier": "web"}
    infra_name = f"{pod_id[:12]}-infra"
    assert data["Containers"][0]["Name"] == infra_name
    rl("run", "-d", "--pod", "life", "--name", "talker", rl.img,
       "sh", "-c", "echo out; echo err >&2; exec sleep 300", check=True)  # fmt: skip
    assert (
        rl("pod", "ps", "--format", "{{.Name}} {{.Status}} {{.NumberOfContainers}}").stdout
        == "life Running 2\n"
    )
    header = rl("pod", "ps").stdout.splitlines()[0].split()
    assert header == podman("pod", "ps").stdout.splitlines()[0].split()
    names = (
        rl("pod", "ps", "--ctr-names", "--format", "{{.ContainerNames}}").stdout.strip().split(",")
    )
    assert sorted(names) == sorted(["talker", infra_name])
    rows = json.loads(rl("pod", "ps", "--format", "json").stdout)
    assert (
        rows[0]["Id"] == pod_id
        and rows[0]["Status"] == "Running"
        and len(rows[0]["Containers"]) == 2
    )
    out = rl(
        "ps", "--pod", "--format", "{{.Names}} {{.Pod}} {{.PodName}}", "--filter", "pod=life"
    ).stdout
    assert sorted(out.splitlines()) == sorted(
        f"{n} {pod_id[:12]} life" for n in ("talker", infra_name)
    )
    lines = rl("ps", "-a", "--pod").stdout.splitlines()
    assert lines[0].split()[-4:] == ["NAMES", "POD", "ID", "PODNAME"]  # podman's columns
    assert [line.split()[-2:] for line in lines[1:]] == [[pod_id[:12], "life"]] * 2
    assert set(rl("ps", "-a", "--filter", "pod=life", "--format", "{{.Names}}").stdout.split()) == {
        "talker",
        infra_name,
    }
    top = rl("pod", "top", "life", check=True).stdout
    assert "sleep 300" in top and "rootless-pause" in top
    logs = poll(lambda: (cp := rl("pod", "logs", "life")) and "err" in cp.stderr and cp)
    cid = rl("inspect", "--format", "{{.Id}}", "talker").stdout.strip()
    assert logs.stdout == f"{cid[:12]} out\n" and logs.stderr == f"{cid[:12]} err\n"
    assert rl("pod", "logs", "-c", "talker", "life").stdout == "out\n"
    assert rl("pod", "exists", "life").returncode == 0
    # stop, start, restart, kill: each prints the pod's ID
    assert rl("pod", "stop", "-t", "1", "life").stdout == pod_id + "\n"
    assert state(rl, "talker") == state(rl, infra_name) == "exited"
    assert json.loads(rl("pod", "inspect", "life").stdout)["State"] == "Exited"
    assert rl("pod", "start", "life").stdout == pod_id + "\n"
    assert state(rl, "talker") == state(rl, infra_name) == "running"
    assert rl("pod", "restart", "life").stdout == pod_id + "\n"
    assert state(rl, "talker") == "running"
    assert rl("pod", "kill", "life").stdout == pod_id + "\n"
    poll(lambda: state(rl, "talker") == state(rl, infra_name) == "exited")
    assert rl("pod", "prune", "-f").stdout == pod_id + "\n"
    assert rl("pod", "exists", "life").returncode == 1 and rl("ps", "-aq").stdout == ""


@pytest.mark.parametrize(
    "args, code, text",
    [
        (("pod", "create", "--name", "dup"), 125, 'name "dup" is in use'),
        (("pod", "inspect", "nope"), 125, "no such pod nope"),
        (("pod", "rm", "nope"), 1, "no pod with name or ID nope found"),
        (("pod", "stop", "nope"), 125, "no pod with name or ID nope found"),
        (("pod", "start", "nope"), 125, "no pod with name or ID nope found"),
        (("pod", "top", "nope"), 125, "no pod with name or ID nope found"),
        (("pod", "create", "--share", "pid,bogus"), 125, "invalid kernel namespace to share: bogus"),
        (("pod", "create", "--infra=false", "-p", "8080:80"), 125, "you must have an infra container"),
        (("pod", "create", "--name", "bad/name"), 125, "names must match"),
        (("run", "--rm", "--pod", "nope", "IMG", "true"), 125, "no pod with name or ID nope found"),
        (("run", "--rm", "--pod", "dup", "-p", "9000:80", "IMG", "true"), 125, "must be defined when the pod is created"),
        (("rm", "-f", "INFRA"), 125, "infra container of pod dup"),
    ],
)  # fmt: skip
def test_errors_are_one_line_with_podmans_code(rl, podman, args, code, text):
    pod_id = rl("pod", "create", "--name", "dup", check=True).stdout.strip()
    repl = {"IMG": rl.img, "INFRA": f"{pod_id[:12]}-infra"}
    cp = rl(*(repl.get(a, a) for a in args))
    assert cp.returncode == code, cp.stderr
    assert cp.stderr.count("\n") == 1 and cp.stderr.startswith("Error: ") and text in cp.stderr
    if args[:2] in (("pod", "inspect"), ("pod", "rm"), ("pod", "stop")):
        assert podman(*args).returncode == code  # podman's exit code
    assert rl("pod", "ps", "-q").stdout.split() == [pod_id[:12]]  # nothing half-created
    assert state(rl, repl["INFRA"]) == "created"  # nor started


def test_pod_rm_refuses_running_containers_and_force_stops_them(rl):
    rl("pod", "create", "--name", "busy", check=True)
    rl("run", "-d", "--pod", "busy", "--name", "b1", rl.img, "sleep", "300", check=True)
    cp = rl("pod", "rm", "busy")
    assert (
        cp.returncode == 125
        and "has running containers (b1)" in cp.stderr
        and cp.stderr.count("\n") == 1
    )
    assert state(rl, "b1") == "running"
    rl("pod", "rm", "-f", "-t", "0", "busy", check=True)
    assert rl("ps", "-aq").stdout == ""


def test_pod_without_infra_and_run_pod_new(rl):
    rl("pod", "create", "--infra=false", "--name", "group", check=True)
    data = json.loads(rl("pod", "inspect", "group").stdout)
    assert data["CreateInfra"] is False and "SharedNamespaces" not in data
    out = rl(
        "run", "--rm", "--pod", "group", "--network", "none", rl.img, "hostname", check=True
    ).stdout
    assert out.strip() != "group"  # no shared uts: the container's own hostname
    port = free_port()
    rl("run", "-d", "--pod", "new:fresh", "-p", f"127.0.0.1:{port}:80", "--name", "w",
       rl.img, "sh", "-c", WEB.format("new-pod"), check=True)  # fmt: skip
    assert poll(lambda: http_get(f"http://127.0.0.1:{port}/")) == "new-pod\n"
    ports = json.loads(rl("pod", "inspect", "fresh").stdout)["InfraConfig"]["PortBindings"]
    assert ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}


def test_infra_image_and_command(rl):
    rl(
        "pod",
        "create",
        "--name",
        "custom",
        "--infra-image",
        rl.img,
        "--infra-command",
        '["sleep", "300"]',
        check=True,
    )
    out = rl("run", "--rm", "--pod", "custom", rl.img, "hostname", check=True).stdout
    assert out == "custom\n"
    top = rl("pod", "top", "custom", check=True).stdout
    assert "sleep 300" in top
    cp = rl("pod", "create", "--infra-command", "sleep 1")
    assert cp.returncode == 125 and "--infra-command needs --infra-image" in cp.stderr


def test_exit_policy_stop_and_a_member_starts_its_infra(rl):
    pod_id = rl("pod", "create", "--name", "ep", "--exit-policy", "stop", check=True).stdout.strip()
    infra = f"{pod_id[:12]}-infra"
    rl("run", "--pod", "ep", "--name", "once", rl.img, "true", check=True)
    poll(lambda: state(rl, infra) == "exited")  # the last container exited: the pod stops
    assert json.loads(rl("pod", "inspect", "ep").stdout)["State"] == "Exited"
    rl("run", "-d", "--pod", "ep", "--name", "long", rl.img, "sleep", "300", check=True)
    assert state(rl, infra) == "running"  # a member starts the pod's infra first
    rl("stop", "-t", "0", "long", check=True)
    poll(lambda: state(rl, infra) == "exited")


def test_a_pod_on_a_user_network_answers_to_its_name(rl):
    rl("network", "create", "podnet", check=True)
    try:
        rl("pod", "create", "--name", "named", "--network", "podnet", check=True)
        rl(
            "run",
            "-d",
            "--pod",
            "named",
            "--name",
            "nweb",
            rl.img,
            "sh",
            "-c",
            WEB.format("by-name"),
            check=True,
        )
        # another container on the network reaches the pod by the pod's name (the infra's address)
        get = ("run", "--rm", "--network", "podnet", rl.img, "wget", "-qO-", "http://named/")
        assert poll(lambda: rl(*get).stdout) == "by-name\n"
        # and a container of the pod still reaches it on localhost
        assert (
            rl("run", "--rm", "--pod", "named", rl.img, "wget", "-qO-", "http://localhost/").stdout
            == "by-name\n"
        )
    finally:
        rl("pod", "rm", "-f", "-t", "0", "named")
        rl("network", "rm", "podnet", check=True)
