"""The container's command: found on the container's PATH and exec'd, with podman's exit codes.

``execve`` runs in the container's init (or an exec'd process) as its last step; a failure is an
ExecError with 127 (not found) or 126 (cannot execute), which reaches the host as one line.
"""

import os
import stat

from rootless.errors import EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND, ContainerError, RootlessError


class ExecError(RootlessError):
    """The command cannot be run: 127 (not found) or 126 (cannot execute), as podman says."""

    def __init__(self, code: int, message: str):
        super().__init__(message, exit_code=code)


def find_executable(cmd: str, env: dict[str, str]) -> str:
    """PATH lookup the way crun does it, in the current (container) root."""
    if "/" in cmd:
        try:
            st = os.stat(cmd)
        except FileNotFoundError:
            raise ExecError(
                EXIT_NOT_FOUND, f"executable file `{cmd}` not found: No such file or directory"
            ) from None
        except OSError as e:
            raise ExecError(EXIT_CANNOT_INVOKE, f"{cmd}: {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise ExecError(
                EXIT_CANNOT_INVOKE, f"open executable: `{cmd}` is a directory: permission denied"
            )
        return cmd
    denied = None
    for d in env.get("PATH", "").split(":"):
        p = os.path.join(d or ".", cmd)
        try:
            st = os.stat(p)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            if os.access(p, os.X_OK):
                return p
            denied = p
    if denied:
        raise ExecError(EXIT_CANNOT_INVOKE, f"open executable `{denied}`: Permission denied")
    raise ExecError(
        EXIT_NOT_FOUND, f"executable file `{cmd}` not found in $PATH: No such file or directory"
    )


def execve(args: list[str], env: dict[str, str]) -> None:
    path = find_executable(args[0], env)
    try:
        os.execve(path, args, env)
    except FileNotFoundError:  # e.g. a script whose interpreter is missing
        raise ExecError(EXIT_NOT_FOUND, f"{path}: No such file or directory") from None
    except OSError as e:
        raise ExecError(EXIT_CANNOT_INVOKE, f"{path}: {e.strerror}") from None


def exec_as(argv: list[str], env: dict[str, str], cwd: str, sec, user) -> None:
    """The last step in the container: the working directory, then the security settings
    (rootless.runtime.security.become, as `user`), then exec."""
    from rootless.runtime import security

    try:
        os.chdir(cwd)
    except OSError as e:
        raise ContainerError(f"cannot chdir to working directory {cwd}: {e.strerror}") from None
    security.become(sec, user)
    execve(argv, env)
