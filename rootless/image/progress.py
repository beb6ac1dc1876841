"""Pull progress: one bar per blob on a terminal, plain lines otherwise, nothing when quiet.

On a terminal a layer's bar shows its download, then its extraction ("extracting N / TOTAL", the
compressed bytes read), then "done". Plain lines are podman's: one "Copying blob X done" per blob."""

from __future__ import annotations

import sys
import time


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}GiB"


_BUSY = ("retrying", "extracting")  # states of a row that is not final


class Progress:
    def __init__(self, *, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        try:
            self.tty = (not quiet) and self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.rows: list[list] = []  # [label, done, total, state]
        self.index: dict[str, int] = {}
        self.drawn = 0
        self.last = 0.0

    def line(self, text: str) -> None:
        if self.quiet:
            return
        if self.tty and self.rows and all(r[3] and r[3] not in _BUSY for r in self.rows):
            self.frozen = True  # every bar is final: leave them on screen, print below
            self.drawn = 0
        if self.tty:
            self._clear()
            self.stream.write(text + "\n")
            self._draw(force=True)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def add(self, key: str, label: str, total: int | None) -> None:
        self.frozen = False
        self.index[key] = len(self.rows)
        self.rows.append([label, 0, total, ""])
        self._draw(force=True)

    def update(self, key: str, done: int) -> None:
        row = self.rows[self.index[key]]
        if done < 0:  # a retry restarts the blob
            row[1], row[3] = 0, "retrying"
        else:
            row[1] = done
            row[3] = ""
        self._draw()

    def set_total(self, key: str, total: int | None) -> None:
        """The size of a blob once it is known (a blob rewritten before it is sent)."""
        self.rows[self.index[key]][2] = total

    def finish(self, key: str, state: str = "done") -> None:
        row = self.rows[self.index[key]]
        row[3] = state
        if row[2]:
            row[1] = row[2]
        if not self.tty and not self.quiet:
            self.stream.write(f"{row[0]} {state}\n")
            self.stream.flush()
        self._draw(force=True)

    def extracting(self, key: str, done: int, total: int | None) -> None:
        """The layer of blob `key` is being extracted: `done` of its `total` blob bytes read."""
        if not self.tty or key not in self.index:
            return
        row = self.rows[self.index[key]]
        first = row[3] != "extracting"
        row[1], row[2], row[3] = done, total or row[2], "extracting"
        self._draw(force=first)

    def extracted(self, key: str) -> None:
        """The layer of blob `key` is in the store (the terminal bar says done again)."""
        if not self.tty or key not in self.index:
            return
        row = self.rows[self.index[key]]
        if row[3] == "extracting":
            row[3] = "done"
            if row[2]:
                row[1] = row[2]
            self._draw(force=True)

    def close(self) -> None:
        if self.tty:
            self._draw(force=True)
            self.drawn = 0

    # --- drawing ---------------------------------------------------------------------------------
    def _clear(self) -> None:
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    frozen = False

    def _draw(self, force: bool = False) -> None:
        if not self.tty or self.frozen:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        self._clear()
        width = 30
        for label, done, total, state in self.rows:
            if total:
                frac = min(1.0, done / total)
                bar = "=" * int(frac * width)
                bar = (bar + (">" if len(bar) < width else "")).ljust(width)
                amount = f"{_human(done)} / {_human(total)}"
            else:
                bar, amount = " " * width, _human(done)
            tail = f"extracting {amount}" if state == "extracting" else (state or amount)
            self.stream.write(f"{label} [{bar}] {tail}\n")
        self.drawn = len(self.rows)
        self.stream.flush()
