"""Where rootless keeps things: the store, runtime state and configuration (XDG base dirs)."""

import os


def _home() -> str:
    return os.environ.get("HOME") or os.path.expanduser("~")


def data_home() -> str:
    """The store root: $XDG_DATA_HOME/rootless, default ~/.local/share/rootless."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(_home(), ".local", "share")
    return os.path.join(base, "rootless")


def config_home() -> str:
    """$XDG_CONFIG_HOME, default ~/.config (podman's files live in its containers/ subdir)."""
    return os.environ.get("XDG_CONFIG_HOME") or os.path.join(_home(), ".config")


def runtime_dir() -> str:
    """Runtime state: $XDG_RUNTIME_DIR/rootless, else /tmp/rootless-UID (created 0700)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return os.path.join(base, "rootless")
    return f"/tmp/rootless-{os.getuid()}"
