"""`completion bash|zsh|fish`: shell completion scripts (click's), and what they complete beyond
verbs and flags: container names for arguments that name containers, image names for those that
name images (attached to each verb when the lazy group loads it, see rootless.cli)."""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")
_KINDS = {"container": ("container",), "containers": ("container",), "image": ("image",),
          "images": ("image",)}  # fmt: skip


def _containers(incomplete: str) -> list[str]:
    from rootless.runtime import state

    try:
        return [r.name for r in state.list_records() if r.name.startswith(incomplete)]
    except OSError:
        return []


def _images(incomplete: str) -> list[str]:
    from rootless.image.store import Store

    try:
        names = [n for rec in Store.open().images() for n in rec.names]
    except Exception:  # noqa: BLE001 (an unreadable store completes nothing; never a traceback)
        return []
    short = [n.removeprefix("localhost/") for n in names]
    return sorted({n for n in names + short if n.startswith(incomplete)})


def _complete(kinds: tuple[str, ...]):
    def complete(ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        found: list[str] = []
        if "container" in kinds:
            found += _containers(incomplete)
        if "image" in kinds:
            found += _images(incomplete)
        return [CompletionItem(n) for n in found]

    return complete


def attach(cmd: click.Command) -> click.Command:
    """Give the arguments of `cmd` (and of a group's subcommands) that name containers or images
    their completion, unless they have one."""
    for param in cmd.params:
        if isinstance(param, click.Argument) and param._custom_shell_complete is None:
            kinds = _KINDS.get(param.name or "", ())
            if param.name == "names" and cmd.name == "inspect":
                kinds = ("container", "image")
            if kinds:
                param._custom_shell_complete = _complete(kinds)
    for sub in getattr(cmd, "commands", {}).values():
        attach(sub)
    return cmd


@click.command()
@click.option("-f", "--file", "path", default=None,
              help="Write the script to this file rather than to stdout ('-': stdout).")  # fmt: skip
@click.argument(
    "shells", nargs=-1, shell_complete=lambda c, p, inc: [s for s in SHELLS if s.startswith(inc)]
)
def completion(path, shells):
    """Generate a shell completion script: completion bash|zsh|fish.

    bash: `source <(rootless completion bash)`; zsh: `rootless completion zsh -f
    "${fpath[1]}/_rootless"`; fish: `rootless completion fish -f
    ~/.config/fish/completions/rootless.fish`."""
    from click.shell_completion import get_completion_class

    from rootless.errors import RootlessError

    if len(shells) != 1:
        raise RootlessError(f"accepts 1 arg(s), received {len(shells)}")
    if shells[0] not in SHELLS:
        raise RootlessError(f'invalid argument "{shells[0]}" for "rootless completion"')
    root = click.get_current_context().find_root().command  # rootless.cli's group
    script = get_completion_class(shells[0])(root, {}, "rootless", "_ROOTLESS_COMPLETE").source()
    if path in (None, "-"):
        click.echo(script, nl=False)
        return
    try:
        with open(path, "w") as f:
            f.write(script)
    except OSError as e:
        raise RootlessError(f"cannot write {path}: {e.strerror}") from None
