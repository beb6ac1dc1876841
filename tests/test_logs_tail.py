"""`logs --tail N` reads the k8s-file log from its end (rootless.runtime.logs.tail): the same
messages, in the same order, as reading the whole log from the start, for logs the monitor's
LogWriter writes (lines split into P pieces, two streams interleaved, unterminated last lines).
Pure file logic: runs in the root pass."""

from __future__ import annotations

import random

import pytest

from rootless.runtime import logs

pytestmark = pytest.mark.root


def whole_read(path: str, n: int) -> list[tuple[str, str, bytes]]:
    """The last n messages found by reading every entry from the start, in the order of each
    message's last entry."""
    msgs, pending = [], {}
    pos = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            start, pos = pos, pos + len(line)
            ts, stream, full, content = logs.parse_line(line)
            first_ts, acc, _ = pending.pop(stream, (ts, b"", start))
            if full:
                msgs.append((start, first_ts, stream, acc + content + b"\n"))
            else:
                pending[stream] = (first_ts, acc + content, start)
    msgs += [(last, ts, stream, acc) for stream, (ts, acc, last) in pending.items()]
    msgs.sort()
    return [m[1:] for m in msgs[-n:]] if n > 0 else []


def write_log(path: str, rng: random.Random, chunks: int) -> None:
    w = logs.LogWriter(path)
    w_max = logs._MAX_PARTIAL
    for _ in range(chunks):
        kind = rng.random()
        if kind < 0.05:
            data = b"y" * rng.randint(w_max, 3 * w_max)  # a line longer than one entry: P pieces
        elif kind < 0.5:
            data = b"line %d\n" % rng.randint(0, 10**6)
        else:
            data = bytes(rng.choice(b"ab\n") for _ in range(rng.randint(1, 40)))
        w.feed(rng.choice(("stdout", "stderr")), data)
    w.close()  # what is left of each stream's last line: P entries at the end


@pytest.mark.parametrize("seed", range(40))
def test_tail_is_the_end_of_a_whole_read(tmp_path, seed):
    rng = random.Random(seed)
    path = str(tmp_path / "ctr.log")
    write_log(path, rng, rng.randint(0, 300))
    for n in (0, 1, 2, 3, 5, 10, 50, 1000):
        assert logs.tail(path, n) == whole_read(path, n), n


def test_tail_across_read_blocks_and_a_line_being_written(tmp_path):
    path = str(tmp_path / "ctr.log")
    write_log(path, random.Random(7), 3000)
    with open(path, "ab") as f:
        f.write(b"2026-12-02T10:00:00.000000000+00:00 stdout F not yet ended")  # being written
    want = whole_read(path, 700)
    assert logs.tail(path, 700) == want
    assert b"not yet ended" not in b"".join(m[2] for m in want)


def test_tail_of_a_missing_or_empty_log(tmp_path):
    assert logs.tail(str(tmp_path / "none.log"), 5) == []
    (tmp_path / "empty.log").write_bytes(b"")
    assert logs.tail(str(tmp_path / "empty.log"), 5) == []
