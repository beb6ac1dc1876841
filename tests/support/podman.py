"""Podman beside rootless: a rootless `podman` with its own config, storage and runtime dirs.

Tests that compare what a container sees under rootless and under podman use `Podman` (the `podman`
fixture in conftest.py) the way they use `Rootless`: `podman("run", "--rm", ref, "id")` returns a
`subprocess.CompletedProcess`. Everything podman writes lives under the fixture's base directory:

- config (HOME/.config/containers, also XDG_CONFIG_HOME): containers.conf selects runc (crun refuses hybrid-cgroup
  hosts), cgroupfs and file events/logs (no systemd user session is assumed), storage.conf puts the
  store and its runroot under the base directory, policy.json accepts unsigned images, and
  `trust(registry)` writes a registries.conf that reaches the loopback test registries over HTTP;
- the system files podman always reads stay in effect (/usr/share/containers/containers.conf and
  seccomp.json): that is the podman a user has.

Podman 4.3's foreground `run` now and then waits 20 s after its container has exited, polling its
database for a state nobody writes (`Exceeded conmon timeout` in its debug log; seen on most runs of
a fast-exiting command inside the suite, rarely alone). `__call__` runs a foreground `run` with a
--cidfile and watches conmon's exit file: once it has been there for 2 s and podman still waits,
podman has printed all the container's output (it waits only after the attach stream ends), so the
call ends it and answers with the exit file's code, then removes the container if --rm asked.

`cleanup()` removes every container, the store (its files belong to subordinate ids: removed from
inside podman's user namespace), stops podman's pause process (it keeps that namespace alive) and
deletes the base directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

CONTAINERS_CONF = """\
[containers]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

POLICY = '{"default": [{"type": "insecureAcceptAnything"}]}\n'


class Podman:
    """Runs rootless podman as the current (unprivileged) user with an isolated configuration."""

    def __init__(self, base: str, driver: str = "overlay"):
        self.base = base
        self.config_dir = os.path.join(base, ".config")  # also HOME/.config: see env below
        self.data_dir = os.path.join(base, "data")
        self.runtime_dir = os.path.join(base, "run")
        self.graphroot = os.path.join(self.data_dir, "storage")
        self.runroot = os.path.join(self.runtime_dir, "storage")
        conf = os.path.join(self.config_dir, "containers")
        for d in (self.data_dir, self.runtime_dir, conf):
            os.makedirs(d, mode=0o700, exist_ok=True)
        os.chmod(self.runtime_dir, 0o700)  # podman insists on a private XDG_RUNTIME_DIR
        storage = [
            "[storage]",
            f'driver = "{driver}"',
            f'graphroot = "{self.graphroot}"',
            f'runroot = "{self.runroot}"',
        ]
        if driver == "overlay":  # kernel overlayfs in the user namespace, as podman defaults to
            storage += ["", "[storage.options.overlay]", 'mountopt = "nodev"']
        files = {
            "containers.conf": CONTAINERS_CONF,
            "storage.conf": "\n".join(storage) + "\n",
            "policy.json": POLICY,
            "registries.conf": "",
        }
        for name, text in files.items():
            with open(os.path.join(conf, name), "w") as f:
                f.write(text)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("XDG_", "CONTAINERS_", "REGISTRY_AUTH_FILE", "PODMAN_"))
        }
        # HOME too: containers/image finds registries.conf and policy.json under ~/.config
        env.update(
            HOME=base,
            XDG_CONFIG_HOME=self.config_dir,
            XDG_DATA_HOME=self.data_dir,
            XDG_RUNTIME_DIR=self.runtime_dir,
            LANG="C.UTF-8",
        )
        self.env = env

    def trust(self, *registries, search: bool = True) -> str:
        """Write registries.conf: these loopback registries (objects with .host) over plain HTTP."""
        lines = []
        if search:
            hosts = ", ".join(f'"{r.host}"' for r in registries)
            lines.append(f"unqualified-search-registries = [{hosts}]")
        for r in registries:
            lines += ["", "[[registry]]", f'location = "{r.host}"', "insecure = true"]
        path = os.path.join(self.config_dir, "containers", "registries.conf")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def __call__(
        self,
        *args: str,
        check: bool = False,
        input: str | bytes | None = None,
        timeout: float = 120,
        text: bool = True,
        env: dict | None = None,
    ) -> subprocess.CompletedProcess:
        if isinstance(input, bytes):
            text = False
        cidfile = None
        if args[:1] == ("run",) and not {"-d", "--detach", "--cidfile"} & set(args):
            cidfile = os.path.join(self.runtime_dir, f"run-{os.getpid()}-{time.monotonic_ns()}")
            args = ("run", "--cidfile", cidfile, *args[1:])
        cp = self._run(args, input, text, timeout, env, cidfile)
        if cidfile is not None:
            cp.args = ["podman", "run", *args[3:]]  # the command as the test wrote it
        if check and cp.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {cp.returncode}\n{cp.stdout}\n{cp.stderr}"
            )
        return cp

    def _run(self, args, input, text, timeout, env, cidfile=None) -> subprocess.CompletedProcess:
        proc = subprocess.Popen(
            ["podman", *args],
            stdin=subprocess.PIPE if input is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=text,
            env={**self.env, **(env or {})},
        )
        deadline = time.monotonic() + timeout
        exited_at = code = None
        killed = False
        try:
            while True:
                try:
                    out, err = proc.communicate(input, timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    input = None  # communicate() has sent it
                    if time.monotonic() > deadline:
                        proc.kill()
                        proc.communicate()
                        raise
                    code = self._exit_code(cidfile) if cidfile else None
                    if code is None:
                        continue
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > 2:
                        proc.kill()
                        killed = True
                        out, err = proc.communicate()
                        break
        finally:
            if cidfile is not None and os.path.exists(cidfile):
                with open(cidfile) as f:
                    cid = f.read().strip()
                os.unlink(cidfile)
                if killed and "--rm" in args:
                    self._run(("rm", "-f", "-v", "-t", "0", cid), None, True, 120, env)
        rc = code % 256 if killed else proc.returncode  # podman exits with the code mod 256
        return subprocess.CompletedProcess(proc.args, rc, out, err)

    def _exit_code(self, cidfile: str) -> int | None:
        """The code conmon wrote for the container of this cidfile, once it has exited."""
        try:
            with open(cidfile) as f:
                cid = f.read().strip()
            with open(os.path.join(self.runtime_dir, "libpod", "tmp", "exits", cid)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def pause_pid(self) -> int | None:
        """podman's pause process (it holds the user namespace), if it runs."""
        try:
            with open(os.path.join(self.runtime_dir, "libpod", "tmp", "pause.pid")) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            # podman's own process, or `catatonit -P` where catatonit is installed (podman then
            # runs it as its pause process)
            return pid if b"podman" in cmd or cmd.startswith(b"catatonit\0") else None
        except (OSError, ValueError):
            return None

    def cleanup(self) -> None:
        """Remove every container and the store, stop the pause process, delete the base dir."""
        if os.path.isdir(self.graphroot):
            self("rm", "-af", "-t", "0", timeout=120)
            # the store's files belong to subordinate ids: delete them inside the user namespace
            self("unshare", "rm", "-rf", self.graphroot, self.runroot, timeout=120)
        pid = self.pause_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
                time.sleep(0.02)
        shutil.rmtree(self.base, ignore_errors=True)
