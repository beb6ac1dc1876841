"""Errors name the problem, never a Python type (issue #14). Every verb of `rootless --help` (and
every subcommand) is fed an unknown flag and each of its value-taking flags garbage values
(tests/support/garbage.py; `run` with a real image so that its own checks run): each failure is exactly one `Error:` line with one of podman's exit codes, and no output names
an exception class or shows a traceback. The cases the review named are compared with podman 4.3,
and broken inputs (a docker-archive whose manifest has `"Config": 5`, a registry redirect loop)
still give one line. `errors.describe` is the boundary's one line for whatever escapes.
"""

from __future__ import annotations

import errno
import http.server
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading

import pytest
from conftest import Rootless
from support import oci
from support.podman import Podman

from rootless import errors

HERE = os.path.dirname(os.path.abspath(__file__))
PY_TYPE = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Warning)\b|Traceback|\[Errno \d+\]")
CODES = {0, 1, 2, 125, 126, 127}


def no_python(text: str) -> None:
    m = PY_TYPE.search(text)
    assert m is None, f"{m.group(0)!r} in {text!r}"


def one_error(cp, code: int = 125) -> str:
    lines = [x for x in cp.stderr.splitlines() if x.startswith("Error:")]
    assert cp.returncode == code and len(lines) == 1, (cp.returncode, cp.stderr)
    no_python(cp.stdout + cp.stderr)
    return lines[0]


def test_every_verb_fed_garbage(rootless, tmp_path):
    layout = str(tmp_path / "layout")
    oci.add_image(
        layout, "localhost/busybox:latest", oci.busybox_layers(), config=oci.BUSYBOX_CONFIG
    )
    archive = str(tmp_path / "busybox.tar")
    oci.write_oci_archive(layout, archive)
    rootless("load", "-q", "-i", archive, check=True)
    conf = os.path.join(rootless.config_dir, "containers")
    os.makedirs(conf, exist_ok=True)
    with open(os.path.join(conf, "registries.conf"), "w") as f:
        f.write("unqualified-search-registries = []\n")  # nothing reaches the network
    out = str(tmp_path / "cases.jsonl")
    env = {**rootless.env, "GARBAGE_IMAGE": "localhost/busybox:latest"}
    cp = subprocess.run([sys.executable, os.path.join(HERE, "support", "garbage.py"), out],
                        env=env, cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                        capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert cp.returncode == 0, cp.stderr[-2000:]
    with open(out) as f:
        results = [json.loads(line) for line in f]
    verbs = {w for r in results for w in r["argv"][:2]}
    assert {"run", "create", "pull", "rm", "volume", "pod", "network", "kube", "unshare"} <= verbs
    assert len(results) > 400
    bad = []
    for r in results:
        text, rc = r["out"], r["rc"]
        errs = [x for x in text.splitlines() if x.startswith("Error:")]
        if rc is None:
            bad.append((r["argv"], "did not finish"))
        elif PY_TYPE.search(text):
            bad.append((r["argv"], PY_TYPE.search(text).group(0), text[-300:]))
        elif rc not in CODES:
            bad.append((r["argv"], f"exit {rc}", text[-300:]))
        elif rc != 0 and len(errs) != 1:
            bad.append((r["argv"], f"{len(errs)} Error: lines", text[-300:]))
        elif "--no-such-flag" in r["argv"] and rc != 125:
            bad.append((r["argv"], f"unknown flag: exit {rc}"))
    assert not bad, "\n".join(map(repr, bad[:20]))


@pytest.fixture(scope="module")
def engines(tmp_path_factory, registry, busybox_ref):
    rl = Rootless(str(tmp_path_factory.mktemp("err-rootless")))
    pm = Podman(str(tmp_path_factory.mktemp("err-podman")))
    try:
        for e in (rl, pm):
            e.trust(registry)
            e("pull", "-q", busybox_ref, check=True)
        yield {"rootless": rl, "podman": pm}
    finally:
        pm.cleanup()
        rl.cleanup()


RUN_CASES = {  # what the review found; podman's exit code and (part of) its message
    "uid overflow": (["--user", "99999999999"], 126, "uids and gids must be in range 0-2147483647"),
    "missing bind source": (["-v", "/nonexistent/dir:/x"], 125, "statfs /nonexistent/dir: no such file or directory"),
    "negative memory": (["--memory", "-1"], 125, "invalid value for memory: invalid size: '-1'"),
    "unknown user, default network": (["--user", "nonexistent"], 126, "unable to find user nonexistent: no matching entries in passwd file"),
    "NUL in --env-file": (["--env-file", "{envfile}"], 126, "environment variable value can't contain null"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_run_refuses_as_podman(engines, busybox_ref, tmp_path, case):
    args, code, message = RUN_CASES[case]
    envfile = tmp_path / "env"
    envfile.write_bytes(b"A=1\x00B\n")
    args = [a.format(envfile=envfile) for a in args]
    for name, e in engines.items():
        for _ in range(2 if name == "rootless" else 1):  # the container's error wins every time
            cp = e("run", "--rm", *args, busybox_ref, "true")
            if name == "podman":
                assert cp.returncode == code and message in cp.stderr, cp
            else:
                assert message in one_error(cp, code), cp.stderr


def test_login_without_a_terminal(rootless):
    for args, what in ((["--username", "u"], "password"), (["--password", "p"], "username")):
        cp = rootless("login", *args, "localhost:1", input="")
        assert f"getting username and password: reading {what}" in one_error(cp)


def test_docker_archive_with_a_bad_manifest(rootless, tmp_path):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as t:
        for manifest in ([{"Config": 5, "RepoTags": ["x:y"], "Layers": []}],):
            data = json.dumps(manifest).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    one_error(rootless("load", "-i", str(path)))


class _Loop(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(302)
        self.send_header("Location", self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *a):
        pass


def test_registry_redirect_loop(rootless):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Loop)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{srv.server_address[1]}"
        conf = os.path.join(rootless.config_dir, "containers")
        os.makedirs(conf, exist_ok=True)
        with open(os.path.join(conf, "registries.conf"), "w") as f:
            f.write(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n')
        line = one_error(rootless("pull", f"{host}/loop:1", timeout=120))
        assert host in line or "redirect" in line.lower()
    finally:
        srv.shutdown()


def test_describe_is_one_line_without_a_type_name(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    store = os.path.join(str(tmp_path), "rootless")
    cases = [
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(store, "x")),
        OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(store, "x")),
        OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)),
        PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/etc/shadow"),
        FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/a", "/b"),
        OverflowError("Python int too large to convert to C int"),
        ValueError("embedded null byte"),
        TypeError("'int' object is not subscriptable"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        KeyError("Config"),
        RecursionError(),
        Exception("boom\nsecond line"),
    ]
    for exc in cases:
        line = errors.describe(exc)
        assert line and "\n" not in line, (exc, line)
        no_python(line)
    assert errors.describe(cases[0]).startswith(f"the store at {store} is full")
    assert errors.describe(cases[1]).startswith(f"the store at {store} is read-only")
    assert errors.describe(cases[3]) == "/etc/shadow: Permission denied"
