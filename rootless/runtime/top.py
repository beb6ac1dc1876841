"""`top`: the processes in a container's pid namespace, from /proc, with podman's default columns
(USER PID PPID %CPU ELAPSED TTY TIME COMMAND); pids and users as the container sees them."""

import os

from rootless.errors import ContainerError

DEFAULT = ("user", "pid", "ppid", "pcpu", "etime", "tty", "time", "args")
HEADERS = {
    "user": "USER",
    "pid": "PID",
    "ppid": "PPID",
    "pcpu": "%CPU",
    "etime": "ELAPSED",
    "tty": "TTY",
    "time": "TIME",
    "args": "COMMAND",
    "comm": "COMMAND",
    "uid": "UID",
    "huser": "HUSER",
    "hpid": "HPID",
}


def _uid_map(pid: int) -> list[tuple[int, int, int]]:
    with open(f"/proc/{pid}/uid_map") as f:
        return [tuple(map(int, ln.split())) for ln in f if ln.strip()]


def _to_container(uid: int, umap) -> int:
    for inside, outside, count in umap:
        if outside <= uid < outside + count:
            return inside + uid - outside
    return 65534


def _read_in_userns(pid: int, path: str) -> bytes:
    """A file of the container's root. The fuse overlay (allow_other) serves only processes in the
    container's user namespace, so a forked child joins it and reads through /proc/PID/root."""
    from rootless import process
    from rootless import syscalls as sc

    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return b""
    r, w = os.pipe2(os.O_CLOEXEC)

    def reader() -> None:
        os.close(r)
        sc.setns(pidfd, sc.CLONE_NEWUSER)
        with open(f"/proc/{pid}/root{path}", "rb") as f:
            os.write(w, f.read(1 << 20))

    try:
        child = process.fork(reader)
    finally:
        os.close(w)
        os.close(pidfd)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    child.wait()
    return b"".join(chunks)


def _dur(seconds: float) -> str:
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m}m{s}s" if h else f"{m}m{s}s"


def top(rec, descriptors: list[str]) -> list[list[str]]:
    from rootless.runtime import state

    cols = [d for arg in descriptors for d in arg.split(",") if d] or list(DEFAULT)
    for c in cols:
        if c not in HEADERS:
            raise ContainerError(f"unknown descriptor {c!r}: use {', '.join(HEADERS)}")
    init = rec.pid_of("init")
    if rec.state != "running" or not init or not state.alive(*init):
        raise ContainerError(f"container {rec.name} is not running: start it first")
    try:
        ns = os.stat(f"/proc/{init[0]}/ns/pid").st_ino
        umap = _uid_map(init[0])
    except OSError as e:
        raise ContainerError(f"cannot read the container's processes: {e.strerror}") from None
    passwd = {}
    for ln in _read_in_userns(init[0], "/etc/passwd").decode(errors="replace").splitlines():
        parts = ln.split(":")
        if len(parts) > 2 and parts[2].isdigit():
            passwd.setdefault(int(parts[2]), parts[0])
    hz = os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    rows = [[HEADERS[c] for c in cols]]
    procs = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.stat(f"/proc/{d}/ns/pid").st_ino != ns:
                continue
            with open(f"/proc/{d}/status") as f:
                status = dict(ln.split(":", 1) for ln in f.read().splitlines() if ":" in ln)
            with open(f"/proc/{d}/stat", "rb") as f:
                raw = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError):
            continue
        nspid = status.get("NSpid", "").split()
        nsppid = None
        fields = raw[raw.rindex(b")") + 2 :].split()
        comm = raw[raw.index(b"(") + 1 : raw.rindex(b")")].decode(errors="replace")
        hostppid = int(fields[1])
        try:
            with open(f"/proc/{hostppid}/status") as f:
                for ln in f:
                    if ln.startswith("NSpid:"):
                        pp = ln.split()[1:]
                        nsppid = pp[-1] if len(pp) == len(nspid) else "0"
        except OSError:
            nsppid = "0"
        utime, stime, start = int(fields[11]), int(fields[12]), int(fields[19])
        cpu = (utime + stime) / hz
        elapsed = max(uptime - start / hz, 0.001)
        uid = int(status.get("Uid", "0").split()[1])
        cuid = _to_container(uid, umap)
        tty_nr = int(fields[4])
        args = cmdline.replace(b"\0", b" ").decode(errors="replace").strip() or f"[{comm}]"
        values = {
            "user": passwd.get(cuid, str(cuid)),
            "uid": str(cuid),
            "huser": str(uid),
            "pid": nspid[-1] if nspid else d,
            "hpid": d,
            "ppid": nsppid or "0",
            "pcpu": f"{100 * cpu / elapsed:.3f}",
            "etime": _dur(elapsed),
            "tty": f"pts/{tty_nr & 0xFF | ((tty_nr >> 12) & 0xFFF00)}" if tty_nr else "?",
            "time": _dur(cpu),
            "args": args,
            "comm": comm,
        }
        procs.append((int(values["pid"]) if values["pid"].isdigit() else 0, values))
    for _, v in sorted(procs, key=lambda x: x[0]):
        rows.append([v[c] for c in cols])
    return rows
