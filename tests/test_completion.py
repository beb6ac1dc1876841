"""`completion`: the bash script is sourced into a real bash and asked what it completes, as a
user's TAB would: verbs, flags, container names and image names of the user's own store."""

import os
import subprocess

import pytest
from conftest import Rootless
from support import stores


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    store = stores.busybox_store(Rootless, tmp_path_factory, registry, busybox_ref, "completion")
    r = next(store)
    for name in ("c-alpha", "c-beta"):
        r("create", "--name", name, "--network", "none", busybox_ref, "true", check=True)
    yield r
    next(store, None)  # its teardown: containers removed, store cleaned


def complete(rl, *words: str) -> list[str]:
    """What bash offers for the last word of `words` (COMP_WORDS as bash would set it)."""
    script = (
        'source <(rootless completion bash) && COMP_WORDS=("$@") && COMP_CWORD=$(($# - 1)) && '
        '_rootless_completion rootless && printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = dict(rl.env)
    env["PATH"] = os.path.dirname(rl.argv0[0]) + os.pathsep + env.get("PATH", "")
    cp = subprocess.run(["bash", "-c", script, "bash", "rootless", *words], env=env,
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    return [w for w in cp.stdout.split("\n") if w]


def test_verbs_and_flags(rl):
    assert complete(rl, "sto") == ["stop"]
    assert complete(rl, "container", "ren") == ["rename"]
    assert complete(rl, "stop", "--ti") == ["--time"]
    assert complete(rl, "completion", "") == ["bash", "zsh", "fish"]


def test_container_names(rl):
    assert sorted(complete(rl, "stop", "c-")) == ["c-alpha", "c-beta"]
    assert complete(rl, "logs", "c-a") == ["c-alpha"]
    assert complete(rl, "container", "rm", "c-b") == ["c-beta"]
    assert complete(rl, "inspect", "c-al") == ["c-alpha"]


def test_image_names(rl):
    ref = rl.img
    assert ref in complete(rl, "run", ref[:5])
    assert ref in complete(rl, "rmi", ref[:5])
    assert complete(rl, "run", "nosuchimage") == []


def test_scripts_and_errors(rl, tmp_path):
    for shell, marker in (("zsh", "compdef"), ("fish", "complete ")):
        path = tmp_path / f"rootless.{shell}"
        rl("completion", shell, "-f", str(path), check=True)
        assert marker in path.read_text()
    for args in ((), ("bash", "zsh"), ("tcsh",)):
        cp = rl("completion", *args)
        assert cp.returncode == 125 and cp.stderr.startswith("Error: "), cp.stderr
        assert cp.stderr.count("\n") == 1
