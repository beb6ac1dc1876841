"""The Containerfile: lines, continuations and comments through dockerfile-parse, then our checks.

dockerfile-parse (a maintained library) does the line work: continuation lines, comments inside
them, the instruction keyword. This module turns its structure into stages and instructions, splits
leading `--flag=value` options, recognises the JSON (exec) form, and checks each instruction's
shape, so that a bad file fails before anything is built, with the file name and line number:
``Containerfile:3: unknown instruction: FROBNICATE``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

from rootless.build import words
from rootless.errors import RootlessError

KNOWN = {
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
    "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip
FLAGS = {
    "FROM": {"platform"},
    "RUN": {"mount", "network", "security"},
    "COPY": {"from", "chown", "chmod", "link", "parents", "exclude"},
    "ADD": {"chown", "chmod", "checksum", "keep-git-dir", "link", "exclude"},
    "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"},
}
NEED_ARGS = KNOWN - {"HEALTHCHECK"}


class ContainerfileError(RootlessError):
    """A Containerfile that cannot be built as written (message names the file and line)."""


@dataclass
class Instruction:
    cmd: str  # upper-case keyword
    value: str  # everything after the keyword, continuation lines joined
    line: int  # 1-based line of the keyword
    where: str  # "Containerfile:3", for messages
    flags: dict[str, list[str]] = field(default_factory=dict)
    rest: str = ""  # value without the leading --flags
    exec_form: list[str] | None = None  # the JSON array form of RUN/CMD/ENTRYPOINT/SHELL/...

    @property
    def original(self) -> str:
        """As podman prints it in `STEP n/m: ...`."""
        return f"{self.cmd} {self.value}".rstrip()

    def flag(self, name: str, default: str | None = None) -> str | None:
        vals = self.flags.get(name)
        return vals[-1] if vals else default

    def error(self, msg: str) -> ContainerfileError:
        return ContainerfileError(f"{self.where}: {msg}")


@dataclass
class Stage:
    index: int
    base: str  # as written (variables not yet expanded)
    name: str | None
    platform: str | None
    from_instr: Instruction
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Containerfile:
    path: str
    global_args: list[Instruction]
    stages: list[Stage]

    def stage_index(self, name: str) -> int | None:
        for s in self.stages:
            if s.name is not None and s.name == name.lower():
                return s.index
        if name.isdigit() and int(name) < len(self.stages):
            return int(name)
        return None


def _split_flags(ins: Instruction) -> None:
    text = ins.value.lstrip()
    allowed = FLAGS.get(ins.cmd, set())
    while text.startswith("--"):
        tok, _, after = text.partition(" ")
        if not tok.strip("-"):
            break
        name, eq, val = tok[2:].partition("=")
        if name not in allowed:
            what = f"{ins.cmd} does not take flags" if not allowed else f"unknown flag --{name}"
            raise ins.error(f"{ins.cmd}: {what}")
        ins.flags.setdefault(name, []).append(val if eq else "true")
        text = after.lstrip()
    ins.rest = text


def json_form(text: str) -> list[str] | None:
    t = text.strip()
    if not t.startswith("["):
        return None
    try:
        v = json.loads(t)
    except ValueError:
        return None  # docker and buildah run it as a shell command then
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    return None


def parse_instruction(cmd: str, value: str, line: int, where: str) -> Instruction:
    """One instruction (also used for ONBUILD triggers and `commit --change`)."""
    ins = Instruction(cmd=cmd.upper(), value=value.strip(), line=line, where=where)
    if ins.cmd not in KNOWN:
        raise ins.error(f"unknown instruction: {cmd.upper()}")
    _split_flags(ins)
    if ins.cmd in NEED_ARGS and not ins.rest.strip():
        raise ins.error(f"{ins.cmd} requires at least one argument")
    if ins.cmd in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME", "HEALTHCHECK"):
        ins.exec_form = json_form(ins.rest)
    _check(ins)
    return ins


def _check(ins: Instruction) -> None:
    c = ins.cmd
    try:
        if c in ("COPY", "ADD"):
            srcs = ins.exec_form if ins.exec_form is not None else words.split(ins.rest, None)
            if len(srcs) < 2:
                raise ins.error(f"{c} requires at least two arguments: {c} SOURCE... DEST")
        elif c == "SHELL":
            if not ins.exec_form:
                raise ins.error('SHELL requires the JSON form: SHELL ["executable", "parameters"]')
        elif c in ("ENV", "LABEL"):
            words.key_values(ins.rest, None, c)
        elif c == "ARG":
            words.key_values(ins.rest, None, c)
        elif c == "ONBUILD":
            kw, _, rest = ins.rest.strip().partition(" ")
            if kw.upper() in ("ONBUILD", "FROM", "MAINTAINER"):
                raise ins.error(f"ONBUILD cannot trigger {kw.upper()}")
            parse_instruction(kw, rest, ins.line, ins.where)
        elif c == "HEALTHCHECK":
            kind = ins.rest.split(None, 1)[0].upper() if ins.rest.strip() else ""
            if kind not in ("CMD", "NONE"):
                raise ins.error("HEALTHCHECK takes CMD ... or NONE")
        elif c in ("WORKDIR", "USER", "STOPSIGNAL"):
            words.split(ins.rest, None)
    except words.WordError as e:
        raise ins.error(str(e)) from None


def parse(text: str, path: str) -> Containerfile:
    """Parse a Containerfile's text; `path` names it in messages."""
    from dockerfile_parse import DockerfileParser

    where_name = path
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()), env_replace=False)
    try:
        structure = parser.structure
    except Exception as e:  # noqa: BLE001 - the library's own parse failure, as one line
        raise ContainerfileError(f"{where_name}: cannot parse: {e}") from None
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    for item in structure:
        kw = item["instruction"]
        if kw == "COMMENT":
            continue
        line = int(item["startline"]) + 1
        where = f"{where_name}:{line}"
        ins = parse_instruction(kw, item["value"], line, where)
        if ins.cmd == "FROM":
            stages.append(_stage(ins, len(stages)))
        elif not stages:
            if ins.cmd != "ARG":
                raise ins.error(f"{ins.cmd} before the first FROM: only ARG may come first")
            global_args.append(ins)
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise ContainerfileError(f"{where_name}: no FROM instruction: nothing to build")
    seen: set[str] = set()
    for s in stages:
        if s.name is not None:
            if s.name in seen:
                raise s.from_instr.error(f"duplicate stage name {s.name!r}")
            seen.add(s.name)
    return Containerfile(path=path, global_args=global_args, stages=stages)


def _stage(ins: Instruction, index: int) -> Stage:
    parts = ins.rest.split()
    name = None
    if len(parts) == 3 and parts[1].lower() == "as":
        name = parts[2].lower()
        if not name[0].isalpha() or not all(c.isalnum() or c in "_.-" for c in name):
            raise ins.error(f"invalid stage name {parts[2]!r}")
    elif len(parts) != 1:
        raise ins.error("FROM takes IMAGE [AS NAME]")
    return Stage(
        index=index,
        base=parts[0],
        name=name,
        platform=ins.flag("platform"),
        from_instr=ins,
    )
