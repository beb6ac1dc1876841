"""Word splitting, quote removal and variable expansion as the Dockerfile reference defines them.

`$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME:+word}`, `${NAME-word}` and `${NAME+word}` are
expanded; single quotes keep their text literal, double quotes group words and still expand, and a
backslash escapes the next character (`\\$` is a literal dollar). An unset variable expands to
nothing. Used for ENV, ARG, LABEL, COPY, ADD, WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL and FROM
(RUN, CMD and ENTRYPOINT are left to the shell, as in docker and buildah).
"""

from __future__ import annotations

from rootless.errors import RootlessError


class WordError(RootlessError):
    """A malformed word (an unterminated quote or ${...})."""


def _var_name(text: str, i: int) -> tuple[str, int]:
    j = i
    if j < len(text) and (text[j].isalpha() or text[j] == "_"):
        while j < len(text) and (text[j].isalnum() or text[j] == "_"):
            j += 1
    return text[i:j], j


def _expand_var(text: str, i: int, env: dict[str, str]) -> tuple[str, int]:
    """text[i] is just past a `$`: the expansion and the index after it."""
    if i < len(text) and text[i] == "{":
        end = _closing_brace(text, i + 1)
        body = text[i + 1 : end]
        name, k = _var_name(body, 0)
        if not name:
            raise WordError(f"bad substitution ${{{body}}}")
        op = body[k:]
        val = env.get(name)
        if not op:
            return val or "", end + 1
        for sym in (":-", ":+", "-", "+"):
            if op.startswith(sym):
                word = expand(op[len(sym) :], env)
                if sym == ":-":
                    return (val if val else word), end + 1
                if sym == ":+":
                    return (word if val else ""), end + 1
                if sym == "-":
                    return (val if val is not None else word), end + 1
                return (word if val is not None else ""), end + 1
        raise WordError(f"unsupported modifier in ${{{body}}}")
    name, j = _var_name(text, i)
    if not name:
        return "$", i
    return env.get(name, ""), j


def _closing_brace(text: str, i: int) -> int:
    depth = 1
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise WordError(f"missing '}}' in {text!r}")


def split(text: str, env: dict[str, str] | None, *, keep_quotes: bool = False) -> list[str]:
    """Split `text` into words (quotes removed, variables expanded when env is not None)."""
    words: list[str] = []
    cur: list[str] = []
    have = False
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            if have:
                words.append("".join(cur))
                cur, have = [], False
            i += 1
            continue
        have = True
        if c == "\\" and i + 1 < n:
            cur.append(text[i : i + 2] if keep_quotes else text[i + 1])
            i += 2
        elif c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise WordError(f"unterminated single quote in {text!r}")
            cur.append(text[i : end + 1] if keep_quotes else text[i + 1 : end])
            i = end + 1
        elif c == '"':
            i = _double_quoted(text, i + 1, env, cur, keep_quotes)
        elif c == "$" and env is not None:
            val, i = _expand_var(text, i + 1, env)
            cur.append(val)
        else:
            cur.append(c)
            i += 1
    if have:
        words.append("".join(cur))
    return words


def _double_quoted(text: str, i: int, env, cur: list[str], keep_quotes: bool) -> int:
    if keep_quotes:
        cur.append('"')
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            if keep_quotes:
                cur.append('"')
            return i + 1
        if c == "\\" and i + 1 < n and text[i + 1] in '"\\$':
            cur.append(text[i : i + 2] if keep_quotes else text[i + 1])
            i += 2
        elif c == "$" and env is not None:
            val, i = _expand_var(text, i + 1, env)
            cur.append(val)
        else:
            cur.append(c)
            i += 1
    raise WordError(f"unterminated double quote in {text!r}")


def expand(text: str, env: dict[str, str]) -> str:
    """Expand variables in `text`, keeping quotes and spacing (one word, e.g. WORKDIR or FROM)."""
    out: list[str] = []
    i = 0
    n = len(text)
    quote = None
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] == "$":
            out.append("$")
            i += 2
        elif c == "'" and quote is None:
            end = text.find("'", i + 1)
            end = n - 1 if end < 0 else end
            out.append(text[i : end + 1])
            i = end + 1
        elif c == "$":
            val, i = _expand_var(text, i + 1, env)
            out.append(val)
        else:
            if c == '"':
                quote = None if quote else '"'
            out.append(c)
            i += 1
    return "".join(out)


def unquote(text: str, env: dict[str, str] | None) -> str:
    """One value with its quotes removed and variables expanded (whitespace kept)."""
    return " ".join(split(text, env)) if text.strip() else ""


def key_values(text: str, env: dict[str, str] | None, what: str) -> list[tuple[str, str]]:
    """ENV/LABEL/ARG pairs: `k=v k2="v 2"`, or the legacy `KEY value with spaces` form."""
    raw = split(text, None, keep_quotes=True)
    if not raw:
        raise WordError(f"{what} requires at least one argument")
    if "=" not in raw[0]:
        if what == "ARG":
            return [(unquote(raw[0], env), None)] if len(raw) == 1 else _bad_arg(text)
        if len(raw) < 2:
            raise WordError(
                f"{what} names can not be blank"
                if not raw
                else f"{what} {raw[0]} needs a value: {what} KEY=VALUE"
            )
        key, _, rest = text.strip().partition(raw[0])
        value = rest.strip()
        return [(unquote(raw[0], env), unquote(value, env) if env is not None else value)]
    out = []
    for w in raw:
        if "=" not in w:
            raise WordError(f"{what} expects KEY=VALUE pairs, got {w!r}")
        k, _, v = w.partition("=")
        key = unquote(k, env)
        if not key:
            raise WordError(f"{what} names can not be blank")
        out.append((key, "".join(split(v, env)) if v else ""))
    return out


def _bad_arg(text: str):
    raise WordError(f"ARG takes one NAME[=DEFAULT], got {text!r}")
