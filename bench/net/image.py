"""Build the network benchmark's image offline: the test busybox image plus one layer holding the
host's iperf3 and the shared libraries it loads (found with ldd), written as an oci-archive that both
`podman load` and `rootless load` read.

usage: python3 bench/net/image.py OUT.tar
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))

from support import oci  # noqa: E402

IPERF3 = "/usr/bin/iperf3"
REF = "iperf3"


def shared_libraries(binary: str) -> list[str]:
    """The absolute paths ldd resolves for ``binary`` (the dynamic loader included)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    return sorted(set(re.findall(r"(/\S+) \(0x", out)))


def iperf3_layer() -> bytes:
    """A layer with iperf3 and its libraries at the paths the loader looks for them, as real files
    (the busybox image has no /lib, so no symlink of the host's merged /usr is assumed)."""
    entries: list[oci.Entry] = []
    dirs: set[str] = set()
    for path in [IPERF3, *shared_libraries(IPERF3)]:
        rel = path.lstrip("/")
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                entries.append(oci.Entry(d, "dir"))
        with open(path, "rb") as f:  # follows symlinks: the library itself under the soname
            entries.append(oci.Entry(rel, "file", f.read(), mode=0o755))
    return oci.make_tar(entries)


def build(out: str) -> str:
    with tempfile.TemporaryDirectory() as layout:
        oci.add_image(
            layout,
            REF,
            [*oci.busybox_layers(), iperf3_layer()],
            config={**oci.BUSYBOX_CONFIG, "ExposedPorts": {"5201/tcp": {}, "80/tcp": {}}},
        )
        oci.write_oci_archive(layout, out)
    return out


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else "iperf3-oci.tar"))
