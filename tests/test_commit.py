"""commit, history, diff, import and export as a user runs them, against podman's documented output:
`diff` prints ``A|C|D /path`` lines sorted by path (JSON with --format json), `history` a table
ID/CREATED/CREATED BY/SIZE/COMMENT (--no-trunc, --quiet, --format, -H), `commit` the new image id,
`import` ``sha256:<id>``, `export` a tar of the container's filesystem.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tarfile

import pytest

ID = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def base(rootless, registry, busybox_ref):
    rootless.trust(registry)
    rootless("pull", "-q", busybox_ref, check=True)
    return busybox_ref


CHANGES = (
    "echo hi > /newfile; rm /etc/motd-layer2 2>/dev/null; rm -rf /opt/keep; mkdir -p /opt/data/x;"
    " echo y > /etc/passwd2"
)


@pytest.fixture
def changed(rootless, base):
    """A stopped container with known changes to its image's filesystem."""
    rootless("run", "--name", "ctr", "--network", "none", "-e", "FOO=bar", "-w", "/tmp",
             base, "sh", "-c", CHANGES, check=True)  # fmt: skip
    return "ctr"


def test_diff_of_a_container(rootless, changed):
    out = rootless("diff", changed, check=True).stdout.splitlines()
    assert out == [
        "C /etc", "A /etc/passwd2", "A /newfile", "C /opt", "C /opt/data", "A /opt/data/x",
        "D /opt/keep",
    ]  # fmt: skip
    data = json.loads(rootless("container", "diff", "--format", "json", changed, check=True).stdout)
    assert data == {
        "changed": ["/etc", "/opt", "/opt/data"],
        "added": ["/etc/passwd2", "/newfile", "/opt/data/x"],
        "deleted": ["/opt/keep"],
    }
    cp = rootless("diff", "nosuchthing")
    assert cp.returncode == 125 and cp.stderr.startswith("Error: ") and "nosuchthing" in cp.stderr


def test_commit_then_run_history_and_image_diff(rootless, changed, base):
    cp = rootless("commit", "--change", 'CMD ["cat", "/newfile"]', "--change", "ENV Z=1",
                  "-m", "my message", "--author", "Ann <ann@example.com>", "-f", "docker",
                  changed, "snap:v1", check=True)  # fmt: skip
    image_id = cp.stdout.strip()
    assert ID.match(image_id)
    assert rootless("run", "--rm", "--network", "none", "snap:v1", check=True).stdout == "hi\n"
    data = json.loads(rootless("image", "inspect", "snap:v1", check=True).stdout)[0]
    assert data["Id"] == image_id and data["RepoTags"] == ["localhost/snap:v1"]
    assert data["Author"] == "Ann <ann@example.com>" and data["Comment"] == "my message"
    c = data["Config"]
    assert c["Cmd"] == ["cat", "/newfile"] and "Z=1" in c["Env"] and "FOO=bar" in c["Env"]
    assert c["WorkingDir"] == "/tmp"
    assert data["History"][-1]["comment"] == "my message"
    # the image's diff is its top layer: the container's changes
    assert rootless("image", "diff", "snap:v1", check=True).stdout.splitlines()[:2] == [
        "C /etc", "A /etc/passwd2",
    ]  # fmt: skip
    # history: podman's table, newest first
    lines = rootless("history", "snap:v1", check=True).stdout.splitlines()
    assert re.match(r"^ID {12}CREATED +CREATED BY +SIZE +COMMENT$", lines[0])
    assert lines[1].startswith(image_id[:12] + "  ") and lines[1].endswith("my message")
    assert len(lines) == 1 + 4 and lines[-1].startswith("<missing>")
    by = lines[1][lines[0].index("CREATED BY") : lines[0].index("SIZE")].rstrip()
    assert by.startswith("sh -c echo hi") and by.endswith("...") and len(by) == 45
    full = rootless("history", "--no-trunc", "snap:v1", check=True).stdout.splitlines()
    assert full[1].startswith(image_id + "  ") and CHANGES in full[1]
    assert rootless("history", "-q", "snap:v1", check=True).stdout.split()[0] == image_id[:12]
    fmt = rootless("history", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Comment}}", "snap:v1",
                   check=True).stdout.splitlines()  # fmt: skip
    assert fmt[0] == f"{image_id[:12]}|{('sh -c ' + CHANGES)[:42]}...|my message"  # as podman
    rows = json.loads(rootless("history", "--format", "json", "snap:v1", check=True).stdout)
    assert rows[0]["id"] == image_id and rows[0]["size"] > 0 and rows[0]["comment"] == "my message"
    raw = rootless("history", "-H=false", "snap:v1", check=True).stdout.splitlines()[1]
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", raw) and f" {rows[0]['size']} " in raw
    # a quiet commit with no name leaves an image that `images` lists as <none>
    again = rootless("commit", "-q", "--pause=false", changed, check=True)
    assert again.stderr == "" and ID.match(again.stdout.strip())


