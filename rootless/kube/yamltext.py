"""YAML in and out for the kube verbs, with PyYAML (imported here, lazily: never on `run`'s path).

Output is shaped as podman's (Go's sigs.k8s.io/yaml): block style, keys sorted, a list's items at
the indentation of its key, and strings that would read as another type (``"false"``, ``"100"``, a
timestamp) in double quotes.
"""

from __future__ import annotations

from rootless.errors import RootlessError


class KubeError(RootlessError):
    """A Kubernetes YAML that cannot be read, generated or played."""


def _dumper():
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def represent_str(dumper, value: str):
        tag = dumper.resolve(yaml.ScalarNode, value, (True, False))
        style = '"' if tag != "tag:yaml.org,2002:str" or value == "" else None
        if "\n" in value:
            style = "|"
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, represent_str)
    return Dumper


def dump(docs: list[dict]) -> str:
    """The documents, separated by ``---`` lines as podman separates them."""
    import yaml

    dumper = _dumper()
    parts = [
        yaml.dump(d, Dumper=dumper, default_flow_style=False, sort_keys=True, width=1 << 20)
        for d in docs
    ]
    return "---\n".join(parts)


def load(text: str, where: str) -> list[dict]:
    """Every non-empty document of a YAML stream; each must be a mapping."""
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "not YAML"
        raise KubeError(f"{where}: invalid YAML{at}: {problem}") from None
    for d in docs:
        if not isinstance(d, dict):
            raise KubeError(
                f"{where}: each YAML document must be a mapping with apiVersion and kind"
            )
    return docs
