"""podman's flag syntax for click commands: booleans bare or with a value, optional values."""

from __future__ import annotations

import click

_TRUE = ("true", "1", "yes", "on", "")
_FALSE = ("false", "0", "no", "off")


def to_bool(value, name: str) -> bool:
    v = str(value).lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise click.BadParameter(f"{value!r} is not a boolean", param_hint=name)


class PodmanCommand(click.Command):
    """A boolean flag is bare (--layers) or has a value (--layers=false), and never swallows the
    next argument (`build -q .` keeps `.` as the context); an option listed in `bare_values`
    (e.g. --pull) may be given bare and then takes that value."""

    bare_values: dict[str, str] = {"--pull": "always"}

    def parse_args(self, ctx, args):
        bools = {o: p.name for p in self.params if isinstance(p, click.Option) and p.is_flag
                 for o in p.opts}  # fmt: skip
        out = []
        for i, a in enumerate(args):
            if a == "--":
                out += args[i:]
                break
            name, eq, val = a.partition("=")
            if eq and name in bools:
                if to_bool(val, name):
                    out.append(name)
                else:
                    ctx.meta.setdefault("podman_false", set()).add(bools[name])
                continue
            if a in self.bare_values and any(a in p.opts for p in self.params):
                out.append(f"{a}={self.bare_values[a]}")
                continue
            out.append(a)
        return super().parse_args(ctx, out)


def bool_option(*decls, default: bool, help: str):
    return click.option(*decls, is_flag=True, default=default, help=help)


def value(ctx, name: str, given: bool) -> bool:
    """A boolean flag's value: False if it was given as --flag=false."""
    return False if name in ctx.meta.get("podman_false", ()) else given
