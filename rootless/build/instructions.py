"""What the metadata instructions do to an image config, and the history text podman records.

`apply(ins, cfg, env)` changes the inner config (`cfg`: Env, Cmd, Entrypoint, WorkingDir, User,
ExposedPorts, Labels, Volumes, StopSignal, Healthcheck, Shell, OnBuild) for ENV, LABEL, EXPOSE,
USER, WORKDIR, ENTRYPOINT, CMD, VOLUME, STOPSIGNAL, HEALTHCHECK, SHELL, ONBUILD and MAINTAINER, with
variables expanded where the Dockerfile reference says they are. `created_by(ins)` is the history
line (``/bin/sh -c #(nop) ENV A=1``). Also used by `commit --change` and `import --change`, which
take the same instructions.
"""

from __future__ import annotations

import os

from rootless.build import words
from rootless.build.parse import Instruction

CHANGE_ALLOWED = (
    "CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME",
    "WORKDIR",
)  # fmt: skip
DEFAULT_SHELL = ["/bin/sh", "-c"]


def created_by(ins: Instruction) -> str:
    return f"/bin/sh -c #(nop) {ins.original}"


def set_env(cfg: dict, key: str, value: str) -> None:
    env = list(cfg.get("Env") or [])
    for i, item in enumerate(env):
        if item.partition("=")[0] == key:
            env[i] = f"{key}={value}"
            break
    else:
        env.append(f"{key}={value}")
    cfg["Env"] = env


def env_dict(cfg: dict) -> dict[str, str]:
    out = {}
    for item in cfg.get("Env") or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def _duration(text: str, what: str, ins: Instruction) -> int:
    """A Go duration (30s, 1m30s, 500ms) in nanoseconds."""
    import re

    units = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
             "h": 3600 * 10**9}  # fmt: skip
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ins.error(f"HEALTHCHECK --{what}={text}: not a duration (e.g. 30s, 1m30s)")
    return int(sum(float(a) * units[b] for a, b in parts))


def _healthcheck(ins: Instruction) -> dict:
    kind, _, rest = ins.rest.strip().partition(" ")
    if kind.upper() == "NONE":
        return {"Test": ["NONE"]}
    from rootless.build.parse import json_form

    arr = json_form(rest)
    test = ["CMD", *arr] if arr is not None else ["CMD-SHELL", rest.strip()]
    hc: dict = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):  # fmt: skip
        v = ins.flag(flag)
        if v is not None:
            hc[key] = _duration(v, flag, ins)
    if ins.flag("retries") is not None:
        r = ins.flag("retries")
        if not r.isdigit():
            raise ins.error(f"HEALTHCHECK --retries={r}: not a number")
        hc["Retries"] = int(r)
    return hc


def _cmd_list(ins: Instruction, shell: list[str]) -> list[str]:
    if ins.exec_form is not None:
        return list(ins.exec_form)
    return [*shell, ins.rest]


def apply(ins: Instruction, cfg: dict, env: dict[str, str], outer: dict | None = None,
          state: dict | None = None) -> None:  # fmt: skip
    """Apply a metadata instruction to `cfg` (outer: the whole config document, for MAINTAINER;
    state: per-stage flags, e.g. whether CMD was set in this stage)."""
    c = ins.cmd
    state = state if state is not None else {}
    shell = cfg.get("Shell") or state.get("shell") or DEFAULT_SHELL
    try:
        if c == "ENV":
            for k, v in words.key_values(ins.rest, env, "ENV"):
                set_env(cfg, k, v)
                env[k] = v
        elif c == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            for k, v in words.key_values(ins.rest, env, "LABEL"):
                labels[k] = v
            cfg["Labels"] = labels
        elif c == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in words.split(ins.rest, env):
                port, _, proto = p.partition("/")
                if not port or not all(x.isdigit() for x in port.split("-")):
                    raise ins.error(f"EXPOSE {p}: invalid port (use PORT[/tcp|udp])")
                ports[f"{port}/{(proto or 'tcp').lower()}"] = {}
            cfg["ExposedPorts"] = ports
        elif c == "USER":
            cfg["User"] = words.unquote(ins.rest, env)
        elif c == "WORKDIR":
            wd = words.unquote(ins.rest, env)
            base = cfg.get("WorkingDir") or "/"
            cfg["WorkingDir"] = os.path.normpath(os.path.join(base, wd))
        elif c == "ENTRYPOINT":
            cfg["Entrypoint"] = _cmd_list(ins, shell) if ins.rest.strip() else None
            if not state.get("cmd_set"):
                cfg["Cmd"] = None  # an ENTRYPOINT drops the base image's CMD (docker's rule)
        elif c == "CMD":
            cfg["Cmd"] = _cmd_list(ins, shell)
            state["cmd_set"] = True
        elif c == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            items = ins.exec_form if ins.exec_form is not None else words.split(ins.rest, env)
            for v in items:
                if not v.strip():
                    raise ins.error("VOLUME specified can not be an empty string")
                vols[v] = {}
            cfg["Volumes"] = vols
        elif c == "STOPSIGNAL":
            cfg["StopSignal"] = words.unquote(ins.rest, env)
        elif c == "HEALTHCHECK":
            cfg["Healthcheck"] = _healthcheck(ins)
        elif c == "SHELL":
            cfg["Shell"] = list(ins.exec_form)
            state["shell"] = list(ins.exec_form)
        elif c == "ONBUILD":
            cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [ins.rest.strip()]
        elif c == "MAINTAINER":
            if outer is not None:
                outer["author"] = words.unquote(ins.rest, env)
    except words.WordError as e:
        raise ins.error(str(e)) from None
    for k in [k for k, v in cfg.items() if v is None]:
        del cfg[k]


def parse_changes(changes: list[str]) -> list[Instruction]:
    """`--change 'CMD ["sh"]'` values (commit, import) as instructions; only what podman allows."""
    from rootless.build.parse import ContainerfileError, parse_instruction

    out = []
    for n, ch in enumerate(changes, 1):
        kw, _, rest = ch.strip().partition(" ")
        if "=" in kw and kw.split("=", 1)[0].upper() in CHANGE_ALLOWED:  # docker's CMD=... form
            kw, rest = kw.split("=", 1)[0], kw.split("=", 1)[1] + " " + rest
        if kw.upper() not in CHANGE_ALLOWED:
            raise ContainerfileError(
                f"--change {ch!r}: {kw.upper() or 'an empty change'} is not allowed; use one of "
                + ", ".join(CHANGE_ALLOWED)
            )
        out.append(parse_instruction(kw, rest, n, f"--change {ch!r}"))
    return out
