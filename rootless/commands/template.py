"""Go-style `--format` templates for `images`, `ps` and `inspect`: the small subset podman users write."""

import json
import re

from rootless.errors import ImageError


def render_template(fmt: str, obj) -> str:
    """A small subset of Go templates: {{.A.B}}, {{json .A}}, {{.}} and literal text; \\t, \\n."""
    fmt = fmt.removeprefix("table ").replace("\\t", "\t").replace("\\n", "\n")

    def value(expr: str):
        expr = expr.strip()
        as_json = False
        if expr.startswith("json "):
            as_json, expr = True, expr[5:].strip()
        cur = obj
        if expr != ".":
            for part in expr.lstrip(".").split("."):
                if isinstance(cur, dict):
                    if part in cur:
                        cur = cur[part]
                    else:
                        low = {k.lower(): k for k in cur}
                        if part.lower() not in low:
                            raise ImageError(f"template: no field {part!r} (in {expr!r})")
                        cur = cur[low[part.lower()]]
                else:
                    raise ImageError(f"template: cannot take {part!r} of a {type(cur).__name__}")
        if as_json:
            return json.dumps(cur)
        if isinstance(cur, list):
            return "[" + " ".join(str(x) for x in cur) + "]"
        if isinstance(cur, dict):
            return "map[" + " ".join(f"{k}:{v}" for k, v in cur.items()) + "]"
        if cur is None:
            return "<no value>"
        return str(cur)

    return re.sub(r"\{\{(.*?)\}\}", lambda m: value(m.group(1)), fmt)
