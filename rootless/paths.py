"""Where rootless keeps things: the store, runtime state and configuration (XDG base dirs), and the
flock that guards a kind of record there (`locked`)."""

import contextlib
import os


def _home() -> str:
    return os.environ.get("HOME") or os.path.expanduser("~")


def data_home() -> str:
    """The store root: the global --root ($ROOTLESS_ROOT), else $XDG_DATA_HOME/rootless, default
    ~/.local/share/rootless."""
    if os.environ.get("ROOTLESS_ROOT"):
        return os.environ["ROOTLESS_ROOT"]
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(_home(), ".local", "share")
    return os.path.join(base, "rootless")


def config_home() -> str:
    """$XDG_CONFIG_HOME, default ~/.config (podman's files live in its containers/ subdir)."""
    return os.environ.get("XDG_CONFIG_HOME") or os.path.join(_home(), ".config")


def runtime_dir() -> str:
    """Runtime state: the global --runroot ($ROOTLESS_RUNROOT), else $XDG_RUNTIME_DIR/rootless,
    else /tmp/rootless-UID (created 0700)."""
    if os.environ.get("ROOTLESS_RUNROOT"):
        return os.environ["ROOTLESS_RUNROOT"]
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return os.path.join(base, "rootless")
    return f"/tmp/rootless-{os.getuid()}"


@contextlib.contextmanager
def locked(lock_file: str, *, makedirs: str | None = None):
    """Hold an exclusive flock on `lock_file` (created 0600) for the block: the store-wide locks of
    containers, volumes, pods and networks, each briefly held while its records change."""
    import fcntl

    if makedirs:
        os.makedirs(makedirs, mode=0o700, exist_ok=True)
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:  # a read-only store can still be read under its lock
        if e.errno != 30 or not os.path.exists(lock_file):  # EROFS
            raise
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_text_atomic(path: str, text: str, tmp: str | None = None) -> None:
    """Write a record atomically (a temporary file renamed over it). If the write fails (a full or
    read-only store) the temporary file is removed and the OSError raised: never a half-written
    record or a stray temporary file."""
    tmp = tmp or f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
