"""`python -m rootless.fuse_overlay [-f] -o lowerdir=L1:L2,upperdir=U,workdir=W MOUNTPOINT`.

The fuse-overlayfs command line, so that users and external suites can drive the filesystem
directly. Without -f it forks into the background once the mount is live.
"""

import argparse
import logging
import os
import sys

from rootless.fuse_overlay.mount import OptionError, parse_options, run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rootless.fuse_overlay")
    ap.add_argument("-f", action="store_true", help="stay in the foreground")
    ap.add_argument("-d", "--debug", action="store_true", help="debug logging (implies -f)")
    ap.add_argument("-o", action="append", default=[], metavar="OPTIONS")
    ap.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("mountpoint")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="rootless-overlay: %(levelname)s: %(message)s",
    )
    try:
        cfg = parse_options(args.o, args.mountpoint)
    except OptionError as e:
        if args.ready_fd is not None:
            os.write(args.ready_fd, f"error: {e}\n".encode())
        print(f"rootless-overlay: {e}", file=sys.stderr)
        return 2
    if args.f or args.debug:
        return run(cfg, args.ready_fd)
    return _background(cfg)


def _background(cfg) -> int:
    """fuse-overlayfs without -f: serve from a detached child; return once the mount is live."""
    from rootless import process

    r, w = os.pipe()

    def daemon() -> int:
        os.close(r)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        return run(cfg, w)

    process.fork(daemon, pdeathsig=None)  # not reaped: it outlives us, as fuse-overlayfs's does
    os.close(w)
    with os.fdopen(r, "rb") as f:
        status = f.read().decode().strip()
    if status == "ok":
        return 0
    print(f"rootless-overlay: {status or 'daemon exited before mounting'}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
