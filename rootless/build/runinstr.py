"""RUN: the command line, its build args, its --mount options, and running it as a build step.

The command runs in a container of the step's parent image (rootless.build.step, the runtime
adapter), with the stage's SHELL for the shell form, the declared build args in its environment
(not recorded in the image; they appear in the history line as podman writes it: ``|1 V=1 /bin/sh
-c ...``), RUN --network, --mount=type=cache (a directory kept across builds under <data
home>/build/cache-mounts, by id or target), type=bind (from the context, read-only unless rw, then a
throw-away copy; or from=stage/image) and type=tmpfs. Its upper dir becomes the step's layer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field

from rootless import paths
from rootless.build import commit, ns, step
from rootless.build.instructions import DEFAULT_SHELL
from rootless.errors import RootlessError


@dataclass
class RunMount:
    target: str
    volume: str | None = None  # HOST:TARGET[:ro]
    tmpfs: str | None = None
    key: list = field(default_factory=list)
    cleanup: list = field(default_factory=list)  # (store tmp base, lock fd)
    prepare: object = None  # fills volume (and cleanup) when the step runs, not on a cache hit


def _kv(spec: str, ins) -> dict[str, str]:
    out = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        k, eq, v = item.partition("=")
        out[k.strip().lower()] = v.strip() if eq else "true"
    for alias, name in (("dst", "target"), ("destination", "target"), ("src", "source")):
        if alias in out:
            out[name] = out.pop(alias)
    if "target" not in out:
        raise ins.error(f"RUN --mount={spec}: target= is required")
    if not out["target"].startswith("/"):
        raise ins.error(f"RUN --mount={spec}: target must be an absolute path")
    return out


def _true(v: str | None) -> bool:
    return v is not None and v.lower() in ("true", "1", "")


def _cache_mount(kv: dict, b, spec: str) -> RunMount:
    ident = kv.get("id") or kv["target"]
    host = os.path.join(paths.data_home(), "build", "cache-mounts",
                        hashlib.sha256(ident.encode()).hexdigest()[:24])  # fmt: skip
    if not os.path.isdir(host):
        os.makedirs(host, mode=0o755)
        uid, gid = int(kv.get("uid", 0) or 0), int(kv.get("gid", 0) or 0)
        mode = int(kv["mode"], 8) if kv.get("mode") else 0o755
        if (uid, gid, mode) != (0, 0, 0o755):
            ns.call(lambda: (os.chown(host, uid, gid), os.chmod(host, mode)) and None)
    ro = ":ro" if _true(kv.get("ro") or kv.get("readonly")) else ""
    return RunMount(kv["target"], volume=f"{host}:{kv['target']}{ro}", key=["cache", ident])


def _materialize(b, layers: list[str], source: str) -> tuple[str, tuple]:
    """A host copy of `source` in an image's layers (for a bind mount from a stage or image)."""
    from rootless.build.copy import CopyJob, Source, make_copy_layer

    base, fd = b.store.new_tmp()
    job = CopyJob(what="RUN --mount", dest="/", workdir="/", lower=[],
                  sources=[Source(kind="image", rel=source, layers=layers)])  # fmt: skip
    try:
        ns.call(make_copy_layer, base, job)
    except BaseException:
        b.store.release_tmp(base, fd)
        raise
    return os.path.join(base, "diff"), (base, fd)


def _bind_mount(kv: dict, b, st, ins, spec: str) -> RunMount:
    source = kv.get("source", ".")
    rw = _true(kv.get("rw") or kv.get("readwrite"))
    frm = kv.get("from")
    m = RunMount(kv["target"])
    suffix = "" if rw else ":ro"
    if frm:
        idx = b.cf.stage_index(frm)
        rec = b.stage_images[idx] if idx is not None and idx in b.stage_images else None
        rec = rec or b._base_image(frm, ins)
        m.key = ["bind", rec.id, source, rw]

        def prepare_from() -> None:
            host, tmp = _materialize(b, rec.layer_dirs, source)
            m.cleanup.append(tmp)
            m.volume = f"{host}:{kv['target']}{suffix}"

        m.prepare = prepare_from
        return m
    try:
        rels = b.ctx.match(source)
    except RootlessError as e:
        raise ins.error(f"RUN --mount={spec}: {e}") from None
    host = os.path.join(b.ctx.root, rels[0]) if rels[0] else b.ctx.root
    m.key = ["bind", "context", source, b.ctx.digest(rels), rw]

    def prepare_context() -> None:
        src = host
        if rw:  # writes must not reach the user's context: bind a throw-away copy
            base, fd = b.store.new_tmp()
            m.cleanup.append((base, fd))
            src = os.path.join(base, "src")
            if os.path.isdir(host):
                shutil.copytree(host, src, symlinks=True)
            else:
                shutil.copy2(host, src)
        m.volume = f"{src}:{kv['target']}{suffix}"

    m.prepare = prepare_context
    return m


