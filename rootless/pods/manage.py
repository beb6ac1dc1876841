"""Pod operations, for the `pod` verbs and `run --pod` (and an API server): create (the pod and its
infra container), start (the infra first), stop and kill (the members at once, then the infra), rm
(refused while a container runs, unless forced, as podman), prune, top, and the pod's status from
its containers' states, as podman computes it. Each raises a RootlessError with podman's exit code;
none prints.
"""

from __future__ import annotations

from dataclasses import replace

from rootless.errors import ContainerError, RootlessError
from rootless.pods import infra, store
from rootless.runtime import api

ACTIVE = api.ACTIVE


def containers(pod: store.PodRecord) -> list:
    """The pod's containers (infra included), their states checked, oldest first."""
    recs = [r for r in api.containers() if r.run is not None and r.run.pod == pod.id]
    return sorted(recs, key=lambda r: r.created)


def split(pod: store.PodRecord, recs: list) -> tuple[object | None, list]:
    """(the infra container's record or None, the other containers)."""
    inf = next((r for r in recs if pod.infra and r.name == pod.infra_name), None)
    return inf, [r for r in recs if r is not inf]


def status(recs: list) -> str:
    """podman's pod status: Created, Running, Degraded, Exited or Stopped."""
    n = len(recs)
    running = sum(1 for r in recs if r.state in ACTIVE)
    exited = sum(1 for r in recs if r.state == "exited")
    if n == 0:
        return "Created"
    if running == n:
        return "Running"
    if running:
        return "Degraded"
    if exited == n:
        return "Exited"
    return "Stopped" if exited else "Created"


def create(*, name: str | None = None, labels: dict | None = None, hostname: str = "",
           share: str | None = None, infra_on: bool = True, infra_command: list | None = None,
           infra_image: str = "", infra_name: str = "", publish: list | None = None,
           network: str = "", exit_policy: str = "continue", create_command: list | None = None,
           storage_driver: str = "overlay", replace_existing: bool = False) -> store.PodRecord:  # fmt: skip
    """Make a pod and (unless infra_on is False) its infra container, created but not started."""
    from rootless.network.mode import parse_network
    from rootless.network.ports import parse_publish_all

    shared = store.parse_share(share, infra_on)
    if not infra_on:
        if shared:
            raise store.PodError(
                "you must have an infra container to share namespaces (drop --infra=false or --share)"
            )
        if publish:
            raise store.PodError(
                "you must have an infra container to publish port bindings to the host"
            )
    if infra_command and not infra_image:
        raise store.PodError(
            "--infra-command needs --infra-image: the default infra container runs rootless's own pause"
        )
    if exit_policy not in ("continue", "stop"):
        raise store.PodError(f"invalid pod exit policy {exit_policy!r}: use continue or stop")
    if network:
        parse_network(network)
    if publish:
        parse_publish_all(list(publish))
    if hostname and "uts" not in shared:
        raise store.PodError("--hostname needs a shared uts namespace (--share uts)")
    pod = store.PodRecord(id="", name=name or _random_name(), created_ns=0, labels=dict(labels or {}),
                          hostname=hostname, share=shared, infra=infra_on, infra_name=infra_name,
                          infra_command=infra_command, infra_image=infra_image,
                          publish=list(publish or []), network=network, exit_policy=exit_policy,
                          create_command=list(create_command or []))  # fmt: skip
    if replace_existing:
        try:
            remove(store.lookup(pod.name), force=True, timeout=10)
        except store.NoSuchPod:
            pass
    pod = store.create(pod, {r.name for r in api.containers()})
    if infra_on:
        try:
            api.create(infra.options(pod, storage_driver))
        except BaseException:
            store.remove(pod)
            raise
    return pod


def _random_name() -> str:
    from rootless.runtime.state import _random_name as container_name  # one style for both

    taken = store.names()
    while (name := container_name()) in taken:
        pass
    return name