def test_commit_of_a_running_container_pauses_it(rootless, base):
    rootless("run", "-d", "--name", "live", "--network", "none", base, "sh", "-c",
             "i=0; while :; do i=$((i+1)); echo $i > /count; sleep 0.05; done", check=True)  # fmt: skip
    try:
        image_id = rootless("commit", "-q", "live", "frozen", check=True).stdout.strip()
        assert ID.match(image_id)
        assert rootless("ps", "--format", "{{.State}}", check=True).stdout.startswith("Up ")
        n = rootless("run", "--rm", "--network", "none", "frozen", "cat", "/count", check=True)
        assert int(n.stdout) > 0
    finally:
        rootless("rm", "-f", "-t", "0", "live", check=True)


def test_export_and_import_round_trip(rootless, changed, tmp_path):
    out = tmp_path / "fs.tar"
    rootless("export", "-o", str(out), changed, check=True)
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
        assert {"newfile", "etc/passwd2", "bin/busybox", "opt/data/x"} <= names
        assert "opt/keep" not in names and "opt/keep/k" not in names
        owned = tf.getmember("opt/owned-1000")
        assert (owned.uid, owned.gid) == (1000, 1000)
        assert tf.extractfile("newfile").read() == b"hi\n"
    # to stdout as well
    cp = rootless("container", "export", changed, text=False, check=True)
    assert len(cp.stdout) == os.path.getsize(out)
    # import the file with changes and a message
    cp = rootless("import", "--change", 'CMD ["cat", "/newfile"]', "-m", "imported",
                  str(out), "imp:v1", check=True)  # fmt: skip
    assert re.match(r"^sha256:[0-9a-f]{64}$", cp.stdout.strip())
    assert rootless("run", "--rm", "--network", "none", "imp:v1", check=True).stdout == "hi\n"
    data = json.loads(rootless("image", "inspect", "imp:v1", check=True).stdout)[0]
    assert data["Id"] == cp.stdout.strip()[7:] and len(data["RootFS"]["Layers"]) == 1
    assert data["History"][0]["comment"] == "imported"
    assert data["History"][0]["created_by"].startswith("/bin/sh -c #(nop) ADD file:")
    # from stdin, gzip-compressed, with no name
    gz = gzip.compress(out.read_bytes())
    cp = rootless("image", "import", "-", input=gz, check=True)
    image_id = cp.stdout.strip().removeprefix(b"sha256:").decode()
    shown = rootless("run", "--rm", "--network", "none", image_id, "stat", "-c", "%u",
                     "/opt/owned-1000", check=True)  # fmt: skip
    assert shown.stdout == "1000\n"
    # a tar with an entry that leaves the root is refused, and nothing is stored
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("../escape")
        tf.addfile(ti, io.BytesIO(b""))
    before = rootless("images", "-a", "-q", check=True).stdout
    cp = rootless("import", "-", "bad:v1", input=buf.getvalue())
    assert cp.returncode == 125 and cp.stderr.count(b"Error:") == 1 and b".." in cp.stderr
    assert rootless("images", "-a", "-q", check=True).stdout == before
    tmp = os.path.join(rootless.data_dir, "rootless", "tmp")
    assert [n for n in os.listdir(tmp) if not n.endswith(".lock")] == []


def test_commit_changes_are_checked(rootless, changed):
    cp = rootless("commit", "--change", "RUN rm -rf /", changed, "x")
    assert cp.returncode == 125 and "RUN is not allowed" in cp.stderr
    assert cp.stderr.count("Error:") == 1
    cp = rootless("commit", "nosuch", "x")
    assert cp.returncode == 125 and "nosuch" in cp.stderr
