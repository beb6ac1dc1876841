"""The FUSE boundary: every operation's errors become an errno here (``fuse_op``), never an
exception in pyfuse3's main loop; also the checks of a new name and what this pyfuse3 can do."""

import errno
import functools
import logging

import pyfuse3

from rootless.fuse_overlay.layers import NAME_MAX, WH_PREFIX

log = logging.getLogger("rootless.fuse_overlay")


def _pyfuse3_can_cache_readdir() -> bool:
    """True if this pyfuse3 lets opendir return a FileInfo with cache_readdir (not 3.5 upstream)."""
    try:
        return bool(pyfuse3.FileInfo(fh=0, cache_readdir=True).cache_readdir)
    except (TypeError, AttributeError):
        return False


CACHE_READDIR = _pyfuse3_can_cache_readdir()


def _err(code: int) -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(code)


_warned_fds = False


def _warn_fds() -> None:
    global _warned_fds
    if not _warned_fds:
        _warned_fds = True
        log.warning(
            "out of file descriptors: every directory the kernel holds keeps an fd per layer; "
            "raise the hard RLIMIT_NOFILE (ulimit -Hn) for this user"
        )


def fuse_op(fn):
    """Run a synchronous handler; errors become errno, never an exception in the main loop."""

    @functools.wraps(fn)
    async def wrapper(self, *args):
        try:
            return fn(self, *args)
        except pyfuse3.FUSEError:
            raise
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                _warn_fds()
            raise _err(e.errno or errno.EIO) from None
        except Exception:
            log.exception("%s%r failed", fn.__name__, args[:3])
            raise _err(errno.EIO) from None

    return wrapper


def _check_name(name: bytes) -> None:
    if len(name) > NAME_MAX:
        raise _err(errno.ENAMETOOLONG)
    if name.startswith(WH_PREFIX):
        raise _err(errno.EINVAL)
