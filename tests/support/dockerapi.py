"""`rootless system service` for the Docker API tests: started with a test store's environment on its
default socket, stopped (or left to its idle exit) at the end, with the check that it left nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import time


class Service:
    def __init__(self, store, idle: int = 0):
        self.store = store
        self.idle = idle
        self.path = os.path.join(store.runtime_dir, "rootless", "rootless.sock")
        self.host = "unix://" + self.path
        self.log = os.path.join(store.base, "service.log")
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict:
        """The test store's environment plus DOCKER_HOST, for the clients."""
        return {**self.store.env, "DOCKER_HOST": self.host}

    def start(self) -> Service:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.store.argv0, "--log-level", "info", "system", "service", "--time",
                 str(self.idle)],
                env=self.store.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not os.path.exists(self.path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the service did not start:\n{self.output()}")
            time.sleep(0.05)
        return self

    def output(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def docker(self, *args: str, input=None, timeout: float = 120, check: bool = True):
        """Debian's docker CLI (/usr/bin/docker, the docker.io package), client only."""
        env = {**self.env, "DOCKER_CONFIG": os.path.join(self.store.base, "docker-config"),
               "HOME": self.store.base}  # fmt: skip
        cp = subprocess.run(["/usr/bin/docker", *args], input=input, capture_output=True,
                            text=True, timeout=timeout, env=env)  # fmt: skip
        if check and cp.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {cp.returncode}\n{cp.stdout}\n"
                                 f"{cp.stderr}\n--- service log ---\n{self.output()[-3000:]}")  # fmt: skip
        return cp
