"""The storage driver choice: flag > ROOTLESS_STORAGE_DRIVER > storage.conf > probed default.

`select_driver(flag)` returns (driver, why). The config file is $XDG_CONFIG_HOME/rootless/storage.conf
(TOML, `driver = "fuse-overlay"`, or podman's `[storage]` table with the same key). The automatic
choice follows podman: kernel overlayfs in the user namespace (`userxattr`) where the kernel allows it,
else fuse-overlay where /dev/fuse opens and pyfuse3 is installed, else vfs. Whether kernel overlay works
is probed once per boot and kernel (a throw-away user+mount namespace) and cached in
<runtime dir>/storage-probe.json, so later runs only read a small file. Light imports only: this is on
the path of every `rootless run`.
"""

import contextlib
import json
import os

from rootless import paths
from rootless.errors import RootlessError

DRIVERS = ("overlay", "fuse-overlay", "vfs")
ENV = "ROOTLESS_STORAGE_DRIVER"


class ConfigError(RootlessError):
    """A storage driver setting is invalid (exit 125)."""


def config_file() -> str:
    return os.path.join(paths.config_home(), "rootless", "storage.conf")


def _check(value: str, where: str) -> str:
    v = value.strip()
    if v not in DRIVERS:
        raise ConfigError(
            f"unknown storage driver {value!r} from {where}: use overlay, fuse-overlay or vfs"
        )
    return v


def _from_file(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    import tomllib

    try:
        doc = tomllib.loads(data.decode("utf-8", errors="replace"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix or remove it") from None
    value = doc.get("driver")
    if value is None and isinstance(doc.get("storage"), dict):
        value = doc["storage"].get("driver")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{path}: driver must be a string: overlay, fuse-overlay or vfs")
    return _check(value, path)


def select_driver(flag: str | None = None) -> tuple[str, str]:
    """The storage driver `rootless run` uses, and why. Raises ConfigError on a bad setting."""
    if flag:
        return _check(flag, "--storage-driver"), "--storage-driver"
    env = os.environ.get(ENV)
    if env:
        return _check(env, ENV), ENV
    path = config_file()
    value = _from_file(path)
    if value:
        return value, path
    return auto_driver()


def auto_driver() -> tuple[str, str]:
    ok, why = kernel_overlay_usable()
    if ok:
        return "overlay", "default: kernel overlayfs works in a user namespace here"
    if fuse_usable():
        return "fuse-overlay", f"default: kernel overlay unusable in a user namespace ({why})"
    return "vfs", f"default: kernel overlay unusable ({why}) and /dev/fuse or pyfuse3 missing"


def fuse_usable() -> bool:
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC))
    except OSError:
        return False
    import importlib.util

    return importlib.util.find_spec("pyfuse3") is not None  # installed? (not imported: ~0.1 s)


# --- the kernel overlay probe, cached per boot + kernel -------------------------------------------------
def _boot_key() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = "?"
    return f"{boot} {os.uname().release}"


def _cache_path() -> str:
    return os.path.join(paths.runtime_dir(), "storage-probe.json")


def kernel_overlay_usable(*, use_cache: bool = True) -> tuple[bool, str]:
    """(usable, why-not) for kernel overlayfs with userxattr in a user namespace; cached per boot."""
    key = _boot_key()
    path = _cache_path()
    if use_cache:
        try:
            with open(path) as f:
                doc = json.load(f)
            if doc.get("key") == key and os.stat(path).st_uid == os.getuid():
                return bool(doc["usable"]), str(doc.get("why", ""))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
    ok, why = probe_kernel_overlay()
    if ok or why.startswith("mount"):  # a definite answer from the kernel: remember it
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            tmp = f"{path}.{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump({"key": key, "usable": ok, "why": why}, f)
            os.replace(tmp, path)
        except OSError:
            pass
    return ok, why


def probe_kernel_overlay() -> tuple[bool, str]:
    """Mount kernel overlayfs with userxattr inside a throw-away user+mount namespace."""
    import shutil
    import tempfile

    from rootless import syscalls, userns

    base = tempfile.mkdtemp(prefix="rootless-ovl-probe-")
    try:
        for d in ("l", "u", "w", "m"):
            os.mkdir(os.path.join(base, d))

        def child() -> int:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)  # a probe is quiet; its answer is the exit code
            syscalls.unshare(syscalls.CLONE_NEWNS)
            syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
            opts = f"lowerdir={base}/l,upperdir={base}/u,workdir={base}/w,userxattr"
            syscalls.mount("overlay", f"{base}/m", "overlay", 0, opts)
            return 0

        try:  # the run itself warns about a one-id mapping, not the probe
            rc = userns.run_in_userns(child, warn=False)
        except Exception as e:  # noqa: BLE001 - a probe reports, it does not fail
            return False, f"user namespace: {e}"
        return (
            rc == 0,
            "" if rc == 0 else "mount -t overlay with userxattr failed in a user namespace",
        )
    finally:
        for dirpath, dirs, _ in os.walk(base):  # overlay's w/work is mode 000: open it up first
            for d in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(dirpath, d), 0o700)
        shutil.rmtree(base, ignore_errors=True)
