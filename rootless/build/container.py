"""`commit`, `diff` and `export` of containers, and `diff` of images.

commit: the container's upper dir (copied, as root in the user namespace, while its processes are
stopped with --pause) becomes a new layer on its image; the config is the image's with the
container's command, environment and working directory, as podman does, then the --change
instructions; --message and --author are recorded. diff lists the upper dir's changes over the
image (or an image's top layer over the ones below it; or two images or containers against each
other). export writes the container's merged filesystem as a tar.
"""

from __future__ import annotations

import os
from dataclasses import asdict

from rootless.build import cache, changes, commit, instructions, ns, step
from rootless.errors import RootlessError


def _runtime_config(img, rec) -> dict:
    cfg = commit.base_config(img)
    cfg.pop("created", None)
    inner = cfg.setdefault("config", {})
    run = asdict(rec.run) if rec.run is not None else {}
    proc = rec.process._asdict() if rec.process is not None else {}
    env = dict(instructions.env_dict(inner))
    for k, v in (proc.get("env") or {}).items():
        if k != "HOSTNAME":
            env[k] = v
    if env:
        inner["Env"] = [f"{k}={v}" for k, v in env.items()]
    if run.get("command"):
        inner["Cmd"] = list(run["command"])
    if run.get("entrypoint") is not None:
        from rootless.runtime.spec import parse_entrypoint

        inner["Entrypoint"] = parse_entrypoint(run["entrypoint"]) or None
        if not run.get("command"):
            inner.pop("Cmd", None)
    if proc.get("cwd"):
        inner["WorkingDir"] = proc["cwd"]
    if run.get("user"):
        inner["User"] = run["user"]
    return cfg


def _copy_and_clean(rec, lower_dirs: list[str]):
    copy = step.copy_upper(rec)

    def make(tmp: str) -> None:
        copy(tmp)
        step._drop_runtime_mountpoints(os.path.join(tmp, "diff"), lower_dirs, [])

    return make


def commit_container(name: str, image: str | None, *, change: list[str], message: str | None,
                     author: str | None, pause: bool, fmt: str) -> str:  # fmt: skip
    from rootless.image.store import Store

    ins_list = instructions.parse_changes(change)
    rec, img, _upper = step.container_layers(name)
    store = Store.open()
    with store.lock("gc", shared=True):
        with step.paused(rec, pause):
            layer = commit.add_layer_dir(store, _copy_and_clean(rec, img.layer_dirs))
        cfg = _runtime_config(img, rec)
        inner = cfg["config"]
        env = instructions.env_dict(inner)
        for ins in ins_list:
            instructions.apply(ins, inner, env, cfg, {"cmd_set": False})
        base = img.names[0] if img.names else img.id[:12]
        cfg.setdefault("history", []).append(
            {
                "created": commit.now_iso(),
                "created_by": " ".join(rec.command) or "/bin/sh",
                "comment": message or f"FROM {base}",
            }
        )
        if author:
            cfg["author"] = author
        if message and fmt == "docker":
            cfg["comment"] = message
        cfg["created"] = commit.now_iso()
        names = [commit.image_name(image)] if image else []
        new = commit.commit_image(store, cfg, img.layers + [layer], names=names, fmt=fmt)
        cache.set_parent(new.id, img.id)
    return new.id


def _dirs_of(name: str, store) -> list[str]:
    """The merged layer stack of a container (image + upper dir) or an image."""
    from rootless.runtime import state

    try:
        rec, img, upper = step.container_layers(name)
        return img.layer_dirs + [upper]
    except state.NoSuchContainer:
        pass
    img = store.lookup_image(name)
    if img is None:
        raise RootlessError(f"{name}: no such container or image")
    return img.layer_dirs


# what the runtime creates in every container, which podman's diff leaves out (libpod's initInodes)
_RUNTIME_PATHS = frozenset((
    "/dev", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/proc", "/run", "/run/notify",
    "/run/.containerenv", "/run/secrets", "/sys", "/etc/mtab",
))  # fmt: skip


def diff(name: str, other: str | None = None, kind: str = "all") -> list[list[str]]:
    from rootless.image.store import Store
    from rootless.runtime import state

    store = Store.open()
    if other is not None:
        return ns.call(changes.tree_changes, _dirs_of(name, store), _dirs_of(other, store))
    if kind in ("all", "container"):
        try:
            rec, img, upper = step.container_layers(name)
            found = ns.call(changes.layer_changes, upper, img.layer_dirs)
            return [c for c in found if c[1] not in _RUNTIME_PATHS]
        except state.NoSuchContainer:
            if kind == "container":
                raise
    img = store.lookup_image(name)
    if img is None:
        raise RootlessError(f"{name}: no such container or image")
    dirs = img.layer_dirs
    if not dirs:
        return []
    return ns.call(changes.layer_changes, dirs[-1], dirs[:-1])


def export(name: str, fd: int) -> None:
    rec, img, upper = step.container_layers(name)
    ns.call(changes.export_tar, img.layer_dirs + [upper], fd)
