"""Registry authentication: Basic (htpasswd) and the Bearer token flow, login and logout."""

from __future__ import annotations

import json
import os

import pytest
from support.registry import Registry
from support.tokenserver import TokenRegistry, TokenServer

USER, PASSWORD = "alice", "s3cret-pw"


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory, busybox_layout):
    reg = Registry(
        str(tmp_path_factory.mktemp("basic-registry")), htpasswd=(USER, PASSWORD)
    ).start()
    reg.push(busybox_layout, "latest", "busybox:latest")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def token_setup(tmp_path_factory, busybox_layout):
    tokens = TokenServer(
        str(tmp_path_factory.mktemp("tokens")), users={USER: PASSWORD}, anonymous=True
    ).start()
    reg = TokenRegistry(str(tmp_path_factory.mktemp("token-registry")), tokens).start()
    reg.push(busybox_layout, "latest", "busybox:latest")
    yield tokens, reg
    reg.stop()
    tokens.stop()


def auth_file(rootless) -> str:
    return os.path.join(rootless.runtime_dir, "containers", "auth.json")


def test_basic_auth_login_pull_logout(rootless, basic_registry):
    rootless.trust(basic_registry)
    ref = f"{basic_registry.host}/busybox:latest"
    cp = rootless("pull", ref)
    assert cp.returncode == 125 and f"rootless login {basic_registry.host}" in cp.stderr
    cp = rootless("login", "-u", USER, "-p", "wrong", basic_registry.host)
    assert cp.returncode == 125 and "wrong" in cp.stderr
    assert not os.path.exists(auth_file(rootless))
    cp = rootless(
        "login",
        "-u",
        USER,
        "--password-stdin",
        basic_registry.host,
        input=PASSWORD + "\n",
        check=True,
    )
    assert "Login Succeeded" in cp.stdout
    with open(auth_file(rootless)) as f:
        assert basic_registry.host in json.load(f)["auths"]
    assert oct(os.stat(auth_file(rootless)).st_mode & 0o777) == "0o600"
    rootless("pull", ref, check=True)
    rootless("logout", basic_registry.host, check=True)
    rootless("rmi", ref, check=True)
    assert rootless("pull", ref).returncode == 125


def test_docker_config_json_credentials(rootless, basic_registry, tmp_path):
    import base64

    rootless.trust(basic_registry)
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    tok = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (home / ".docker" / "config.json").write_text(
        json.dumps({"auths": {basic_registry.host: {"auth": tok}}})
    )
    rootless("pull", f"{basic_registry.host}/busybox:latest", check=True, env={"HOME": str(home)})


def test_bearer_anonymous(rootless, token_setup):
    tokens, reg = token_setup
    rootless.trust(reg)
    before = len(tokens.requests)
    rootless("pull", f"{reg.host}/busybox:latest", check=True)
    reqs = tokens.requests[before:]
    assert reqs and all(r["user"] is None for r in reqs)
    assert reqs[0]["query"]["scope"] == ["repository:busybox:pull"]


def test_bearer_with_credentials(rootless, token_setup):
    tokens, reg = token_setup
    rootless.trust(reg)
    cp = rootless("login", "-u", USER, "-p", "nope", reg.host)
    assert cp.returncode == 125
    rootless("login", "-u", USER, "-p", PASSWORD, reg.host, check=True)
    before = len(tokens.requests)
    rootless("pull", f"{reg.host}/busybox:latest", check=True)
    assert any(r["user"] == USER for r in tokens.requests[before:])
