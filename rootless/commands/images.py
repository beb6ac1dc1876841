"""Image verbs: pull, push, images, rmi, tag, load, save, login, logout and the `image` group."""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import sys

import click

from rootless.commands.push import _access, _registry_options, push
from rootless.commands.template import render_template
from rootless.errors import ImageError


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("image")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image id.")
@click.option("--platform", default=None, help="OS/ARCH[/VARIANT] to pull from a multi-arch image.")
@click.option("--arch", default=None, help="Architecture to pull (same as --platform linux/ARCH).")
@_registry_options
def pull(image, quiet, platform, arch, tls_verify, creds, authfile, retry, retry_delay):
    """Pull an image from a registry."""
    from rootless.image.pull import pull_image

    if arch and not platform:
        platform = f"linux/{arch}"
    access = _access(creds, authfile, retry, retry_delay)
    rec = pull_image(image, quiet=quiet, tls_verify=tls_verify, platform=platform, access=access)
    click.echo(rec.id)


def _ago(ts: float | None) -> str:
    """go-units' HumanDuration since `ts`, as podman prints CREATED."""
    from rootless.runtime.inspect import human_duration

    if not ts:
        return "unknown"
    return f"{human_duration(_dt.datetime.now(_dt.UTC).timestamp() - ts)} ago"


def _created_ts(created: str) -> float | None:
    if not created:
        return None
    s = created.replace("Z", "+00:00")
    if "." in s:  # trim nanoseconds for fromisoformat
        head, _, rest = s.partition(".")
        frac = "".join(c for c in rest if c.isdigit())[:6]
        tz = rest[len("".join(c for c in rest if c.isdigit())) :]
        s = f"{head}.{frac}{tz}"
    try:
        return _dt.datetime.fromisoformat(s).timestamp()
    except ValueError:
        return None


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{n} B"
        n /= 1000
    return f"{n:.3g} GB"


def _split_name(name: str) -> tuple[str, str]:
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "<none>"


def _rows(recs, no_trunc: bool, store=None):
    """psReporter-like rows: one per name (only its tagged names if it has any), as podman's."""
    from rootless import gotime
    from rootless.commands.template import GoMap
    from rootless.image import filters as F

    for rec in recs:
        pairs = [_split_name(n) for n in rec.names] or [("<none>", "<none>")]
        tagged = [p for p in pairs if p[1] != "<none>"]
        created = F.created_ts(rec)
        base = _image_json(rec, store)
        for repo, tag in tagged or pairs[:1]:
            yield {
                **base,
                "Repository": repo,
                "Tag": tag,
                "ID": rec.id if no_trunc else rec.id[:12],
                "Id": rec.id,
                "Created": _ago(created),
                "CreatedSince": _ago(created),
                "CreatedAt": gotime.string(int(created * 1e9)),
                "CreatedTime": gotime.string(int(created * 1e9)),
                "Size": _size(rec.size),
                "Labels": GoMap(F.labels(rec)),
                "History": ", ".join(base["History"]),
                "ReadOnly": False,
                "Dangling": not rec.names,
                "_created": created,
                "_size": rec.size,
            }


def _image_json(rec, store=None) -> dict:
    """One image as podman's `images --format json` prints it (the same keys, in its order)."""
    from rootless import gotime
    from rootless.image import filters as F

    created = F.created_ts(rec)
    return {
        "Id": rec.id,
        "ParentId": _parent_id(rec.id),
        "RepoTags": None,
        "RepoDigests": rec.repo_digests,
        "Size": rec.size,
        "SharedSize": 0,
        "VirtualSize": rec.size,
        "Labels": F.labels(rec) or None,
        "Containers": len(store.image_in_use_check(rec.id)) if store is not None else 0,
        "Names": rec.names or None,
        "Digest": rec.digest,
        "History": list(reversed(rec.names)),
        "Created": int(created),
        "CreatedAt": gotime.rfc3339nano(int(created * 1e9)),
    }


def _parent_id(image_id: str) -> str:
    from rootless.build.cache import parent

    return parent(image_id) or ""


