"""A real registry for the tests: Debian's docker-registry on 127.0.0.1, and a small push client.

`Registry` starts `docker-registry serve` with its own config and storage on a free loopback port,
optionally behind htpasswd (Basic) auth, and stops it. `push` uploads an image from an OCI layout
through the distribution API (monolithic blob uploads, then the manifest), as OCI or converted to
Docker v2 schema 2, so tests control exactly which manifest types the registry serves.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time

import httpx
from support.net import free_port  # noqa: F401 - also imported from here

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])


class Registry:
    def __init__(self, workdir: str, *, htpasswd: tuple[str, str] | None = None):
        self.workdir = workdir
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.auth = htpasswd
        self.proc: subprocess.Popen | None = None

    def start(self) -> Registry:
        os.makedirs(self.workdir, exist_ok=True)
        cfg = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.workdir}/data",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {self.host}",
        ]
        if self.auth:
            user, password = self.auth
            hp = os.path.join(self.workdir, "htpasswd")
            subprocess.run(
                ["htpasswd", "-Bbc", hp, user, password], check=True, capture_output=True
            )
            cfg += ["auth:", "  htpasswd:", "    realm: rootless-test", f"    path: {hp}"]
        path = os.path.join(self.workdir, "config.yml")
        with open(path, "w") as f:
            f.write("\n".join(cfg) + "\n")
        self.log = open(os.path.join(self.workdir, "registry.log"), "wb")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", path], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: see {self.workdir}/registry.log")
            try:
                r = httpx.get(self.url + "/v2/", timeout=1)
                if r.status_code in (200, 401):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not come up within 20 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None

    # --- pushing ---------------------------------------------------------------------------------
    def _client(self) -> httpx.Client:
        headers = {}
        if self.auth:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def put_blob(
        self, repo: str, data: bytes, digest: str, client: httpx.Client | None = None
    ) -> None:
        c = client or self._client()
        if c.head(f"/v2/{repo}/blobs/{digest}").status_code == 200:
            return
        r = c.post(f"/v2/{repo}/blobs/uploads/")
        r.raise_for_status()
        loc = r.headers["Location"]
        sep = "&" if "?" in loc else "?"
        r = c.put(
            f"{loc}{sep}digest={digest}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        r.raise_for_status()

    def put_manifest(
        self, repo: str, ref: str, body: bytes, media_type: str, client: httpx.Client | None = None
    ) -> str:
        c = client or self._client()
        r = c.put(f"/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": media_type})
        r.raise_for_status()
        return r.headers.get("Docker-Content-Digest", "")

    def push(self, layout: str, layout_ref: str, dest: str, *, fmt: str = "oci") -> str:
        """Push `layout_ref` from an OCI layout to `dest` ("repo:tag"); returns the manifest digest."""
        repo, tag = dest.rsplit(":", 1)
        with open(os.path.join(layout, "index.json")) as f:
            index = json.load(f)
        desc = next(
            m
            for m in index["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == layout_ref
        )
        with self._client() as c:
            return self._push_desc(c, layout, desc, repo, tag, fmt)

    def _blob(self, layout: str, digest: str) -> bytes:
        with open(os.path.join(layout, "blobs", *digest.split(":", 1)), "rb") as f:
            return f.read()

    def _push_desc(self, c, layout, desc, repo, tag, fmt) -> str:
        body = self._blob(layout, desc["digest"])
        doc = json.loads(body)
        if desc["mediaType"] == OCI_INDEX:
            children = []
            for m in doc["manifests"]:
                digest = self._push_desc(c, layout, m, repo, None, fmt)
                child = dict(m, digest=digest)
                if fmt == "docker":
                    child["mediaType"] = DOCKER_MANIFEST
                    child["size"] = len(self._converted[digest])
                children.append(child)
            doc["manifests"] = children
            mt = OCI_INDEX
            if fmt == "docker":
                doc["mediaType"] = mt = DOCKER_LIST
            body = json.dumps(doc).encode()
            return self.put_manifest(repo, tag or _sha(body), body, mt, c)
        for d in [doc["config"], *doc["layers"]]:
            self.put_blob(repo, self._blob(layout, d["digest"]), d["digest"], c)
        mt = OCI_MANIFEST
        if fmt == "docker":
            doc["mediaType"] = mt = DOCKER_MANIFEST
            doc["config"]["mediaType"] = DOCKER_CONFIG
            for layer in doc["layers"]:
                layer["mediaType"] = DOCKER_LAYER_GZ
            body = json.dumps(doc, indent=3).encode()
        digest = _sha(body)
        self._converted = getattr(self, "_converted", {})
        self._converted[digest] = body
        self.put_manifest(repo, tag or digest, body, mt, c)
        return digest


def _sha(body: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(body).hexdigest()
