"""`inspect`: JSON details of images (here) and containers (rootless.runtime.inspect).

Names that are containers are shown as containers (`--type container|image|all`, default all:
containers win, as in podman).
"""

from __future__ import annotations

import json

import click

from rootless.errors import RootlessError


def image_inspect_data(rec) -> dict:
    """podman-style `inspect` JSON for an ImageRecord."""
    cfg = rec.config
    inner = cfg.get("config") or {}
    return {
        "Id": rec.id,
        "Digest": rec.digest,
        "RepoTags": rec.names,
        "RepoDigests": rec.repo_digests,
        "Parent": _parent(rec.id),
        "Comment": cfg.get("comment", ""),
        "Created": rec.created,
        "Config": inner,
        "Version": cfg.get("docker_version", ""),
        "Author": cfg.get("author", ""),
        "Architecture": cfg.get("architecture", ""),
        "Os": cfg.get("os", ""),
        **({"Variant": cfg["variant"]} if cfg.get("variant") else {}),
        "Size": rec.size,
        "VirtualSize": rec.size,
        "Labels": inner.get("Labels") or None,
        "ManifestType": rec.manifest_media_type,
        "User": inner.get("User", ""),
        "History": cfg.get("history") or [],
        "RootFS": {"Type": "layers", "Layers": [layer["diff_id"] for layer in rec.layers]},
        "Layers": [
            {
                "Digest": layer["digest"],
                "DiffID": layer["diff_id"],
                "Size": layer.get("size"),
                "MediaType": layer.get("media_type", ""),
            }
            for layer in rec.layers
        ],
        "GraphDriver": {"Name": "rootless", "Data": {"LowerDirs": list(reversed(rec.layer_dirs))}},
        "NamesHistory": rec.names,
    }


def _parent(image_id: str) -> str:
    """The image a build step or commit started from (rootless.build.cache), as podman shows it."""
    from rootless.build.cache import parent

    return parent(image_id) or ""


def inspect_cmd_impl(names, fmt, type_) -> None:
    from rootless.commands.template import render_template
    from rootless.image.store import Store
    from rootless.runtime.inspect import inspect_container

    store = None
    out, missing = [], []
    for name in names:
        data = inspect_container(name) if type_ in ("container", "all") else None
        if data is None and type_ in ("image", "all"):
            store = store or Store.open()
            rec = store.lookup_image(name)
            data = image_inspect_data(rec) if rec else None
        if data is None:
            missing.append(name)
            continue
        out.append(data)
    if fmt and fmt != "json":
        for d in out:
            click.echo(render_template(fmt, d))
    else:
        click.echo(json.dumps(out, indent=4))
    if missing:
        what = {"image": "image", "container": "container"}.get(type_, "image or container")
        raise RootlessError(f"no such {what}: {', '.join(missing)}")


@click.command(name="inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", default=None, help="json (default) or a Go-style template.")
@click.option(
    "-t", "--type", "type_", type=click.Choice(["image", "container", "all"]), default="all"
)
def inspect_cmd(names, fmt, type_):
    """Display details of images or containers."""
    inspect_cmd_impl(names, fmt, type_)


inspect = inspect_cmd