_IMAGE_HEADERS = {"ID": "IMAGE ID", "ReadOnly": "R/O", "CreatedSince": "CREATED",
                  "CreatedAt": "CREATED AT"}  # fmt: skip
_IMAGE_SORT = {
    "created": lambda r: -r["_created"],
    "id": lambda r: r["ID"],
    "repository": lambda r: r["Repository"],
    "size": lambda r: r["_size"],
    "tag": lambda r: r["Tag"],
}


@click.command(name="images")
@click.argument("image", required=False)
@click.option("-q", "--quiet", is_flag=True, help="Print only image ids.")
@click.option(
    "--format", "fmt", default=None, help="json, or a Go-style template such as {{.Repository}}."
)
@click.option("--no-trunc", is_flag=True, help="Do not truncate ids.")
@click.option(
    "-a",
    "--all",
    "all_",
    is_flag=True,
    help="Show all images, with the intermediate ones of builds.",
)
@click.option("-n", "--noheading", is_flag=True, help="Do not print the header row.")
@click.option("-f", "--filter", "filters", multiple=True,
              help="id, reference, label, label!, dangling, intermediate, containers, before, "
              "since, after, until, readonly or manifest=VALUE (also KEY!=VALUE).")  # fmt: skip
@click.option("--sort", default="created", show_default=True,
              help="Sort by created, id, repository, size or tag.")  # fmt: skip
@click.option("--digests", is_flag=True, help="Show digests.")
@click.option("--history", is_flag=True, help="Show the image's name history.")
def images(image, quiet, fmt, no_trunc, all_, noheading, filters, sort, digests, history):
    """List images in local storage."""
    from rootless.commands.ps import table_lines
    from rootless.commands.template import is_table
    from rootless.image import filters as F
    from rootless.image.store import Store

    if filters and image:
        raise ImageError("cannot specify an image and a filter(s)")
    if sort not in F.SORTS:
        raise ImageError(
            f'"{sort}" is not a valid field for sorting: use one of {", ".join(F.SORTS)}'
        )
    store = Store.open()
    recs = store.images()
    if not all_:  # images that builds made as steps (podman shows them with -a)
        from rootless.build.cache import intermediate_ids

        hidden = intermediate_ids(store)
        recs = [r for r in recs if r.id not in hidden]
    values = [f for v in filters for f in v.split(",")] + ([f"reference={image}"] if image else [])
    recs = F.select(store, recs, values)
    rows = sorted(_rows(recs, no_trunc, store), key=_IMAGE_SORT[sort])
    if fmt in ("json", "{{json .}}"):
        click.echo(json.dumps([_image_json(rec, store) for rec in _by_rows(recs, rows)], indent=4))
        return
    if quiet and not fmt:
        seen = []
        for r in rows:
            if r["Id"] not in seen:
                seen.append(r["Id"])
                click.echo(r["Id"] if no_trunc else r["Id"][:12])
        return
    if fmt and not is_table(fmt):
        for row in rows:
            click.echo(render_template(fmt, row))
        return
    if not fmt:
        cols = ["{{.Repository}}", "{{.Tag}}"] + (["{{.Digest}}"] if digests else [])
        cols += ["{{.ID}}", "{{.Created}}", "{{.Size}}"] + (["{{.History}}"] if history else [])
        fmt = "table " + "\\t".join(cols)
    for line in table_lines(fmt, rows, _IMAGE_HEADERS, noheading):
        click.echo(line)


def _by_rows(recs, rows) -> list:
    """The records in the rows' order, one per row (podman's json repeats an image per name)."""
    by_id = {r.id: r for r in recs}
    return [by_id[row["Id"]] for row in rows]


