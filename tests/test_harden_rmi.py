"""Removing images as podman 4.3 does (issue #14): an image a container uses keeps its layers until
that container is gone; names are untagged, never more; messages and exit codes side by side with
podman for every way of naming an image (name, short id, full id, sha256:id, digest reference),
with one or several names, used or not, with and without -f, -a and -i.

Podman 4.3.1 (checked here): `rmi REPO@DIGEST` of an image with one name removes the image, and of an
image with several names is `tag not known` (125) and changes nothing.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from conftest import Rootless
from support.podman import Podman

HEX64 = re.compile(r"\b[0-9a-f]{64}\b")
ID12 = re.compile(r"\b[0-9a-f]{12}\b")
IN_USE = (
    "Error: image used by CID: image is in use by a container: consider listing external "
    "containers and force-removing image"
)


@pytest.fixture(scope="module")
def engines(tmp_path_factory, registry, busybox_ref):
    rl = Rootless(str(tmp_path_factory.mktemp("rmi-rootless")))
    pm = Podman(str(tmp_path_factory.mktemp("rmi-podman")))
    try:
        for e in (rl, pm):
            e.trust(registry)
        yield {"rootless": rl, "podman": pm}
    finally:
        pm.cleanup()
        rl.cleanup()


def _reset(e, ref: str, names: int = 1, users: int = 0) -> dict:
    """An empty store, then the image with `names` names and `users` created containers."""
    e("rm", "-a", "-f", check=True)
    e("rmi", "-a", "-f", check=True)
    e("pull", "-q", ref, check=True)
    for n in range(1, names):
        e("tag", ref, f"mine:v{n}", check=True)
    [data] = json.loads(e("image", "inspect", ref, check=True).stdout)
    for n in range(users):
        e("create", "--name", f"user{n}", "--network", "none", ref, "true", check=True)
    return {
        "id": data["Id"].removeprefix("sha256:"),
        "ref": ref,
        "digest_ref": ref.rsplit(":", 1)[0] + "@" + data["Digest"],
    }


def _norm(text: str, image_id: str) -> str:
    return HEX64.sub("CID", text.replace(image_id, "IMAGEID"))


# (names, users, rmi args with {ref} {id} {id12} {digest_ref}) -> what both engines do
CASES = {
    "in use, one name, by name": (1, 1, ["{ref}"]),
    "in use, one name, by short id": (1, 1, ["{id12}"]),
    "in use, one name, by full id": (1, 1, ["{id}"]),
    "in use, one name, by sha256:id": (1, 1, ["sha256:{id}"]),
    "in use, one name, by digest": (1, 2, ["{digest_ref}"]),
    "in use, two names, by name (untag only)": (2, 1, ["mine:v1"]),
    "in use, two names, -f by name (untag only)": (2, 1, ["-f", "mine:v1"]),
    "two names, by id": (2, 0, ["{id12}"]),
    "two names, by id, in use": (2, 1, ["{id}"]),
    "two names, -f by id": (3, 0, ["-f", "{id12}"]),
    "two names, by digest": (2, 0, ["{digest_ref}"]),
    "one name, by digest": (1, 0, ["{digest_ref}"]),
    "one name, by name": (1, 0, ["{ref}"]),
    "-f, in use, one name": (1, 2, ["-f", "{ref}"]),
    "-f, in use, by id": (2, 1, ["-f", "{id12}"]),
    "missing": (1, 0, ["nosuch:img"]),
    "missing then existing": (2, 0, ["nosuch", "mine:v1"]),
    "existing then missing": (1, 0, ["{ref}", "nosuch"]),
    "missing, -i": (1, 0, ["-i", "nosuch"]),
    "missing, -f": (1, 0, ["-f", "nosuch"]),
    "-a, in use": (1, 1, ["-a"]),
    "-a -f, in use": (2, 1, ["-a", "-f"]),
    "-a with a name": (1, 0, ["-a", "{ref}"]),
    "no image": (1, 0, []),
    "malformed reference": (1, 0, ["UPPER:bad"]),
}


def _run_case(e, ref, names, users, args):
    ids = _reset(e, ref, names, users)
    argv = [a.format(id12=ids["id"][:12], **ids) for a in args]
    cp = e("rmi", *argv)
    after = e("images", "--format", "{{.Repository}}:{{.Tag}}", check=True).stdout.split()
    ps = e("ps", "-a", "--format", "{{.Names}}", check=True).stdout.split()
    return {
        "rc": cp.returncode,
        "stdout": _norm(cp.stdout, ids["id"]).splitlines(),
        "errors": [_norm(x, ids["id"]) for x in cp.stderr.splitlines() if x.startswith("Error:")],
        "images": sorted(after),
        "containers": sorted(ps),
    }


@pytest.mark.parametrize("case", list(CASES))
def test_rmi_as_podman(engines, busybox_ref, case):
    names, users, args = CASES[case]
    got = {name: _run_case(e, busybox_ref, names, users, args) for name, e in engines.items()}
    rl, pm = got["rootless"], got["podman"]
    assert rl["rc"] == pm["rc"], got
    assert rl["stdout"] == pm["stdout"], got
    assert rl["images"] == pm["images"], got
    assert rl["containers"] == pm["containers"], got
    assert len(rl["errors"]) == (rl["rc"] != 0), got  # one Error: line per failure
    if pm["errors"] and "errors occurred" not in pm["errors"][0]:
        if any(x in case for x in ("in use", "by id", "by digest", "-a")):
            assert rl["errors"] == pm["errors"], got  # podman's wording
        else:
            assert rl["errors"][0].startswith("Error: "), got


def test_rmi_reports_every_error_with_podmans_exit_code(engines, busybox_ref):
    """Several failing images: one Error: line each, and podman's code (in use wins over unknown)."""
    for args, code in ((["{ref}", "nosuch"], 2), (["nosuch", "nosuch2"], 1)):
        for name, e in engines.items():
            ids = _reset(e, busybox_ref, 1, 1)
            cp = e("rmi", *[a.format(**ids) for a in args])
            assert cp.returncode == code, (name, cp)
            text = _norm(cp.stderr, ids["id"])
            assert "nosuch: image not known" in text
            if code == 2:
                assert IN_USE.removeprefix("Error: ") in text
            if name == "rootless":
                assert len(text.splitlines()) == 2 and text.count("Error: ") == 2, text


