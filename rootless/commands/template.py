"""Go `text/template` for `--format`, as podman evaluates it: fields (`{{.A.B}}`), pipelines
(`{{.Names | upper}}`), `if`/`else`/`range`/`with`/`end`, variables (`$`, `$x :=`), string and
number literals, trim markers (`{{-`, `-}}`), and the functions podman's templates have (Go's
`index`, `len`, `printf`, `print`, `eq`/`ne`/`lt`/..., `and`/`or`/`not`, plus containers/common's
`json`, `upper`, `lower`, `title`, `truncate`, `pad`, `join`, `split`).

Values are Python data: a dict is a Go struct (a missing field is an error, as Go's "can't
evaluate field") unless it is a map (a `GoMap`, or a dict under one of MAP_FIELDS such as
`Labels`: a missing key prints `<no value>`). Printing follows Go's fmt `%v`: `[a b]`,
`map[k:v]`, `true`, `<no value>`.
"""

from __future__ import annotations

import json
import re

from rootless.errors import RootlessError

MAP_FIELDS = frozenset({"Labels", "Annotations", "Options", "DriverOpts", "Env", "Volumes",
                        "ExposedPorts", "Ports", "Mounts", "Networks", "Health", "Data"})  # fmt: skip


class TemplateError(RootlessError):
    """A --format template that does not parse or cannot be evaluated (exit 125)."""


class GoMap(dict):
    """A dict that is a Go map (missing keys are `<no value>`), not a struct."""


_NOVALUE = object()


def go_str(v) -> str:
    """A value as Go's fmt prints it with %v."""
    if v is _NOVALUE or v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e21 else repr(v)
    if isinstance(v, list | tuple):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_str(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def _truth(v) -> bool:
    return v not in (None, _NOVALUE, False, 0, "") and not (isinstance(v, list | dict) and not v)


def _json(v) -> str:
    return json.dumps(None if v is _NOVALUE else v, ensure_ascii=False, separators=(",", ":"))


def _index(v, *keys):
    for k in keys:
        if isinstance(v, dict):
            v = v.get(k, "")
        elif isinstance(v, list | str) and isinstance(k, int):
            if not 0 <= k < len(v):
                raise TemplateError(f"template: index out of range: {k}")
            v = v[k]
        else:
            raise TemplateError(f"template: can't index item of type {type(v).__name__}")
    return v


def _printf(fmt, *args):
    conv = {"v": "s", "s": "s", "d": "d", "q": "s", "t": "s", "f": "f"}

    vals = iter(args)

    def one(m):
        if m.group(0) == "%%":
            return "%"
        verb, a = m.group(2), next(vals, None)
        if verb == "q":
            return json.dumps(go_str(a))
        if conv.get(verb, "s") == "s":
            return ("%" + m.group(1) + "s") % go_str(a)
        return ("%" + m.group(1) + conv[verb]) % a

    return re.sub(r"%%|%([-+ 0#]*\d*(?:\.\d+)?)([a-zA-Z])", one, fmt)


def _cmp(op):
    def f(a, b, *more):
        if op == "eq":
            return any(a == x for x in (b, *more))
        return {"ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]

    return f


FUNCS = {
    "json": _json,
    "upper": lambda s: go_str(s).upper(),
    "lower": lambda s: go_str(s).lower(),
    "title": lambda s: re.sub(r"(?<![^\W_])\w", lambda m: m.group(0).upper(), go_str(s)),
    "truncate": lambda s, n: go_str(s)[:n],
    "pad": lambda s, a, b: (" " * a + s + " " * b) if s else s,
    "join": lambda items, sep: sep.join(go_str(x) for x in (items or [])),
    "split": lambda s, sep: go_str(s).split(sep) if sep else list(go_str(s)),
    "index": _index,
    "len": lambda v: len(v or ()),
    "printf": _printf,
    "print": lambda *a: "".join(go_str(x) for x in a),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "not": lambda v: not _truth(v),
    **{op: _cmp(op) for op in ("eq", "ne", "lt", "le", "gt", "ge")},
}

_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<num>-?\d+(?:\.\d+)?)|(?P<field>(?:\$\w*)?(?:\.\w+)+|\.)'
    r"|(?P<var>\$\w*)|(?P<ident>\w+)|(?P<punct>:=|=|\||\(|\)|,))"
)