@click.command()
@click.argument("images", nargs=-1)
@click.option("-f", "--force", is_flag=True, help="Remove even if containers use it.")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all images.")
@click.option("-i", "--ignore", is_flag=True, help="Ignore images that do not exist.")
def rmi(images, force, all_, ignore):
    """Remove one or more images."""
    from rootless.image import remove
    from rootless.image.store import Store

    report = remove.remove(
        Store.open(),
        list(images),
        force=force,
        all_=all_,
        ignore=ignore,
        remove_container=_remove_container,
    )
    for cid in report.containers:
        click.echo(f"Removed container {cid[:12]}, which used a removed image", err=True)
    for name in report.untagged:
        click.echo(f"Untagged: {name}")
    for image_id in report.deleted:
        click.echo(f"Deleted: {image_id}")
    for e in report.errors:
        click.echo(f"Error: {e}", err=True)
    if report.exit_code:
        sys.exit(report.exit_code)


def _remove_container(cid: str) -> None:
    """rmi -f: remove a container that uses the image, as `rm -f` does."""
    from rootless.runtime import api

    api.remove(api.get(cid), force=True)


def _local_name(name: str) -> str:
    """A name as `tag` stores it: short names under localhost/, with a tag."""
    from rootless.image import reference

    r = reference.parse(name)
    if r.is_short:
        r = reference.Reference("localhost", r.path, r.tag)
    return str(r.defaulted())


@click.command()
@click.argument("image")
@click.argument("names", nargs=-1)
def untag(image, names):
    """Remove names from a local image (all of them if none is given); the image stays."""
    from rootless.image.store import Store

    store = Store.open()
    rec = store.lookup_image(image)
    if rec is None:
        raise ImageError(f"{image}: image not known")
    drop = list(rec.names) if not names else []
    for n in names:
        full = _local_name(n)
        if full not in rec.names:
            raise ImageError(f"{n}: tag not known")
        drop.append(full)
    for n in drop:
        store.remove_name(rec.id, n)


@click.command()
@click.argument("source")
@click.argument("targets", nargs=-1, required=True)
def tag(source, targets):
    """Add names to a local image."""
    from rootless.image import reference
    from rootless.image.store import Store

    store = Store.open()
    rec = store.require(source)
    for t in targets:
        r = reference.parse(t)
        if r.digest:
            raise ImageError(f"{t}: a tag cannot contain a digest")
        if r.is_short:
            r = reference.Reference("localhost", r.path, r.tag)
        store.add_name(rec.id, str(r.defaulted()))


