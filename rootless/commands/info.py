"""`rootless info`: the host report (podman-style YAML-ish text, or JSON), and what is missing."""

import json

import click


def _emit(obj, indent: int = 0) -> list[str]:
    pad = "  " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict | list) and v:
                lines.append(f"{pad}{k}:")
                lines += _emit(v, indent + 1)
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                sub = _emit(item, indent + 1)
                lines.append(f"{pad}- {sub[0].strip()}")
                lines += sub[1:]
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return lines


def _scalar(v) -> str:
    if v is None:
        return '""'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return "{}" if isinstance(v, dict) else "[]"
    return str(v)


@click.command()
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    help="Output format.",
)
def info(fmt):
    """Display rootless system information and what is missing.

    Exits non-zero when `rootless run` cannot work on this host.
    """
    from rootless.info import gather

    report = gather()
    problems = report["problems"]
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        body = {k: v for k, v in report.items() if k != "problems"}
        click.echo("\n".join(_emit(body)))
        if problems:
            click.echo("problems:")
            for p in problems:
                level = "ERROR" if p["fatal"] else "WARNING"
                click.echo(f"  - {level}: {p['what']}")
                click.echo(f"    fix: {p['fix']}")
        else:
            click.echo("problems: []")
    return 1 if any(p["fatal"] for p in problems) else 0
