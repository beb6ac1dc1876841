"""run/create flags (issue #15) end to end as the unprivileged user, as podman-run(1) describes them:
labels and annotations, --requires, and one table feeding every new flag a bad value (one `Error:`
line, exit 125, nothing created)."""

import json
import os

import pytest
from conftest import Rootless


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    r = Rootless(str(tmp_path_factory.mktemp("runflags")))
    r.trust(registry)
    r("pull", busybox_ref, check=True)
    r.img = busybox_ref
    yield r
    r.cleanup()


def inspect(rl, name):
    return json.loads(rl("inspect", name, check=True).stdout)[0]


def containers(rl):
    cdir = os.path.join(rl.data_dir, "rootless", "containers")
    return [n for n in os.listdir(cdir) if not n.startswith(".")] if os.path.isdir(cdir) else []


def test_labels_and_annotations(rl, tmp_path):
    lf = tmp_path / "labels"
    lf.write_text("# a comment\n\n  from.file=1\nnovalue\nover=file\n")
    rl("run", "--name", "lab", "--network", "none", "-l", "x=1", "--label", "y",
       "--label-file", str(lf), "--label", "over=cli", "--annotation", "k=v=w",
       rl.img, "true", check=True)  # fmt: skip
    cfg = inspect(rl, "lab")["Config"]
    # the image's labels, then --label-file (a line without "=" sets nothing), then --label
    assert cfg["Labels"] == {"org.opencontainers.image.title": "busybox-test", "x": "1",
                             "y": "", "from.file": "1", "over": "cli"}  # fmt: skip
    assert cfg["Annotations"]["k"] == "v=w"
    # podman's own annotations are there too
    assert cfg["Annotations"]["io.podman.annotations.autoremove"] == "FALSE"
    assert cfg["Annotations"]["io.kubernetes.cri-o.TTY"] == "false"
    out = rl("inspect", "--format", "{{.Config.Labels.x}} {{json .Config.Annotations.k}}", "lab")
    assert out.stdout == '1 "v=w"\n'
    ps = rl("ps", "-a", "--filter", "name=lab", "--format", "{{.Labels}}", check=True)
    assert (
        ps.stdout
        == "map[from.file:1 org.opencontainers.image.title:busybox-test over:cli x:1 y:]\n"
    )
    rl("rm", "lab", check=True)


def test_labels_match_podman(rl, podman, registry, tmp_path):
    podman.trust(registry)
    podman("pull", rl.img, check=True)
    args = ["--name", "same", "-l", "a=b", "--annotation", "n=m", rl.img, "true"]
    rl("run", "--network", "none", *args, check=True)
    podman("create", *args, check=True)
    mine, theirs = inspect(rl, "same")["Config"], json.loads(podman("inspect", "same").stdout)[0]
    assert mine["Labels"] == theirs["Config"]["Labels"]
    assert mine["Annotations"] == theirs["Config"]["Annotations"]
    rl("rm", "same", check=True)


def test_requires_starts_the_other_container_first(rl):
    rl("run", "-d", "--name", "dep", "--network", "none", rl.img, "sleep", "1000", check=True)
    rl("stop", "-t", "0", "dep", check=True)
    cp = rl("run", "--rm", "--name", "needy", "--network", "none", "--requires", "dep",
            rl.img, "true")  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    assert rl("inspect", "--format", "{{.State.Status}}", "dep").stdout == "running\n"
    rl("run", "-d", "--name", "needy2", "--network", "none", "--requires", "dep",
       rl.img, "true", check=True)  # fmt: skip
    assert inspect(rl, "needy2")["Dependencies"] == [inspect(rl, "dep")["Id"]]
    rl("rm", "-f", "-t", "0", "dep", "needy2", check=True)


BAD = [
    (["--label", "=x"], "--label"),
    (["--label-file", "/nonexistent/labels"], "--label-file"),
    (["--annotation", "novalue"], "--annotation"),
    (["--requires", "no-such-container"], "no-such-container"),
    (["--restart", "sometimes"], "--restart"),
    (["--restart", "always:3"], "--restart"),
    (["--restart", "on-failure:x"], "--restart"),
    (["--restart", "on-failure:0"], "--restart"),
    (["--restart", "always"], "--rm"),  # the table's run has --rm: podman refuses the pair
]


@pytest.mark.parametrize("args,word", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_values_are_one_error_line_and_125(rl, args, word):
    before = containers(rl)
    cp = rl("run", "--rm", "--network", "none", *args, rl.img, "true")
    assert cp.returncode == 125, cp.stderr
    lines = cp.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and word in lines[0], cp.stderr
    assert containers(rl) == before