def for_run(opts, value: str, storage_driver: str = "overlay"):
    """`run --pod VALUE`: the options with the pod's id; `new:NAME` creates the pod first and
    publishes the container's -p ports on it, as podman does."""
    if value.startswith("new:"):
        pod = create(name=value[4:], publish=list(opts.publish), storage_driver=storage_driver,
                     create_command=["--pod", value])  # fmt: skip
        return replace(opts, pod=pod.id, publish=[])
    return replace(opts, pod=store.lookup(value).id)


def start(pod: store.PodRecord) -> None:
    """Start the infra, then every other container that does not run."""
    inf, others = split(pod, containers(pod))
    errors = []
    for rec in ([inf] if inf else []) + others:
        if rec.state in ACTIVE:
            continue
        try:
            api.start(api.get(rec.id))
        except RootlessError as e:
            errors.append(f"starting container {rec.id[:12]}: {e}")
            if rec is inf:
                break
    if errors:
        raise store.PodError("; ".join(errors))


def _stop_all(recs: list, timeout: float | None) -> None:
    """Each its stop signal at once, then SIGKILL once its stop timeout (or `timeout`) is over."""
    from rootless.runtime import manage

    running = []
    for r in recs:
        try:
            running += [api.get(r.id)] if r.state in ACTIVE else []
        except api.state.NoSuchContainer:
            pass  # it exited and removed itself (--rm) meanwhile
    manage.stop_all(running, timeout)


def stop(pod: store.PodRecord, timeout: float | None = None) -> None:
    """Stop the pod's containers, then its infra (`timeout` None: each its own stop timeout)."""
    inf, others = split(pod, containers(pod))
    _stop_all(others, timeout)
    if inf is not None:
        _stop_all([inf], timeout)


def kill(pod: store.PodRecord, sig: int) -> None:
    """Send `sig` to every running container of the pod (the infra last)."""
    inf, others = split(pod, containers(pod))
    for rec in others + ([inf] if inf else []):
        if rec.state in ACTIVE:
            try:
                api.kill(rec, sig)
            except ContainerError:
                pass  # it exited meanwhile


def remove(pod: store.PodRecord, *, force: bool = False, timeout: float | None = None) -> str:
    """Remove the pod and its containers; a pod with running containers only with `force` (they
    are stopped first, within `timeout` seconds, else killed)."""
    recs = containers(pod)
    inf, others = split(pod, recs)
    running = [r for r in others if r.state in ACTIVE]
    if running and not force:
        names = ", ".join(r.name for r in running)
        raise store.PodError(
            f"pod {pod.name} has running containers ({names}): stop the pod first or use pod rm -f"
        )
    if force:
        _stop_all(others, timeout)
    for rec in others + ([inf] if inf else []):
        try:
            api.remove(api.get(rec.id), force=True, infra=True)
        except api.state.NoSuchContainer:
            pass
    store.remove(pod)
    return pod.id


def prune() -> list[str]:
    """Remove every pod whose containers have all exited; their ids."""
    removed = []
    for pod in store.list_pods():
        if status(containers(pod)) in ("Exited", "Stopped"):
            removed.append(remove(pod))
    return removed


def top(pod: store.PodRecord, descriptors: list[str]) -> list[list[str]]:
    """`pod top`: the processes of every running container of the pod, one header."""
    from rootless.runtime.top import top as top_rows

    rows: list[list[str]] = []
    inf, others = split(pod, containers(pod))
    running = [r for r in others + ([inf] if inf else []) if r.state in ACTIVE]
    if "pid" in pod.share:  # one pid namespace: each container would list the same processes
        running = running[:1]
    for rec in running:
        try:
            got = top_rows(rec, descriptors)
        except ContainerError:
            continue  # it exited meanwhile
        rows += got if not rows else got[1:]
    if not rows:
        raise store.PodError(f"pod {pod.name} has no running containers: start it first")
    return rows
