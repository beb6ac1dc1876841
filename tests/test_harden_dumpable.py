"""The process that enters a container is never a host binary someone inside can open (issue #14,
runc's CVE-2019-5736 pattern): rootless's processes are the user's Python, which may be the user's
own file (pyenv, a copied venv). Between joining the container's pid namespace and exec they are
non-dumpable, so /proc/PID/exe cannot be opened from inside. Proved with a user-owned interpreter
(a `venv --copies`) running `exec` while a static program in the container watches /proc."""

import os
import subprocess
import sys

import pytest
from conftest import Rootless

import rootless

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "support", "harden", "exewatch.c")


@pytest.fixture(scope="module")
def own_python(tmp_path_factory):
    """A python interpreter that is the user's own file, with rootless and its dependencies."""
    d = tmp_path_factory.mktemp("own-python")
    venv = d / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--copies", "--without-pip", str(venv)], check=True
    )
    py = venv / "bin" / "python3"
    assert not py.is_symlink() and py.stat().st_uid == os.getuid()
    site = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    paths = [os.path.dirname(os.path.dirname(rootless.__file__))]
    paths += [p for p in sys.path if p.endswith("-packages")]
    with open(os.path.join(site, "rootless-test.pth"), "w") as f:
        f.write("\n".join(paths) + "\n")
    return str(py)


@pytest.fixture(scope="module")
def r(tmp_path_factory, registry, busybox_ref):
    d = tmp_path_factory.mktemp("exewatch")
    os.chmod(d, 0o755)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(d / "exewatch"), SRC], check=True)
    r = Rootless(str(tmp_path_factory.mktemp("harden-dumpable")))
    r.trust(registry)
    r("pull", busybox_ref, check=True)
    r.img, r.bindir = busybox_ref, str(d)
    yield r
    r("rm", "-a", "-f", "-t", "0")
    r.cleanup()


def test_exec_process_exe_cannot_be_opened_from_inside(r, own_python):
    st = os.stat(own_python)
    r("run", "-d", "--name", "watch", "--network", "none", "-v", f"{r.bindir}:/esc:ro", r.img,
      "/esc/exewatch", str(st.st_ino), str(st.st_size), check=True)  # fmt: skip
    argv = [own_python, "-m", "rootless", "exec"]
    for i in range(25):
        cp = subprocess.run([*argv, *(("-u", "1000") if i % 2 else ()), "watch", "true"],
                            env=r.env, capture_output=True, text=True, timeout=60)  # fmt: skip
        if cp.returncode != 0:  # the watcher got one and exited: its output says how
            break
    r("exec", "watch", "touch", "/tmp/stop")
    r("wait", "watch")
    out = r("logs", "watch").stdout
    print(out)
    assert "EXPOSED" not in out and "SAFE" in out, out