@click.command()
@click.option(
    "-i", "--input", "input_", default=None, help="Read the archive from this file (default stdin)."
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
def load(input_, quiet):
    """Load an image from a docker-archive or oci-archive."""
    from rootless.image import archive

    if input_ is None and sys.stdin.isatty():
        raise ImageError("no archive to load: give -i FILE or pipe one into stdin")
    names = archive.load(input_ if input_ else sys.stdin.buffer, quiet=quiet)
    for n in names:
        click.echo(f"Loaded image: {n}")


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="Write to this file (default stdout).")
@click.option(
    "--format",
    "fmt",
    default="docker-archive",
    help="Archive format: docker-archive or oci-archive.",
)
@click.option(
    "-m",
    "--multi-image-archive",
    "multi",
    is_flag=True,
    help="Every name is an image (docker-archive); otherwise the others are extra tags.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
def save(images, output, fmt, multi, quiet):
    """Save images to a docker-archive or oci-archive."""
    from rootless.image import archive

    if fmt not in ("docker-archive", "oci-archive"):
        raise ImageError(f'unknown --format "{fmt}": use docker-archive or oci-archive')
    if output is not None and not output:
        raise ImageError("--output needs a file name")
    if output is None and sys.stdout.isatty():
        raise ImageError(
            "refusing to write an archive to a terminal: use -o FILE or redirect stdout"
        )
    archive.save(list(images), output if output else sys.stdout.buffer, fmt=fmt, multi=multi)


@click.command()
@click.argument("registry")
@click.option("-u", "--username", default=None)
@click.option("-p", "--password", default=None)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--tls-verify", "tls_verify", default=None, type=click.BOOL)
@click.option("--get-login", is_flag=True, help="Print the stored username for the registry.")
def login(registry, username, password, password_stdin, tls_verify, get_login):
    """Log in to a registry (stores credentials in containers-auth.json)."""
    import trio

    from rootless.image import auth, distribution, registries_conf

    key = _registry_key(registry)
    if get_login:
        c = auth.credentials(key.split("/")[0], None)
        if not c:
            raise ImageError(f"not logged in to {key}")
        click.echo(c[0])
        return
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    if not username:
        username = _ask("Username", "username", hide=False)
    if password is None:
        password = _ask("Password", "password", hide=True)
    insecure = registries_conf.load().insecure_for(key.split("/")[0]) or tls_verify is False

    # check the credentials against the registry before storing them
    async def check():
        client = distribution.RegistryClient(
            key.split("/")[0], insecure=insecure, tls_verify=tls_verify
        )
        client._creds_cache[""] = (username, password)
        try:
            await client.check_login()
        finally:
            await client.aclose()

    trio.run(check)
    auth.store(key, username, password)
    click.echo("Login Succeeded!")


def _ask(prompt: str, what: str, hide: bool) -> str:
    """A prompt on the terminal; without one (or at EOF) podman's error, not a Python warning."""
    if hide and not sys.stdin.isatty():
        raise ImageError(
            f"getting username and password: reading {what}: no terminal to read it from (use --password-stdin)"
        )
    try:
        return click.prompt(prompt, hide_input=hide)
    except click.exceptions.Abort:
        click.echo("")  # end the prompt's line
        raise ImageError(f"getting username and password: reading {what}: EOF") from None


def _registry_key(registry: str) -> str:
    r = registry
    for scheme in ("https://", "http://"):
        r = r.removeprefix(scheme)
    r = r.rstrip("/")
    if r in ("index.docker.io", "registry-1.docker.io"):
        r = "docker.io"
    return r


@click.command()
@click.argument("registry", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="Remove credentials for every registry.")
def logout(registry, all_):
    """Log out of a registry."""
    from rootless.image import auth

    if all_:
        auth.remove(None)
        click.echo("Removed login credentials for all registries")
        return
    if not registry:
        raise click.UsageError("logout needs a registry (or --all)")
    key = _registry_key(registry)
    if not auth.remove(key):
        raise ImageError(f"not logged in to {key}")
    click.echo(f"Removed login credentials for {key}")


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Remove every image no container uses.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def prune(all_, force):
    """Remove dangling (unnamed) images, or all unused ones with -a."""
    from rootless.build.cache import intermediate_ids
    from rootless.image.store import Store

    store = Store.open()
    steps = intermediate_ids(store)  # kept unless -a, as podman keeps them
    for rec in store.images():
        if (all_ or not (rec.names or rec.id in steps)) and not store.image_in_use_check(rec.id):
            store.remove_image(rec.id)
            click.echo(rec.id)
    store.gc()


@click.command()
@click.argument("image")
def exists(image):
    """Exit 0 if the image is in local storage, 1 if not."""
    from rootless.image.store import Store

    sys.exit(0 if Store.open().lookup_image(image) else 1)


@click.group()
def image():
    """Manage images."""


def _inspect_images(names, fmt):
    from rootless.commands.inspect import inspect_cmd_impl

    return inspect_cmd_impl(names, fmt, "image")


@click.command(name="inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", default=None)
def image_inspect(names, fmt):
    """Display details of images."""
    _inspect_images(names, fmt)


image.add_command(pull)
image.add_command(push)
image.add_command(images, "ls")
image.add_command(images, "list")
image.add_command(rmi, "rm")
image.add_command(tag)
image.add_command(untag)
image.add_command(load)
image.add_command(save)
image.add_command(prune)
image.add_command(exists)
image.add_command(image_inspect)
image.add_command(importlib.import_module("rootless.commands.build").build)
for _name, _mod, _attr in (("history", "history", "history"), ("diff", "history", "image_diff"),
                           ("import", "commit", "import_")):  # fmt: skip
    image.add_command(getattr(importlib.import_module(f"rootless.commands.{_mod}"), _attr), _name)
