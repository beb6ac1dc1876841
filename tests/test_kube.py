"""`kube generate` and `kube play` as the unprivileged user, with the real CLI: generated YAML beside
podman 4.3's for the same container, every generated document valid against the Kubernetes OpenAPI
schemas (kubernetes-validate, offline, strict), the round trip generate → validate → play (volumes'
data, ports, env), manifests shaped like the Kubernetes documentation's examples (a Deployment's
replicas as pods, a ConfigMap as env and files, a Job writing to a PersistentVolumeClaim), --down,
--replace and --publish, and an unsupported kind refused in one line with nothing created."""

import os

import kubernetes_validate
import pytest
import yaml
from conftest import Rootless
from support import stores
from support.net import free_port, http_get
from support.wait import poll

DATA = os.path.join(os.path.dirname(__file__), "data", "kube")
K8S_VERSION = "1.30"


@pytest.fixture(scope="module")
def store(tmp_path_factory, registry, busybox_ref):
    yield from stores.busybox_store(Rootless, tmp_path_factory, registry, busybox_ref, "kube")


@pytest.fixture
def rl(store):
    yield store
    store("pod", "rm", "-af", "-t", "0", check=True, timeout=300)
    store("rm", "-af", "-t", "0", check=True, timeout=300)
    store("volume", "prune", "-f", check=True)
    stores.assert_nothing_left(store)


def validate(text: str) -> list[dict]:
    """Every document, each checked against the Kubernetes schemas (strict: no unknown field)."""
    docs = [d for d in yaml.safe_load_all(text) if d]
    for d in docs:
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    return docs


def manifest(tmp_path, name: str, image: str) -> str:
    with open(os.path.join(DATA, name)) as f:
        text = f.read().replace("{image}", image)
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _comparable(doc: dict) -> dict:
    doc = dict(doc)
    meta = dict(doc["metadata"])
    meta.pop("creationTimestamp")
    doc["metadata"] = meta
    return doc


def test_generate_container_as_podman_writes_it(rl, podman, registry, tmp_path):
    podman.trust(registry)
    host = tmp_path / "hostdir"
    host.mkdir()
    flags = ["--name", "web", "-p", f"{free_port()}:80", "-e", "FOO=bar", "-v", "data1:/data",
             "-v", f"{host}:/host:ro", "--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN",
             "-u", "1000:1000", "-w", "/tmp"]  # fmt: skip
    podman("create", *flags, rl.img, "sleep", "1000", check=True, timeout=300)
    rl("run", "-d", *flags, rl.img, "sleep", "1000", check=True)
    ours = rl("kube", "generate", "web", check=True).stdout
    theirs = podman("generate", "kube", "web", check=True).stdout
    assert ours.startswith("# Save the output of this file")
    assert "---\n" in ours  # the volume note, as podman writes it when volumes are mounted
    assert [_comparable(d) for d in validate(ours)] == [
        _comparable(d) for d in yaml.safe_load_all(theirs) if d
    ]
    assert rl("generate", "kube", "web", check=True).stdout == ours  # the older name