def _tokens(src: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    src = src.strip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"template: unexpected {src[pos:].strip()[:20]!r} in {{{{{src}}}}}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(src) and src[pos].isspace():
            pos += 1
    return out


def _parse(fmt: str) -> list:
    """The template as a tree: text strings and (kind, tokens, body, else_body) nodes."""
    parts = re.split(r"(\{\{.*?\}\})", fmt, flags=re.S)
    items: list = []
    for i, p in enumerate(parts):
        if i % 2 == 0:
            items.append(p)
            continue
        inner = p[2:-2]
        if inner.startswith("-") and inner[1:2].isspace():
            if items and isinstance(items[-1], str):
                items[-1] = items[-1].rstrip()
            inner = inner[1:]
        if inner.endswith("-") and inner[-2:-1].isspace():
            inner = inner[:-1]
            if i + 1 < len(parts):
                parts[i + 1] = parts[i + 1].lstrip()
        items.append(("action", inner.strip()))
    root: list = []
    stack = [(root, None)]
    for it in items:
        if isinstance(it, str):
            if it:
                stack[-1][0].append(it)
            continue
        text = it[1]
        if text.startswith("/*"):
            continue
        word = text.split(None, 1)[0] if text else ""
        if word in ("if", "range", "with"):
            node = [word, _tokens(text[len(word) :]), [], None]
            stack[-1][0].append(node)
            stack.append((node[2], node))
        elif word == "else":
            node = stack[-1][1]
            if node is None:
                raise TemplateError("template: unexpected {{else}}")
            rest = text[4:].strip()
            node[3] = []
            if rest.startswith("if "):  # {{else if X}}: a nested if closed by the same {{end}}
                inner = ["if", _tokens(rest[3:]), [], None]
                node[3].append(inner)
                stack[-1] = (inner[2], inner)
            else:
                stack[-1] = (node[3], node)
        elif word == "end":
            if len(stack) == 1:
                raise TemplateError("template: unexpected {{end}}")
            stack.pop()
        elif text:
            stack[-1][0].append(["pipe", _tokens(text), None, None])
    if len(stack) != 1:
        raise TemplateError(
            "template: unexpected EOF: an {{if}}, {{range}} or {{with}} has no {{end}}"
        )
    return root


class _Eval:
    def __init__(self, root):
        self.vars = {"$": root}

    def field(self, cur, path: str):
        for part in path.split("."):
            if not part:
                continue
            if isinstance(cur, dict):
                if part in cur:
                    cur = cur[part]
                elif isinstance(cur, GoMap):
                    return _NOVALUE
                else:
                    low = {k.lower(): k for k in cur}
                    if part.lower() not in low:
                        raise TemplateError(f"template: can't evaluate field {part}")
                    cur = cur[low[part.lower()]]
                if part in MAP_FIELDS and isinstance(cur, dict) and not isinstance(cur, GoMap):
                    cur = GoMap(cur)
            elif cur is None or cur is _NOVALUE:
                return _NOVALUE
            else:
                raise TemplateError(
                    f"template: can't evaluate field {part} in type {type(cur).__name__}"
                )
        return cur

    def operand(self, tok, dot, toks):
        kind, val = tok
        if kind == "str":
            return json.loads(val) if val[0] == '"' else val[1:-1]
        if kind == "num":
            return float(val) if "." in val else int(val)
        if kind == "field":
            if val.startswith("$"):
                name, _, rest = val.partition(".")
                return self.field(self.vars.get(name, _NOVALUE), rest)
            return dot if val == "." else self.field(dot, val[1:])
        if kind == "var":
            if val not in self.vars:
                raise TemplateError(f"template: undefined variable {val}")
            return self.vars[val]
        if kind == "ident":
            if val in ("true", "false"):
                return val == "true"
            if val == "nil":
                return None
            return ("func", val)
        if val == "(":
            depth, sub = 1, []
            while toks:
                t = toks.pop(0)
                depth += t == ("punct", "(")
                depth -= t == ("punct", ")")
                if depth == 0:
                    return self.pipeline(sub, dot)
                sub.append(t)
            raise TemplateError("template: unclosed (")
        raise TemplateError(f"template: unexpected {val!r}")

    def pipeline(self, toks, dot):
        toks = list(toks)
        if len(toks) >= 2 and toks[0][0] == "var" and toks[1] in (("punct", ":="), ("punct", "=")):
            name = toks[0][1]
            self.vars[name] = val = self.pipeline(toks[2:], dot)
            return ("assigned", val)
        cmds, cur = [], []
        depth = 0
        for t in toks:
            depth += t == ("punct", "(")
            depth -= t == ("punct", ")")
            if t == ("punct", "|") and depth == 0:
                cmds.append(cur)
                cur = []
            else:
                cur.append(t)
        cmds.append(cur)
        value, piped = None, False
        for cmd in cmds:
            if not cmd:
                raise TemplateError("template: missing command in pipeline")
            args = []
            while cmd:
                args.append(self.operand(cmd.pop(0), dot, cmd))
            if piped:
                args.append(value)
            head = args[0]
            if isinstance(head, tuple) and head[0] == "func":
                fn = FUNCS.get(head[1])
                if fn is None and head[1] in ("and", "or"):
                    fn = _and if head[1] == "and" else _or
                if fn is None:
                    raise TemplateError(f'template: function "{head[1]}" not defined')
                try:
                    value = fn(*args[1:])
                except TypeError:
                    raise TemplateError(f"template: wrong arguments for {head[1]}") from None
            elif len(args) > 1:
                raise TemplateError(f"template: can't give argument to non-function {go_str(head)}")
            else:
                value = head
            piped = True
        return value

    def run(self, nodes, dot, out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
                continue
            kind, toks, body, other = node[:4]
            if kind == "pipe":
                v = self.pipeline(toks, dot)
                if not (isinstance(v, tuple) and v and v[0] == "assigned"):
                    out.append(go_str(v))
                continue
            saved = dict(self.vars)
            names = []
            if kind == "range" and ("punct", ":=") in toks:  # range $k, $v := X
                at = toks.index(("punct", ":="))
                names, toks = [t[1] for t in toks[:at] if t[0] == "var"], toks[at + 1 :]
            v = self.pipeline(toks, dot)
            if isinstance(v, tuple) and v and v[0] == "assigned":
                v = v[1]
            if kind == "if" or kind == "with":
                if _truth(v):
                    self.run(body, v if kind == "with" else dot, out)
                elif other is not None:
                    self.run(other, dot, out)
            else:  # range
                pairs = sorted(v.items()) if isinstance(v, dict) else list(enumerate(v or []))
                seq = [item for _, item in pairs]
                for key, item in pairs:
                    if names:
                        self.vars.update(
                            zip(
                                names[-2:] if len(names) > 1 else names[-1:],
                                (key, item) if len(names) > 1 else (item,),
                                strict=True,
                            )
                        )
                    self.run(body, item, out)
                if not seq and other is not None:
                    self.run(other, dot, out)
            self.vars = saved


def _and(*a):
    for x in a:
        if not _truth(x):
            return x
    return a[-1]


def _or(*a):
    for x in a:
        if _truth(x):
            return x
    return a[-1]


def execute(fmt: str, obj) -> str:
    """The template applied to one value (no escapes replaced, no newline added)."""
    out: list[str] = []
    _Eval(obj).run(_parse(fmt), obj, out)
    return "".join(out)


def normalize(fmt: str) -> str:
    """containers/common's NormalizeFormat: `table ` dropped and its spaces made column breaks,
    the escapes \\t and \\n made characters."""
    if fmt.startswith("table "):
        return fmt[6:].replace("\\t", "\t").replace(" ", "\t").replace("\\n", "\n")
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def render_template(fmt: str, obj) -> str:
    """One value through a --format template, as one printed line (or several) without the newline."""
    return execute(normalize(fmt), obj)


def is_table(fmt: str | None) -> bool:
    return bool(fmt) and fmt.startswith("table")
