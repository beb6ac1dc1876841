"""Image references, registries.conf resolution and auth-file lookup (pure library code)."""

import base64
import json
import os

import pytest

from rootless.errors import ImageError
from rootless.image import auth, reference, registries_conf


@pytest.mark.parametrize(
    "text, domain, path, tag, digest",
    [
        ("alpine", None, "alpine", None, None),
        ("alpine:3.19", None, "alpine", "3.19", None),
        ("library/alpine", None, "library/alpine", None, None),
        ("localhost/foo", "localhost", "foo", None, None),
        ("localhost:5000/foo/bar:v1", "localhost:5000", "foo/bar", "v1", None),
        ("127.0.0.1:5000/busybox", "127.0.0.1:5000", "busybox", None, None),
        ("quay.io/a/b/c:t", "quay.io", "a/b/c", "t", None),
        ("[::1]:5000/x", "[::1]:5000", "x", None, None),
        ("x@sha256:" + "a" * 64, None, "x", None, "sha256:" + "a" * 64),
        ("r.io/x:t@sha256:" + "b" * 64, "r.io", "x", "t", "sha256:" + "b" * 64),
    ],
)
def test_parse(text, domain, path, tag, digest):
    r = reference.parse(text)
    assert (r.domain, r.path, r.tag, r.digest) == (domain, path, tag, digest)
    assert str(r) == text


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("Alpine", "lowercase"),
        ("alpine:", "tag"),
        ("alpine:-x", "tag"),
        ("a//b", "empty path component"),
        ("alpine@sha256:abc", "digest"),
        ("http://quay.io/x", "scheme"),
        ("quay.io:abc/x", "port"),
        ("al pine", "white space"),
        ("a" * 300, "longer"),
    ],
)
def test_parse_errors_are_clear(text, fragment):
    with pytest.raises(ImageError) as e:
        reference.parse(text)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_docker_io_short_names_get_library():
    assert str(reference.parse("alpine").with_domain("docker.io")) == "docker.io/library/alpine"
    assert str(reference.parse("me/app").with_domain("docker.io")) == "docker.io/me/app"
    assert str(reference.parse("alpine").with_domain("quay.io")) == "quay.io/alpine"


@pytest.fixture
def confenv(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("ROOTLESS_REGISTRIES_CONF", str(tmp_path / "system.conf"))
    monkeypatch.setenv("ROOTLESS_REGISTRIES_CONF_D", str(tmp_path / "system.d"))
    monkeypatch.delenv("CONTAINERS_REGISTRIES_CONF", raising=False)
    return tmp_path


def test_no_config_searches_docker_io(confenv):
    conf = registries_conf.load()
    [r] = conf.resolve(reference.parse("alpine").defaulted())
    assert str(r) == "docker.io/library/alpine:latest"


def test_search_alias_mirror_blocked(confenv):
    (confenv / "system.conf").write_text(
        'unqualified-search-registries = ["quay.io", "docker.io"]\n'
        "[aliases]\n"
        '"mybox" = "127.0.0.1:5000/busybox"\n'
        "[[registry]]\n"
        'location = "example.com/team"\n'
        "[[registry.mirror]]\n"
        'location = "127.0.0.1:6000/cache/team"\n'
        "insecure = true\n"
        "[[registry]]\n"
        'location = "evil.io"\n'
        "blocked = true\n"
    )
    d = confenv / "system.d"
    d.mkdir()
    (d / "50-extra.conf").write_text('[aliases]\n"other" = "quay.io/o/other"\n')
    conf = registries_conf.load()
    assert [str(r) for r in conf.resolve(reference.parse("app:1"))] == [
        "quay.io/app:1",
        "docker.io/library/app:1",
    ]
    assert [str(r) for r in conf.resolve(reference.parse("mybox"))] == ["127.0.0.1:5000/busybox"]
    assert [str(r) for r in conf.resolve(reference.parse("other:2"))] == ["quay.io/o/other:2"]
    srcs = conf.sources(reference.parse("example.com/team/app:1"))
    assert [(str(s.ref), s.insecure, s.mirror) for s in srcs] == [
        ("127.0.0.1:6000/cache/team/app:1", True, True),
        ("example.com/team/app:1", False, False),
    ]
    with pytest.raises(ImageError, match="blocked"):
        conf.sources(reference.parse("evil.io/x"))


def test_user_file_replaces_system_file(confenv, monkeypatch):
    monkeypatch.delenv("ROOTLESS_REGISTRIES_CONF")
    user = confenv / "cfg" / "containers"
    user.mkdir(parents=True)
    (user / "registries.conf").write_text('unqualified-search-registries = ["registry.example"]\n')
    conf = registries_conf.load()
    assert [str(r) for r in conf.resolve(reference.parse("x"))] == ["registry.example/x"]


def test_bad_toml_is_one_line(confenv):
    (confenv / "system.conf").write_text("this is = = not toml")
    with pytest.raises(ImageError) as e:
        registries_conf.load()
    assert "not valid TOML" in str(e.value)


def test_auth_lookup_order(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    (tmp_path / "run").mkdir()
    docker = tmp_path / "home" / ".docker"
    docker.mkdir(parents=True)
    tok = base64.b64encode(b"dockeruser:pw").decode()
    (docker / "config.json").write_text(
        json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": tok}}})
    )
    assert auth.credentials("docker.io", "library/alpine") == ("dockeruser", "pw")
    path = auth.store("quay.io", "u1", "p1")
    assert path == str(tmp_path / "run" / "containers" / "auth.json")
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    auth.store("quay.io/org", "u2", "p2")
    assert auth.credentials("quay.io", "org/app") == ("u2", "p2")
    assert auth.credentials("quay.io", "other/app") == ("u1", "p1")
    assert auth.remove("quay.io/org")
    assert auth.credentials("quay.io", "org/app") == ("u1", "p1")