def test_generate_pod_deployment_job_service_and_pvc_validate(rl, tmp_path):
    port = free_port()
    rl("volume", "create", "--label", "app=db", "dbdata", check=True)
    rl("pod", "create", "--name", "app", "-p", f"{port}:80", check=True)
    rl("run", "-d", "--pod", "app", "--name", "app-web", "-v", "dbdata:/data:ro", rl.img,
       "httpd", "-f", "-p", "80", check=True)  # fmt: skip
    rl("run", "-d", "--pod", "app", "--name", "app-side", "-t", rl.img, "sleep", "1000",
       check=True)  # fmt: skip
    pod = validate(rl("kube", "generate", "app", check=True).stdout)
    assert [d["kind"] for d in pod] == ["Pod"]
    spec = pod[0]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app-web", "app-side"]
    assert spec["containers"][0]["ports"] == [{"containerPort": 80, "hostPort": port}]
    assert spec["containers"][1]["tty"] is True
    assert spec["volumes"] == [
        {"name": "dbdata-pvc", "persistentVolumeClaim": {"claimName": "dbdata", "readOnly": True}}
    ]
    assert spec["hostname"] == "app" and spec["restartPolicy"] == "Never"
    dep = validate(rl("kube", "generate", "--type", "deployment", "--replicas", "3", "-s", "app",
                      "dbdata", check=True).stdout)  # fmt: skip
    assert [d["kind"] for d in dep] == ["Service", "Deployment", "PersistentVolumeClaim"]
    assert dep[1]["metadata"]["name"] == "app-deployment" and dep[1]["spec"]["replicas"] == 3
    assert dep[1]["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    assert dep[0]["spec"]["ports"][0]["port"] == 80
    assert dep[2]["metadata"]["labels"] == {"app": "db"}
    job = validate(rl("kube", "generate", "--type", "job", "app", check=True).stdout)
    assert job[0]["kind"] == "Job" and job[0]["metadata"]["name"] == "app-job"
    bad = rl("kube", "generate", "nosuch")
    assert bad.returncode == 125 and bad.stderr.count("\n") == 1, bad.stderr


def test_round_trip_generate_validate_play(rl, tmp_path):
    port = free_port()
    rl("pod", "create", "--name", "rt", "-p", f"{port}:80", check=True)
    rl("run", "-d", "--pod", "rt", "--name", "rt-web", "-e", "GREETING=hello",
       "-v", "rtdata:/www", rl.img, "sh", "-c",
       'echo "$GREETING $(cat /www/count 2>/dev/null)" > /www/index.html; exec httpd -f -p 80 -h /www',
       check=True)  # fmt: skip
    rl("exec", "rt-web", "sh", "-c", "echo 42 > /www/count", check=True)
    poll(lambda: http_get(f"http://127.0.0.1:{port}/").startswith("hello"), timeout=20)
    text = rl("kube", "generate", "rt", check=True).stdout
    validate(text)
    path = tmp_path / "rt.yaml"
    path.write_text(text)
    rl("pod", "rm", "-f", "rt", check=True)
    assert rl("ps", "-aq").stdout == ""
    out = rl("kube", "play", str(path), check=True).stdout
    assert out.startswith("Pod:\n") and "\nContainer:\n" in out
    # the container is POD-NAME as podman names it; its data, env and port came back
    assert "rt-rt-web" in rl("ps", "--format", "{{.Names}}").stdout
    assert poll(lambda: http_get(f"http://127.0.0.1:{port}/").strip() == "hello 42", timeout=30)
    again = rl("kube", "play", str(path))
    assert again.returncode == 125 and "--replace" in again.stderr
    other = free_port()
    rl("kube", "play", "--replace", "--publish", f"{other}:80", str(path), check=True)
    assert poll(lambda: http_get(f"http://127.0.0.1:{other}/").strip() == "hello 42", timeout=30)
    down = rl("kube", "play", "--down", str(path), check=True).stdout
    assert down.startswith("Pods stopped:\n") and "Pods removed:\n" in down
    assert rl("pod", "ps", "-q").stdout == "" and rl("ps", "-aq").stdout == ""
    assert rl("volume", "exists", "rtdata").returncode == 0  # the claim's data is kept


def test_documentation_examples(rl, tmp_path):
    dep = manifest(tmp_path, "deployment.yaml", rl.img)
    out = rl("kube", "play", dep, check=True).stdout
    assert out.count("Pod:\n") == 2
    pods = rl("pod", "ps", "--format", "{{.Name}}").stdout.split()
    assert sorted(pods) == ["web-deployment-pod-0", "web-deployment-pod-1"]
    assert rl("exec", "web-deployment-pod-1-web", "hostname", check=True).stdout.strip() == (
        "web-deployment-pod-1"
    )
    rl("kube", "down", dep, check=True)

    cm = manifest(tmp_path, "configmap-pod.yaml", rl.img)
    rl("kube", "play", cm, check=True)
    env = rl("exec", "configmap-demo-pod-demo", "env", check=True).stdout.splitlines()
    assert "PLAYER_INITIAL_LIVES=3" in env
    assert "UI_PROPERTIES_FILE_NAME=user-interface.properties" in env
    assert "CFG_player_initial_lives=3" in env
    props = rl("exec", "configmap-demo-pod-demo", "cat", "/config/game.properties", check=True)
    assert props.stdout == "enemy.types=aliens,monsters\nplayer.maximum-lives=5\n"
    rl("kube", "play", "--down", cm, check=True)

    job = manifest(tmp_path, "job-pvc.yaml", rl.img)
    out = rl("kube", "play", job, check=True).stdout
    assert out.startswith("Volume:\ntask-pv-claim\n")
    poll(lambda: "Exited" in rl("ps", "-a", "--format", "{{.Status}}", "--filter",
                                "name=pi-pod-pi").stdout, timeout=30)  # fmt: skip
    rl("kube", "down", "--force", job, check=True)
    assert rl("volume", "exists", "task-pv-claim").returncode == 1
    rl("run", "--rm", "-v", "task-pv-claim:/data", rl.img, "true", check=True)


def test_unsupported_kind_creates_nothing(rl, tmp_path):
    path = tmp_path / "mixed.yaml"
    good = open(os.path.join(DATA, "configmap-pod.yaml")).read().replace("{image}", rl.img)
    path.write_text(good + "---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\n")
    r = rl("kube", "play", str(path))
    assert r.returncode == 125
    assert r.stderr.strip().count("\n") == 0 and "StatefulSet" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert rl("pod", "ps", "-q").stdout == "" and rl("ps", "-aq").stdout == ""
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pod\nmetadata: [\n")
    r = rl("kube", "play", str(bad))
    assert r.returncode == 125 and "invalid YAML" in r.stderr
