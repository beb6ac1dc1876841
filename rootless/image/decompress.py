"""Layer decompression: gzip (multi-member), zstd or none, chosen by the stream's magic bytes, and a
pipelined reader that decompresses and hashes in a thread while the caller parses the tar.
"""

from __future__ import annotations

import hashlib
import zlib

from rootless.errors import LayerError

CHUNK = 1 << 20


class GzipStream:
    """gzip (multi-member) decompression with large reads."""

    def __init__(self, f):
        self.f = f
        self.d = zlib.decompressobj(47)
        self.pending = b""
        self.buf = bytearray()
        self.eof = False
        self.started = False

    def read(self, n: int) -> bytes:
        while len(self.buf) < n and not self.eof:
            data = self.d.unconsumed_tail or self.pending or self.f.read(CHUNK)
            self.pending = b""
            if not data:
                if not self.d.eof and self.started:
                    raise LayerError("the layer's gzip stream is truncated")
                self.eof = True
                break
            self.started = True
            self.buf += self.d.decompress(data, max(n, CHUNK))
            if self.d.eof:
                rest = self.d.unused_data
                self.d = zlib.decompressobj(47)
                self.started = False
                if rest.strip(b"\0"):
                    self.pending = rest
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def open_decompressed(f):
    """A reader of f's decompressed bytes (f must offer peek(): a buffered binary file)."""
    head = f.peek(4)[:4] if hasattr(f, "peek") else b""
    if head[:2] == b"\x1f\x8b":
        return GzipStream(f)
    if head == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(
            f, read_size=CHUNK, read_across_frames=True
        )
    return f


class Pipelined:
    """Decompress and hash in a thread (zlib, zstd and sha256 release the GIL) while the caller
    parses the tar: read() hands out the decompressed chunks; `h` and `n` are final after EOF."""

    def __init__(self, raw):
        import queue
        import threading

        self.q: queue.Queue = queue.Queue(maxsize=16)
        self.h = hashlib.sha256()
        self.n = 0
        self.cur = memoryview(b"")
        self.eof = False
        self.stop = False
        self.t = threading.Thread(target=self._run, args=(raw,), daemon=True)
        self.t.start()

    def _run(self, raw) -> None:
        try:
            src = open_decompressed(raw)
            while not self.stop:
                b = src.read(CHUNK)
                if not b:
                    break
                self.h.update(b)
                self.n += len(b)
                self.q.put(b)
            self.q.put(None)
        except BaseException as e:  # noqa: BLE001 - handed to the reading side
            self.q.put(e)

    def read(self, n: int = -1) -> bytes:
        if not self.cur:
            if self.eof:
                return b""
            item = self.q.get()
            if item is None:
                self.eof = True
                return b""
            if isinstance(item, BaseException):
                self.eof = True
                raise item
            self.cur = memoryview(item)
        if n is None or n < 0:
            n = len(self.cur)
        out, self.cur = self.cur[:n], self.cur[n:]
        return out.tobytes()

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def close(self) -> None:
        import queue

        self.stop = True
        while self.t.is_alive():
            try:
                self.q.get(timeout=0.1)
            except queue.Empty:
                pass
        self.t.join()
