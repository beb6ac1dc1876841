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


def _template_view(report: dict) -> dict:
    """The report with the names podman's `info` templates use besides its own ({{.Host.Arch}}
    and {{.Store.GraphRoot}} are found case-insensitively)."""
    import os
    import platform

    from rootless import __version__

    host = dict(report.get("host") or {})
    cg = str((host.get("cgroups") or {}).get("version", ""))
    host.update(
        Hostname=platform.node(),
        CgroupsVersion="v2" if cg.startswith("v2") else "v1",
        Security={"Rootless": os.geteuid() != 0},
        OCIRuntime={"Name": "rootless"},
    )
    version = {
        "Version": __version__,
        "APIVersion": __version__,
        "OsArch": f"linux/{platform.machine()}",
    }
    return {**report, "host": host, "version": version}


@click.command()
@click.option(
    "-f",
    "--format",
    "fmt",
    default="text",
    help="text, json, or a Go template ({{.host.kernel}}, {{json .store}}).",
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
    elif fmt != "text":
        from rootless.commands.template import render_template

        click.echo(render_template(fmt, _template_view(report)))
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
