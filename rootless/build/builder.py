"""The build loop: stages, steps, the cache, commits, tags, and podman's progress lines.

For each stage the target needs (FROM stage, COPY --from and RUN --mount from= make a stage
needed), in file order: resolve the base (an image, pulled by the --pull policy; an earlier stage;
or scratch), then each instruction is one step. A step's cache key is looked up first (--no-cache
and --layers=false skip the cache); a miss runs the step (rootless.build.runinstr for RUN,
rootless.build.copyinstr for COPY/ADD, rootless.build.instructions for the rest) and commits its
result as an intermediate image, which the next step runs on. The output is podman's:
``[1/2] STEP 3/7: RUN ...``, the step's own output, ``--> Using cache <id>`` or ``--> <id>``,
``COMMIT <name>``, ``Successfully tagged <name>`` and the image id. --squash and --layers=false
give the final stage's new content one layer. A failing step leaves no container and no image name
behind (its intermediate images are the cache); the error names the step.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import click

from rootless.build import cache, commit, instructions, parse, words
from rootless.errors import BuildError, ImageError, RootlessError

PLATFORM_ARGS = ("TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT", "BUILDPLATFORM",
                 "BUILDOS", "BUILDARCH", "BUILDVARIANT")  # fmt: skip
PROXY_ARGS = ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")


@dataclass
class BuildOptions:
    context: str
    file: str | None = None  # path, or "-" for stdin
    file_text: str | None = None  # the Containerfile read from stdin
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    pull: str = "missing"  # always | missing | never | newer
    layers: bool = True
    squash: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    platform: str | None = None
    quiet: bool = False
    iidfile: str | None = None
    network: str = "slirp4netns"
    security_opts: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    fmt: str = "oci"
    storage_driver: str | None = None


@dataclass
class StageState:
    stage: parse.Stage
    config: dict  # the whole config document
    layers: list[dict]
    image: object | None  # the ImageRecord of the last step (None: scratch, nothing committed)
    base_name: str
    base_id: str = "scratch"
    args: dict[str, str | None] = field(default_factory=dict)  # declared in this stage
    flags: dict = field(default_factory=dict)  # cmd_set, shell
    base_count: int = 0  # layers that came with the base image

    @property
    def cfg(self) -> dict:
        return self.config.setdefault("config", {})

    @property
    def parent_id(self) -> str:
        return self.image.id if self.image is not None else "scratch"

    def expand_env(self) -> dict[str, str]:
        env = {k: v for k, v in self.args.items() if v is not None}
        env.update(instructions.env_dict(self.cfg))
        return env


def _platform_args() -> dict[str, str]:
    os_, arch = commit.host_platform()
    out = {}
    for side in ("TARGET", "BUILD"):
        out[f"{side}PLATFORM"] = f"{os_}/{arch}"
        out[f"{side}OS"] = os_
        out[f"{side}ARCH"] = arch
        out[f"{side}VARIANT"] = ""
    return out


def check_platform(value: str | None, where: str = "--platform") -> None:
    if not value:
        return
    os_, arch = commit.host_platform()
    parts = value.split("/")
    if parts[0] != os_ or (len(parts) > 1 and parts[1] != arch):
        raise BuildError(
            f"{where} {value}: only this host's platform {os_}/{arch} can be built here "
            "(no emulation)"
        )


class Builder:
    def __init__(self, opts: BuildOptions):
        from rootless.image.store import Store

        self.o = opts
        self.store = Store.open()
        self.stage_images: dict[int, object] = {}
        self.use_cache = opts.layers and not opts.squash and not opts.no_cache
        self.write_cache = opts.layers and not opts.squash
        self.tmp_dirs: list[tuple[str, int]] = []  # store tmp dirs to release at the end
        self._driver = None

    @property
    def driver(self) -> str:
        if self._driver is None:
            from rootless.build import step

            self._driver = step.storage_driver(self.o.storage_driver)
        return self._driver

    # --- output ------------------------------------------------------------------------------------
    def say(self, line: str) -> None:
        if not self.o.quiet:
            click.echo(line)
            sys.stdout.flush()

    # --- the whole build ----------------------------------------------------------------------------
    def load(self) -> parse.Containerfile:
        if self.o.file == "-":
            return parse.parse(self.o.file_text or "", "-")
        path = self.o.file
        if path is None:
            for name in ("Containerfile", "Dockerfile"):
                cand = os.path.join(self.o.context, name)
                if os.path.isfile(cand):
                    path = cand
                    break
            else:
                raise BuildError(
                    f"no Containerfile or Dockerfile in {self.o.context}: give one with -f"
                )
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise BuildError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
        return parse.parse(text, os.path.basename(path) if path else "Containerfile")

    def build(self) -> str:
        from rootless.build.context import Context

        check_platform(self.o.platform)
        for t in self.o.tags:  # a bad name fails before anything is built
            try:
                commit.image_name(t)
            except ImageError as e:
                raise BuildError(f"-t {t}: {e}") from None
        self.cf = self.load()
        self.ctx = Context(self.o.context)
        self.global_env = self._global_args()
        target = len(self.cf.stages) - 1
        if self.o.target:
            t = self.cf.stage_index(self.o.target)
            if t is None:
                raise BuildError(f"--target {self.o.target}: no stage has that name")
            target = t
        needed = self._needed(target)
        with self.store.lock("gc", shared=True):
            try:
                for st in self.cf.stages[: target + 1]:
                    if st.index in needed:
                        self.stage_images[st.index] = self._stage(st, st.index == target)
                final = self._finish(self.stage_images[target])
                self.say(f"--> {final.id[:11]}")
            finally:
                self.ctx.save_hashes()
                for base, fd in self.tmp_dirs:
                    self.store.release_tmp(base, fd)
        self._tag(final)
        if self.o.iidfile:
            with open(self.o.iidfile, "w") as f:
                f.write("sha256:" + final.id)
        return final.id

    def _global_args(self) -> dict[str, str]:
        env = dict(_platform_args())
        for ins in self.cf.global_args:
            for name, default in words.key_values(ins.rest, env, "ARG"):
                if name in self.o.build_args:
                    env[name] = self.o.build_args[name]
                elif default is not None:
                    env[name] = default
        return env

    def _needed(self, target: int) -> set[int]:
        deps: dict[int, set[int]] = {}
        for st in self.cf.stages:
            d = set()
            base = words.expand(st.base, self.global_env)
            i = self.cf.stage_index(base)
            if i is not None and i < st.index:
                d.add(i)
            for ins in st.instructions:
                for ref in self._stage_refs(ins):
                    j = self.cf.stage_index(ref)
                    if j is not None and j < st.index:
                        d.add(j)
            deps[st.index] = d
        out, todo = set(), [target]
        while todo:
            i = todo.pop()
            if i not in out:
                out.add(i)
                todo += list(deps[i])
        return out

    @staticmethod
    def _stage_refs(ins: parse.Instruction) -> list[str]:
        refs = []
        if ins.cmd == "COPY" and ins.flag("from"):
            refs.append(ins.flag("from"))
        for m in ins.flags.get("mount", []):
            for kv in m.split(","):
                k, _, v = kv.partition("=")
                if k.strip() == "from":
                    refs.append(v)
        return refs

    # --- one stage --------------------------------------------------------------------------------
    def _prefix(self, stage: parse.Stage) -> str:
        n = len(self.cf.stages)
        return f"[{stage.index + 1}/{n}] " if n > 1 else ""

    def _stage(self, stage: parse.Stage, final: bool):
        total = len(stage.instructions) + 1
        pre = self._prefix(stage)
        st = self._from(stage, pre, total)
        for n, ins in enumerate(stage.instructions, 2):
            self.say(f"{pre}STEP {n}/{total}: {ins.original}")
            last = final and n == total
            self._step(st, ins, pre, last)
        if final and total == 1:
            self._announce_commit(pre)
        if final and (self.o.squash or not self.o.layers):
            self._squash(st)
        if st.image is None:  # FROM scratch and nothing else
            self._commit(st, None, None, record=False)
        return st.image

    def _from(self, stage: parse.Stage, pre: str, total: int) -> StageState:
        base = words.expand(stage.base, self.global_env)
        check_platform(words.expand(stage.platform, self.global_env) if stage.platform else None,
                       f"{stage.from_instr.where}: FROM --platform")  # fmt: skip
        idx = self.cf.stage_index(base)
        if idx is not None and idx < stage.index:
            rec = self.stage_images[idx]
            self.say(f"{pre}STEP 1/{total}: FROM {rec.id}")
            name = rec.id[:12]
        elif base.lower() == "scratch":
            self.say(f"{pre}STEP 1/{total}: FROM scratch")
            rec, name = None, "scratch"
        else:
            shown = words.expand(stage.from_instr.value, self.global_env)
            self.say(f"{pre}STEP 1/{total}: FROM {shown}")
            rec = self._base_image(base, stage.from_instr)
            name = rec.names[0] if rec.names else rec.id[:12]
        cfg = commit.base_config(rec)
        cfg.pop("created", None)
        st = StageState(stage=stage, config=cfg, layers=[dict(x) for x in rec.layers] if rec else [],
                        image=rec, base_name=name, base_id=rec.id if rec else "scratch",
                        base_count=len(rec.layers) if rec else 0)  # fmt: skip
        for trigger in (cfg.get("config") or {}).pop("OnBuild", None) or []:
            kw, _, rest = trigger.strip().partition(" ")
            ins = parse.parse_instruction(kw, rest, stage.from_instr.line,
                                          f"{stage.from_instr.where} (ONBUILD of {name})")  # fmt: skip
            self._step(st, ins, pre, False, quiet=True)
        return st

    def _base_image(self, ref: str, ins: parse.Instruction):
        policy = self.o.pull
        rec = None if policy in ("always", "newer") else self.store.lookup_image(ref)
        if rec is not None and all(os.path.isdir(d) for d in rec.layer_dirs):
            return rec
        if policy == "never":
            raise BuildError(
                f"{ins.where}: FROM {ref}: the image is not in local storage and --pull=never"
            )
        from rootless.image.pull import pull_image

        try:
            return pull_image(ref, quiet=self.o.quiet)
        except RootlessError as e:
            if policy == "newer":
                local = self.store.lookup_image(ref)
                if local is not None:
                    return local
            raise BuildError(f"{ins.where}: FROM {ref}: {e}", exit_code=e.exit_code) from None

    # --- one step ---------------------------------------------------------------------------------
    def _step(self, st: StageState, ins: parse.Instruction, pre: str, last: bool,
              quiet: bool = False) -> None:  # fmt: skip
        from rootless.build import copyinstr, runinstr

        if ins.cmd == "ARG":
            self._declare_args(st, ins)
        if ins.cmd == "RUN":
            plan = runinstr.plan(self, st, ins)
        elif ins.cmd in ("COPY", "ADD"):
            plan = copyinstr.plan(self, st, ins)
        else:
            plan = self._meta_plan(st, ins)
        k = cache.key(st.parent_id, self.o.fmt, plan.key)
        hit = cache.lookup(self.store, k) if self.use_cache else None
        if hit is not None:
            if not quiet:
                self.say(f"--> Using cache {hit.id}")
            self._adopt(st, hit)
        else:
            plan.run(st)
            if self.write_cache:
                cache.remember(k, st.image.id)
        if last:
            self._announce_commit(pre)  # the final "--> ID" comes once the image is done
        elif not quiet:
            self.say(f"--> {st.image.id[:11]}")

    def _announce_commit(self, pre: str) -> None:
        self.say(f"{pre}COMMIT {self.o.tags[0]}" if self.o.tags else f"{pre}COMMIT")

    def _declare_args(self, st: StageState, ins: parse.Instruction) -> None:
        env = st.expand_env()
        try:
            pairs = words.key_values(ins.rest, env, "ARG")
        except words.WordError as e:
            raise ins.error(str(e)) from None
        for name, default in pairs:
            if name in self.o.build_args:
                st.args[name] = self.o.build_args[name]
            elif default is not None:
                st.args[name] = default
            elif name in self.global_env:
                st.args[name] = self.global_env[name]
            else:
                st.args[name] = None

    def _meta_plan(self, st: StageState, ins: parse.Instruction):
        created = instructions.created_by(ins)
        if ins.cmd == "ARG":
            names = [n for n, _ in words.key_values(ins.rest, None, "ARG")]
            created = "/bin/sh -c #(nop) ARG " + " ".join(names)

        def run(st: StageState) -> None:
            if ins.cmd != "ARG":
                instructions.apply(ins, st.cfg, st.expand_env(), st.config, st.flags)
            self._commit(st, created, None)

        # an ARG's value is not in the image (RUN records it); others may expand build args
        used = [] if ins.cmd == "ARG" else sorted((k, v) for k, v in st.args.items() if v)
        return cache.Plan(key=[ins.original, used], run=run)

    def _adopt(self, st: StageState, rec) -> None:
        st.image = rec
        st.config = commit.base_config(rec)
        st.config.pop("created", None)
        st.layers = [dict(x) for x in rec.layers]
        if (st.cfg.get("Shell")) and "shell" not in st.flags:
            st.flags["shell"] = st.cfg["Shell"]

    def _commit(self, st: StageState, created_by: str | None, layer: dict | None,
                record: bool = True):  # fmt: skip
        parent = st.image
        if created_by is not None:
            base = parent is None or parent.id == st.base_id
            comment = f"FROM {st.base_name}" if base else f"FROM {parent.id[:12]}"
            entry = {"created": commit.now_iso(), "created_by": created_by, "comment": comment}
            if layer is None:
                entry["empty_layer"] = True
            st.config.setdefault("history", []).append(entry)
        if layer is not None:
            st.layers.append(layer)
        st.config.pop("created", None)
        cfg = dict(st.config)
        cfg["created"] = commit.now_iso()
        rec = commit.commit_image(self.store, cfg, st.layers, fmt=self.o.fmt)
        if record and parent is not None:
            cache.set_parent(rec.id, parent.id)
        st.image = rec
        return rec

    # --- the end ----------------------------------------------------------------------------------
    def _squash(self, st: StageState) -> None:
        from rootless.build import squash

        squash.squash_stage(self, st)

    def _finish(self, rec):
        if not self.o.labels:
            return rec
        k = cache.key(rec.id, self.o.fmt, "labels", sorted(self.o.labels.items()))
        hit = cache.lookup(self.store, k) if self.use_cache else None
        if hit is not None:
            return hit
        cfg = commit.base_config(rec)
        inner = cfg.setdefault("config", {})
        inner["Labels"] = {**(inner.get("Labels") or {}), **self.o.labels}
        cfg["created"] = commit.now_iso()
        new = commit.commit_image(self.store, cfg, rec.layers, fmt=self.o.fmt)
        cache.set_parent(new.id, rec.id)
        if self.write_cache:
            cache.remember(k, new.id)
        return new

    def _tag(self, rec) -> None:
        for t in self.o.tags:
            try:
                name = commit.image_name(t)
            except ImageError as e:
                raise BuildError(f"-t {t}: {e}") from None
            commit.tag_image(self.store, rec, name)
            self.say(f"Successfully tagged {name}")


def build(opts: BuildOptions) -> str:
    return Builder(opts).build()
