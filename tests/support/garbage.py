"""Feeds every verb of the CLI garbage, in one process: `python garbage.py OUT.jsonl`.

Walks the click command tree (`rootless --help`'s verbs and their subcommands), and for each leaf
command runs `rootless.cli.main` (in a forked child) with: an unknown flag, and each option that takes a value given
each GARBAGE value (required arguments filled with a name that exists nowhere). Every run's exit
code and output (file descriptors 1 and 2, so output of forked helpers counts too) is one JSON line
in OUT. A run that takes longer than TIMEOUT seconds is recorded as such (rc None).
Set GARBAGE_IMAGE to a local image for `run` and `create`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile

import click

GARBAGE = ["99999999999999999999", "-1", "\x01:/../=,;%"]  # too big, negative, nonsense
SKIP = {("system", "service")}  # a server: a value it accepts makes it serve
TIMEOUT = 20


class Timeout(BaseException):
    pass


def leaves(cli):
    ctx = click.Context(cli)

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    yield from walk(sub, [*path, name])
        else:
            yield path, cmd

    yield from walk(cli, [])


def cases(cli, image: str | None = None):
    """(argv) for each case. A command registered under several names (`container rm`, `rm`)
    is fed once. `run` gets a real IMAGE (and `--rm --network none` before the flag under test,
    which wins) and two values per flag, so that its own checks run, not the image lookup;
    `create` shares run's flags and checks (one plan.prepare): it gets the unknown flag only."""
    seen = set()
    for path, cmd in leaves(cli):
        if tuple(path) in SKIP or id(cmd) in seen:
            continue
        seen.add(id(cmd))
        args, pre = [], []
        for p in cmd.params:
            if isinstance(p, click.Argument) and p.required:
                args += ["localhost:1/nosuch-garbage"] * (p.nargs if p.nargs > 0 else 1)
        if path[-1] in ("run", "create") and image:
            pre, args = ["--network", "none"], [image, "true"]
            pre += ["--rm"] if path[-1] == "run" else []
        if path[-1] == "stats":
            pre = ["--no-stream"]
        yield [*path, "--no-such-flag", *args]
        values = {"run": GARBAGE[::2], "create": []}.get(path[-1], GARBAGE)
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.is_flag and not p.count and not p.hidden:
                flag = max(p.opts, key=len)
                for g in values:
                    yield [*path, *pre, flag, g, *args]


def run_one(argv: list[str]) -> dict:
    """One case in a forked child (a verb may end its process with os._exit, as `run` does)."""
    from rootless import cli

    with tempfile.TemporaryFile() as out:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(out.fileno(), 2)
                cli.main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # noqa: BLE001 - escaped the CLI boundary: a failure
                code = 250
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
        rc = None
        signal.alarm(TIMEOUT)
        try:
            _, status = os.waitpid(pid, 0)
            rc = os.waitstatus_to_exitcode(status)
        except Timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        finally:
            signal.alarm(0)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return {"argv": argv, "rc": rc, "out": text}


def main(path: str) -> None:
    from rootless import cli

    def alarm(*_):
        raise Timeout()

    signal.signal(signal.SIGALRM, alarm)
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    with open(path, "w") as f:
        for argv in cases(cli.cli, os.environ.get("GARBAGE_IMAGE")):
            res = run_one(argv)
            f.write(json.dumps(res) + "\n")
            f.flush()


if __name__ == "__main__":
    main(sys.argv[1])
