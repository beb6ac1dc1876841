"""The error type every layer raises for the user to read, and podman's exit codes.

A RootlessError carries one line of text that says what went wrong and what to do. The CLI boundary
(rootless.cli) prints it as ``Error: <message>`` and exits with ``exit_code``. Anything else that
escapes is a bug: it still becomes one line and exit 125 unless ``--log-level debug`` is given.
"""

EXIT_RUNTIME = 125  # rootless itself failed (podman: 125)
EXIT_CANNOT_INVOKE = 126  # the command was found but could not be executed
EXIT_NOT_FOUND = 127  # the command was not found


class RootlessError(Exception):
    """A failure with a one-line, user-facing message."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class IdMapError(RootlessError):
    """Subordinate id configuration or the newuidmap/newgidmap helpers are unusable."""


class ImageError(RootlessError):
    """An image reference, registry exchange, or stored image is bad."""


class StoreError(RootlessError):
    """The local store is unusable or locked."""


class ContainerError(RootlessError):
    """A container could not be created, started or found."""


class NetworkError(RootlessError):
    """A network mode, published port or network helper is unusable."""


class LayerError(ImageError):
    """A layer that cannot be stored (hostile or broken); the message is one line for the user."""


class BuildError(RootlessError):
    """A Containerfile or a build step that cannot be built (rootless.build)."""


class ImageUnknown(ImageError):
    """An image that is not in the store (podman's rmi: exit 1)."""

    exit_code = 1


class ImageInUse(ImageError):
    """An image a container uses, so it cannot be removed (podman's rmi: exit 2)."""

    exit_code = 2

    def __init__(self, container_id: str):
        super().__init__(
            f"image used by {container_id}: image is in use by a container: "
            "consider listing external containers and force-removing image"
        )


_FULL = {28: "full", 122: "full", 30: "read-only"}  # ENOSPC, EDQUOT, EROFS


def store_error(root: str, exc: OSError) -> StoreError | None:
    """The one-line error for a write that failed because the store's filesystem is full or
    read-only (None for any other OSError)."""
    why = _FULL.get(exc.errno or 0)
    if why is None:
        return None
    return StoreError(
        f"the store at {root} is {why} ({exc.strerror}): free some space (rootless rm, rootless rmi, "
        "rootless image prune) or make it writable, or move the store; then try again"
    )


def describe(exc: BaseException) -> str:
    """One line for the user about any exception, never a Python type name: the CLI boundary's
    last resort (a RootlessError already has its line)."""
    import errno as _errno

    if isinstance(exc, RootlessError):
        return str(exc)
    if isinstance(exc, OSError):
        from rootless import paths

        root = paths.data_home()
        name = exc.filename if isinstance(exc.filename, str) else None
        if exc.errno in _FULL and (name is None or name.startswith(root)):
            return str(store_error(root, exc))
        what = exc.strerror or _errno.errorcode.get(exc.errno or 0, "") or "system error"
        where = f"{name}: " if name else ""
        if isinstance(exc.filename2, str):
            where = f"{name} -> {exc.filename2}: "
        return f"{where}{what}"
    if isinstance(exc, UnicodeError):
        return "text that is not valid UTF-8"
    if isinstance(exc, (OverflowError, ValueError, TypeError)):
        text = str(exc) or "invalid value"
        return f"invalid value: {text}"
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, RecursionError):
        return "input nested too deeply"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"internal error: {text or 'unexpected failure'} (rerun with --log-level debug)"
