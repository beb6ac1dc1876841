"""podman-compose as a real client of rootless: the installed versions, run unchanged.

`Compose(rootless, version, project_dir)` runs that podman-compose (Debian's 1.0.3 in /usr/bin, or
PyPI's 1.6 in its own venv, both installed by scripts/setup-host.sh) in `project_dir` with
`--podman-path` pointing at the `rootless` the `rootless` fixture runs, and that fixture's
environment (its private XDG_DATA_HOME, XDG_CONFIG_HOME and XDG_RUNTIME_DIR, PYTHONPATH). Both
versions take `--podman-path` and resolve it with os.path.realpath, so the binary must be a file:
when the fixture runs `python -m rootless` instead of a console script, a two-line wrapper script
under the fixture's base directory stands in for it. A missing podman-compose fails the test with
the command that installs it; it is never skipped.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest

VERSIONS = {
    "1.0.3": "/usr/bin/podman-compose",
    "1.6": "/opt/rootless/pc16/bin/podman-compose",
}


def podman_path(rootless) -> str:
    """An executable file that runs the fixture's rootless (its console script, or a wrapper)."""
    if len(rootless.argv0) == 1:
        return rootless.argv0[0]
    path = os.path.join(rootless.base, "rootless-cli")
    with open(path, "w") as f:
        f.write(f'#!/bin/sh\nexec {shlex.join(rootless.argv0)} "$@"\n')
    os.chmod(path, 0o755)
    return path


class Compose:
    """One podman-compose version, in one project directory, against one rootless store."""

    def __init__(self, rootless, version: str, project_dir: str):
        self.rootless = rootless
        self.version = version
        self.exe = VERSIONS[version]
        self.project_dir = project_dir
        self.podman = podman_path(rootless)
        if not os.access(self.exe, os.X_OK):
            pytest.fail(
                f"podman-compose {version} is not installed at {self.exe}: run "
                "`sudo scripts/setup-host.sh` (as root), then the tests again",
                pytrace=False,
            )
        out = self._run(
            "--version", timeout=60
        ).stdout  # 1.0.3 says "podman-composer version  1.0.3"
        if not re.search(rf"version +{re.escape(version)}\b", out):
            pytest.fail(f"{self.exe} is not podman-compose {version}: {out!r}", pytrace=False)

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.exe, "--podman-path", self.podman, *args],
            cwd=self.project_dir,
            env=self.rootless.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def __call__(self, *args: str, check: bool = True, timeout: float = 180):
        """Run `podman-compose ARGS`; with check, a non-zero exit fails with both outputs."""
        cp = self._run(*args, timeout=timeout)
        if check and cp.returncode != 0:
            raise AssertionError(
                f"podman-compose {self.version} {' '.join(args)} exited {cp.returncode}\n"
                f"{cp.stdout}\n{cp.stderr}"
            )
        return cp


def write_file(project_dir: str, text: str) -> str:
    """Write `compose.yaml` in project_dir (made if missing); return its path."""
    os.makedirs(project_dir, exist_ok=True)
    path = os.path.join(project_dir, "compose.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path
