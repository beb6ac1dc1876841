"""A misbehaving registry cannot hang or exhaust rootless (issue #14).

Each test puts support.proxy.FaultProxy in front of the real session registry and makes one
thing go wrong: a blob that stalls mid-transfer or before its headers, a body that trickles too
slowly, redirect loops, a manifest of 30 MB (with and without Content-Length), a manifest listing
10,000 layers, a config of 30 MB (declared, or hidden behind a small declared size), a registry
that answers 503 forever. The inactivity timeout is 2 s here (ROOTLESS_REGISTRY_TIMEOUT), so a
stall fails in seconds; the subprocess timeout only catches a hang. Every failure is one `Error:`
line naming the registry (and the blob or manifest), exit 125, and leaves no image and no tmp
entry. A transfer that is slow but steady must succeed, and Ctrl-C mid-pull leaves the store
clean.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time

import pytest
from support.proxy import FaultProxy, Reply

TIMEOUT = {"ROOTLESS_REGISTRY_TIMEOUT": "2"}
PYTHON_NAMES = re.compile(
    r"Traceback|\b\w+(Error|Exception)\b|TooManyRedirects|httpx|h11|trio\b|internal error"
)


def store_dir(rootless) -> str:
    return os.path.join(rootless.data_dir, "rootless")


def listing(rootless, sub: str) -> list[str]:
    try:
        return sorted(os.listdir(os.path.join(store_dir(rootless), sub)))
    except FileNotFoundError:
        return []


def manifest_of(layout: str, ref: str = "latest") -> tuple[dict, bytes]:
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    desc = next(
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == ref
    )
    with open(os.path.join(layout, "blobs", *desc["digest"].split(":")), "rb") as f:
        body = f.read()
    return json.loads(body), body


def big_layer(layout: str) -> str:
    doc, _ = manifest_of(layout)
    return max(doc["layers"], key=lambda x: x["size"])["digest"]


def one_error(cp, *fragments: str) -> str:
    """The single `Error:` line of a failed command, checked."""
    assert cp.returncode == 125, (cp.returncode, cp.stderr)
    errors = [x for x in cp.stderr.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1, cp.stderr
    assert not PYTHON_NAMES.search(errors[0]), errors[0]
    assert "Traceback" not in cp.stderr
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


def assert_clean(rootless) -> None:
    assert listing(rootless, "images") == []
    assert listing(rootless, "tmp") == []


@pytest.fixture
def fault(registry, busybox_ref):
    with FaultProxy(registry.url) as p:
        yield p


def pull(rootless, proxy, *args, env=None, timeout=60):
    return rootless(
        "pull",
        "--tls-verify=false",
        *args,
        f"{proxy.host}/busybox:latest",
        env={**TIMEOUT, **(env or {})},
        timeout=timeout,
    )


def test_blob_stalled_mid_transfer_fails_naming_registry_and_blob(rootless, fault, busybox_layout):
    big = big_layer(busybox_layout)
    fault.stall_after[big] = 100_000
    err = one_error(pull(rootless, fault), fault.host, big, "stalled")
    assert "ROOTLESS_REGISTRY_TIMEOUT" in err
    assert_clean(rootless)
    assert big.split(":")[1] not in listing(rootless, "blobs/sha256")


def test_blob_stalled_before_headers_fails(rootless, fault, busybox_layout):
    big = big_layer(busybox_layout)
    fault.stall.add(big)
    one_error(pull(rootless, fault), fault.host, big, "stalled")
    assert_clean(rootless)


def test_manifest_stalled_before_headers_fails(rootless, fault):
    fault.stall.add("/manifests/")
    one_error(pull(rootless, fault), fault.host, "manifest", "stalled")
    assert_clean(rootless)


def test_body_trickling_below_the_low_speed_limit_fails(rootless, fault, busybox_layout):
    big = big_layer(busybox_layout)
    fault.drip[big] = (100, 0.5)  # 200 bytes per second: alive, but under 1 KiB per 2 s
    one_error(pull(rootless, fault), fault.host, big, "less than 1 KiB")
    assert_clean(rootless)


def test_slow_but_steady_transfer_does_not_time_out(rootless, fault, busybox_layout):
    big = big_layer(busybox_layout)
    fault.drip[big] = (256 << 10, 1.5)  # each pause under the 2 s timeout; the whole takes longer
    cp = pull(rootless, fault)
    assert cp.returncode == 0, cp.stderr
    assert len(listing(rootless, "images")) == 1
    # an answer whose headers come late, but within the timeout, is fine too
    rootless("rmi", "-a", check=True)
    fault.drip.clear()
    fault.stall_after.clear()
    _, body = manifest_of(busybox_layout)
    fault.replies["/manifests/latest"] = Reply(
        200,
        body,
        {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        delay=1.0,
    )
    cp = pull(rootless, fault)
    assert cp.returncode == 0, cp.stderr


@pytest.mark.parametrize("where", ["ping", "manifest", "blob"])
def test_redirect_loops_are_cut(rootless, fault, busybox_layout, where):
    fault.redirect_loop.add(
        {"ping": "=/v2/", "manifest": "/manifests/", "blob": big_layer(busybox_layout)}[where]
    )
    err = one_error(pull(rootless, fault), fault.host, "redirect")
    assert "TooMany" not in err
    assert_clean(rootless)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_30_mb_manifest_is_refused(rootless, fault, chunked):
    fault.replies["/manifests/latest"] = Reply(
        200,
        30 << 20,
        {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        chunked=chunked,
    )
    one_error(pull(rootless, fault), fault.host, "manifest", "4 MiB")
    assert_clean(rootless)


def crafted(fault, manifest: dict, blobs: dict[str, bytes] = ()) -> None:
    """Serve `manifest` for busybox:latest, and these blobs by digest."""
    fault.replies["/manifests/latest"] = Reply(
        200, json.dumps(manifest).encode(), {"Content-Type": manifest["mediaType"]}
    )
    for digest, body in dict(blobs).items():
        fault.replies[f"/blobs/{digest}"] = Reply(200, body)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_10000_layers_are_refused_at_once(rootless, fault, busybox_layout):
    doc, _ = manifest_of(busybox_layout)
    layers = [
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": sha(str(i).encode()),
            "size": 32,
        }
        for i in range(10_000)
    ]
    crafted(fault, dict(doc, layers=layers))
    err = one_error(pull(rootless, fault), "10000 layers", "500")
    assert "refusing" in err
    assert not [p for m, p, _ in fault.log if "/blobs/" in p]  # nothing was downloaded
    assert_clean(rootless)


def test_huge_config_is_refused(rootless, fault, busybox_layout):
    doc, _ = manifest_of(busybox_layout)
    big = b"{" + b" " * (30 << 20) + b"}"
    # declared as 30 MB: refused before it is fetched
    crafted(fault, dict(doc, config=dict(doc["config"], digest=sha(big), size=len(big))))
    one_error(pull(rootless, fault), "config", "4 MiB")
    assert not [p for m, p, _ in fault.log if sha(big) in p]
    # declared small, sent big (with and without Content-Length): cut at the declared size
    for chunked in (False, True):
        fault.replies.clear()
        crafted(fault, dict(doc, config=dict(doc["config"], digest=sha(big), size=700)))
        fault.replies[f"/blobs/{sha(big)}"] = Reply(200, big, chunked=chunked)
        one_error(pull(rootless, fault), fault.host, sha(big), "the 700")
    assert_clean(rootless)


def test_a_healthy_plain_http_registry_needs_no_retry(rootless, fault):
    # the ping finds plain HTTP first; no request may go out over HTTPS and need a retry
    cp = pull(rootless, fault, "--retry", "0")
    assert cp.returncode == 0, cp.stderr


def test_retries_are_bounded(rootless, fault, busybox_layout):
    big = big_layer(busybox_layout)
    fault.replies[big] = Reply(503)
    cp = pull(rootless, fault, "--retry", "2", "--retry-delay", "100ms")
    one_error(cp, fault.host, big, "3 attempts")
    assert len([p for m, p, _ in fault.log if big in p and m == "GET"]) == 3
    # --retry 0: one attempt only
    fault.log.clear()
    one_error(pull(rootless, fault, "--retry", "0"), big)
    assert len([p for m, p, _ in fault.log if big in p and m == "GET"]) == 1
    # containers.conf [engine] retry is read when no flag is given
    conf = os.path.join(rootless.config_dir, "containers", "containers.conf")
    os.makedirs(os.path.dirname(conf), exist_ok=True)
    with open(conf, "w") as f:
        f.write('[engine]\nretry = 1\nretry_delay = "100ms"\n')
    fault.log.clear()
    one_error(pull(rootless, fault), big, "2 attempts")
    assert_clean(rootless)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--retry", "-1"], "--retry"),
        (["--retry", "many"], "--retry"),
        (["--retry-delay", "soon"], "--retry-delay"),
        (["--tls-verify", "perhaps"], "--tls-verify"),
        (["--creds", ":pw"], "--creds"),
        (["--authfile", "/nonexistent/auth.json"], "--authfile"),
    ],
)
def test_bad_registry_flags_are_one_error(rootless, fault, args, fragment):
    cp = rootless("pull", *args, f"{fault.host}/busybox:latest")
    one_error(cp, fragment)
    assert cp.stderr.count("\n") == 1  # nothing but the error line


def test_bad_timeout_setting_is_one_error(rootless, fault):
    cp = pull(rootless, fault, env={"ROOTLESS_REGISTRY_TIMEOUT": "forever"})
    one_error(cp, "ROOTLESS_REGISTRY_TIMEOUT")


def group_processes(pgid: int) -> list[int]:
    """Live processes of a process group."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":  # init reaps zombies in its own time
                out.append(int(name))
    return out


def test_ctrl_c_mid_pull_leaves_the_store_clean(rootless, fault, busybox_layout):
    big = big_layer(busybox_layout)
    fault.stall_after[big] = 300_000
    p = subprocess.Popen(
        [*rootless.argv0, "pull", "--tls-verify=false", f"{fault.host}/busybox:latest"],
        env={**rootless.env, "ROOTLESS_REGISTRY_TIMEOUT": "60"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # wait until the big blob is part-way in (a tmp entry holds it) and the rest is done
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            [n for n in listing(rootless, "tmp") if not n.endswith(".lock")]
            and len(listing(rootless, "layers")) >= 2
        ):
            time.sleep(0.05)
        assert p.poll() is None, p.communicate()
        time.sleep(0.3)
        os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 130, err  # 128 + SIGINT, as podman and a shell report it
    assert "Traceback" not in err and not PYTHON_NAMES.search(err)
    assert_clean(rootless)
    assert big.split(":")[1] not in listing(rootless, "blobs/sha256")
    for name in listing(rootless, "layers"):  # what was finished is complete
        assert os.path.isdir(os.path.join(store_dir(rootless), "layers", name, "diff"))
    assert group_processes(p.pid) == []  # the extraction server went with it
