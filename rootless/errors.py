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