def test_rmi_all_on_an_empty_store_and_rm_force_of_a_missing_container(engines):
    for name, e in engines.items():
        e("rm", "-a", "-f", check=True)
        e("rmi", "-a", "-f", check=True)
        for argv in (["rmi", "-a"], ["rm", "--force", "nosuch"], ["rm", "-f", "a", "b"]):
            cp = e(*argv)
            assert (cp.returncode, cp.stdout, cp.stderr) == (0, "", ""), (name, argv, cp)
        cp = e("rm", "nosuch")
        assert cp.returncode == 1 and cp.stderr.startswith("Error: "), (name, cp)


def test_rmi_force_removes_a_running_container_before_its_layers(rootless, registry, busybox_ref):
    """-f with a running container: the container (and its processes) go first, then the layers;
    a concurrent exec never meets a container without its layers."""
    rootless.trust(registry)
    image_id = rootless("pull", "-q", busybox_ref, check=True).stdout.strip()
    cid = rootless(
        "run", "-d", "--name", "web", "--network", "none", busybox_ref, "sleep", "1000", check=True
    ).stdout.strip()
    [rec] = json.loads(rootless("inspect", "web", check=True).stdout)
    pid = rec["State"]["Pid"]
    assert rootless("exec", "web", "true").returncode == 0
    cp = rootless("rmi", busybox_ref)
    assert cp.returncode == 2 and cp.stdout == "" and cid in cp.stderr
    assert rootless("exec", "web", "test", "-x", "/bin/busybox").returncode == 0  # layers intact
    cp = rootless("rmi", "-f", busybox_ref, check=True)
    assert cp.stdout.splitlines() == [f"Untagged: {busybox_ref}", f"Deleted: {image_id}"]
    assert cid[:12] in cp.stderr and "Error" not in cp.stderr  # says which container went
    assert rootless("ps", "-a", "-q", check=True).stdout == ""
    assert not os.path.exists(f"/proc/{pid}"), "the container's init outlived rmi -f"
    root = os.path.join(rootless.data_dir, "rootless")
    assert os.listdir(os.path.join(root, "layers")) == []
    assert os.listdir(os.path.join(root, "containers")) == []


def test_no_path_deletes_layers_under_a_container(rootless, registry, busybox_ref):
    """The store itself refuses: image prune -a, the library call and the Docker API's forced
    delete all leave a used image's layers in place."""
    rootless.trust(registry)
    rootless("pull", "-q", busybox_ref, check=True)
    rootless("create", "--name", "idle", "--network", "none", busybox_ref, "true", check=True)
    rootless("image", "prune", "-a", "-f", check=True)
    assert rootless("images", "-q", check=True).stdout.strip()
    code = (
        "import sys\n"
        "from rootless.image.store import Store\n"
        "from rootless.errors import ImageInUse\n"
        "s = Store.open(); [r] = s.images()\n"
        "try:\n    s.remove_image(r.id)\nexcept ImageInUse as e:\n    print('refused', e)\n"
    )
    import subprocess
    import sys

    cp = subprocess.run(
        [sys.executable, "-c", code], env=rootless.env, capture_output=True, text=True
    )
    assert cp.stdout.startswith("refused image used by "), cp
    layers = os.listdir(os.path.join(rootless.data_dir, "rootless", "layers"))
    assert len(layers) == 3
    assert rootless("start", "-a", "idle").returncode == 0