def parse_mount(spec: str, b, st, ins) -> RunMount:
    kv = _kv(spec, ins)
    kind = kv.pop("type", "bind")
    if kind == "cache":
        return _cache_mount(kv, b, spec)
    if kind == "bind":
        return _bind_mount(kv, b, st, ins, spec)
    if kind == "tmpfs":
        size = kv.get("size") or kv.get("tmpfs-size")
        return RunMount(kv["target"], tmpfs=kv["target"] + (f":size={size}" if size else ""),
                        key=["tmpfs", kv["target"], size])  # fmt: skip
    raise ins.error(f"RUN --mount=type={kind}: not supported (use cache, bind or tmpfs)")


def _created_by(st, argv: list[str]) -> str:
    args = sorted((k, v) for k, v in st.args.items() if v is not None)
    prefix = f"|{len(args)} " + " ".join(f"{k}={v}" for k, v in args) + " " if args else ""
    return prefix + " ".join(argv)


def plan(b, st, ins):
    from rootless.build.cache import Plan
    from rootless.errors import BuildError

    shell = st.flags.get("shell") or st.cfg.get("Shell") or DEFAULT_SHELL
    argv = list(ins.exec_form) if ins.exec_form is not None else [*shell, ins.rest]
    created = _created_by(st, argv)
    specs = ins.flags.get("mount", [])
    network = ins.flag("network") or b.o.network
    if ins.flag("security") not in (None, "sandbox"):
        raise ins.error(
            f"RUN --security={ins.flag('security')}: only sandbox is supported rootless"
        )
    mounts = [parse_mount(m, b, st, ins) for m in specs]
    key = [created, [m.key for m in mounts], ins.flag("network")]

    def run(st) -> None:
        if st.image is None:  # FROM scratch: the runtime needs an image to run on
            b._commit(st, None, None, record=False)
        try:
            for m in mounts:
                if m.prepare is not None:
                    m.prepare()
            _run(st)
        finally:
            for m in mounts:
                for base, fd in m.cleanup:
                    b.store.release_tmp(base, fd)

    def _run(st) -> None:
        image_env = st.cfg.get("Env") or []
        env_keys = {e.partition("=")[0] for e in image_env}
        env = [
            f"{k}={v}" for k, v in sorted(st.args.items()) if v is not None and k not in env_keys
        ]
        env += [f"{k}={v}" for k, v in b.o.build_args.items() if k.upper() in
                ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
                and k not in st.args]  # fmt: skip
        s = step.StepRun(
            image_id=st.image.id, argv=argv, env=env, network=network,
            security_opts=b.o.security_opts, cap_add=b.o.cap_add, cap_drop=b.o.cap_drop,
            volumes=[m.volume for m in mounts if m.volume],
            tmpfs=[m.tmpfs for m in mounts if m.tmpfs], driver=b.driver,
        )  # fmt: skip
        try:
            rc, rec = step.run_step(s)
        except RootlessError as e:
            raise BuildError(f'building at STEP "{ins.original}": {e}',
                             exit_code=e.exit_code) from None  # fmt: skip
        try:
            if rc != 0:
                raise BuildError(
                    f'building at STEP "{ins.original}": while running runtime: exit status {rc}',
                    exit_code=rc,
                )
            make = step.take_upper(rec, st.image.layer_dirs, [m.target for m in mounts])
            layer = commit.add_layer_dir(b.store, make)
        finally:
            step.remove(rec)
        b._commit(st, created, layer)

    return Plan(key=key, run=run)
