"""The container entry points of the library: what the CLI's verbs call, and what an API server (or
`build`'s RUN steps) will call. Each takes options or a container record and returns a value or
raises a RootlessError (one line, podman's exit code); none prints or reads flags.

    create(opts) -> (plan, record)      run(opts) -> exit code       run_detached(opts) -> id
    create_only(opts) -> record (`create`: what inspect shows before the first start)
    init(rec) (created/exited -> initialized: checked again and described, nothing runs)
    start(rec)                          exec(rec, argv, ...) -> exit code
    stop(rec, timeout) -> record        kill(rec, signal)            remove(rec, force, volumes)
    stop_all(recs, timeout) -> [record] (at once, each with its own stop signal and timeout)
    wait(rec) -> record                 get(name) -> record          containers() -> [record]
    wait_condition(rec, conditions, interval) -> exit code, or -1 (podman's `wait --condition`)
    parse_signal(value) -> int          ACTIVE (the states in which a container runs)

The work is in rootless.runtime.plan (deciding), rootless.runtime.monitor (running), rootless.
runtime.exec and rootless.runtime.manage (acting on a container from its record).
"""

from __future__ import annotations

import errno
import os
from dataclasses import replace

from rootless import paths
from rootless.errors import ContainerError
from rootless.runtime import monitor, plan, runflags, state
from rootless.runtime.spec import RunOptions

ACTIVE = ("running", "stopping")  # the states of a container whose processes run


def _manage():
    from rootless.runtime import manage  # not on `run`'s path: it only acts on existing containers

    return manage


def get(name: str) -> state.ContainerRecord:
    """The container with this name, id or unique id prefix, its state checked (NoSuchContainer)."""
    return _manage().get(name)


def containers() -> list[state.ContainerRecord]:
    return _manage().records()


def parse_signal(value: str | int) -> int:
    return _manage().parse_signal(value)


def stop(rec, timeout: float | None = None):
    """The container's stop signal, then SIGKILL after `timeout` seconds (None: its stop
    timeout); the record once the container has settled."""
    return _manage().stop(rec, timeout)


def stop_all(recs: list, timeout: float | None = None) -> list:
    """stop() for several containers at once: each its stop signal now, SIGKILL when its own
    timeout (or `timeout`) is over; their records once settled."""
    return _manage().stop_all(recs, timeout)


def kill(rec, sig: int) -> None:
    _manage().kill(rec, sig)


def remove(rec, force: bool = False, volumes: bool = False, infra: bool = False) -> None:
    """Remove a container (`force`: even a running one); `volumes`: its anonymous volumes too
    (podman's rm -v), those no other container uses; `infra`: even a pod's infra container (only
    `pod rm` removes one)."""
    if not infra and rec.run is not None and rec.run.pod:
        from rootless.pods import members

        members.check_removal(rec)
    _manage().remove(rec, force=force)
    if volumes:
        from rootless.volumes import usage

        usage.remove_anonymous(rec)


def wait(rec, timeout: float | None = None):
    """The record once the container has exited (its exit code recorded)."""
    return _manage().wait_exit(rec, timeout)


def wait_condition(rec, conditions, interval: float = 0.1) -> int:
    """`wait --condition`: -1 once in one of podman's states, or the exit code (manage.CONDITIONS)."""
    return _manage().wait_condition(rec, conditions, interval)


def create(opts: RunOptions) -> tuple[plan.Plan, state.ContainerRecord]:
    """Decide everything (plan.prepare: every option is checked) and make the container's record,
    in state "created". Nothing runs yet."""
    os.makedirs(paths.data_home(), mode=0o700, exist_ok=True)
    if opts.requires:  # podman keeps the ids: the containers must exist now
        opts = replace(opts, requires=[get(n).id for n in opts.requires])
    p = plan.prepare(opts)
    p = p._replace(opts=runflags.resolve(p.opts, p.image.config))  # stop signal, ulimits
    image_labels = ((p.image.config or {}).get("config") or {}).get("Labels") or {}
    saved = replace(plan.saved_options(p.opts), labels={**image_labels, **p.opts.labels})
    try:
        rec = state.create(opts.image, p.image.id, name=opts.name, rm=opts.rm,
                           storage_driver=p.opts.storage_driver, run=saved)  # fmt: skip
        if opts.cidfile:
            _write_cidfile(opts.cidfile, rec)
    except BaseException:
        if p.mounts and any(m.volume for m in p.mounts):  # the anonymous volumes made for it
            from rootless.volumes import usage

            usage.remove_unused_anonymous([m.volume for m in p.mounts if m.volume])
        raise
    return p, rec


def _write_cidfile(path: str, rec: state.ContainerRecord) -> None:
    """--cidfile: the full id in a new file (the container is removed again if it cannot be)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(rec.id)
    except OSError as e:
        _manage().remove(rec, force=True)
        if e.errno == errno.EEXIST:
            raise ContainerError(
                "container id file exists. Ensure another container is not using it or "
                f"delete {path}"
            ) from None
        raise ContainerError(f"--cidfile {path}: {e.strerror}") from None


def create_only(opts: RunOptions) -> state.ContainerRecord:
    """`rootless create`: the container made and described (its command, environment, user,
    working directory and hostname as inspect shows them) but not started."""
    p, rec = create(opts)
    _describe(p, rec)
    return rec


def init(rec: state.ContainerRecord) -> state.ContainerRecord:
    """`rootless init`: a created (or exited) container checked again against its image and
    options and put in state "initialized", as podman's init. Podman's runtime then holds the
    container's processes paused before the command; rootless makes its namespaces and mounts at
    `start` (which takes an initialized container as a created one), so nothing runs here."""
    if rec.state in ACTIVE or rec.state in ("initialized", "paused"):
        raise ContainerError(
            f"container {rec.id} has already been created in runtime: container state improper"
        )
    p = plan.prepare(plan.options_of(rec), rec.image_id or None)
    with state.lock():
        fresh = state.load(rec.id)
        if fresh is None or fresh.state in ACTIVE or fresh.alive("monitor"):
            raise ContainerError(
                f"container {rec.id} has already been created in runtime: container state improper"
            )
        fresh.state, fresh.exit_code = "initialized", None
        _describe(p, fresh, locked=True)
    return fresh


def _describe(p: plan.Plan, rec: state.ContainerRecord, locked: bool = False) -> None:
    """Record what inspect shows of a container that has not run: its process and hostname."""
    launch = plan.launch(p, rec)
    proc = launch.process
    from rootless.runtime.state import ProcessConfig

    rec.command = proc.args
    rec.process = ProcessConfig(args=proc.args, env=proc.env, cwd=proc.cwd, user=proc.user)
    rec.hostname, rec.network = launch.hostname, p.opts.network
    rec.save(locked=locked)


def run(opts: RunOptions) -> int:
    """`rootless run`: create the container and run it in this process (its monitor); the
    container's exit code."""
    _start_pod_infra(opts)
    return monitor.run_foreground(*create(opts))


def run_detached(opts: RunOptions) -> str:
    """`run -d`: the container's id, once its command runs under a detached monitor."""
    _start_pod_infra(opts)
    return monitor.spawn(*create(opts))


def _start_pod_infra(opts: RunOptions) -> None:
    """A pod's container joins its infra container's namespaces: start the infra first; the
    containers it --requires too."""
    for cid in opts.requires:
        other = get(cid)
        if other.state not in ACTIVE:
            start(other)
    if opts.pod:
        from rootless.pods import members

        infra = members.infra_to_start(opts)
        if infra is not None:
            start(infra)


def start(rec: state.ContainerRecord) -> None:
    """Start a created or exited container again on its preserved storage, under a new monitor;
    nothing if it runs already (or another `start` is starting it)."""
    manage = _manage()
    if rec.state == "created" and rec.alive("monitor"):
        rec = manage.wait_started(rec)  # another `start` is at it: wait for its outcome
    if rec.state in ACTIVE:
        return
    if rec.alive("monitor") and not rec.restarting:
        rec = manage.wait_settled(rec)  # the last run's monitor is still cleaning up
    with state.lock():  # two `start`s at once must not run the container twice on one upper dir
        fresh = state.load(rec.id)
        if fresh is None:
            raise state.NoSuchContainer(
                f'no container with name or ID "{rec.name}" found: no such container'
            )
        if fresh.state in ACTIVE or (fresh.state == "created" and fresh.alive("monitor")):
            return
        fresh.state = "created"
        fresh.pids = {}
        fresh.set_pid(
            "monitor", os.getpid()
        )  # until the monitor takes over (a restarting one ends)
        fresh.restart_count, fresh.restarting = 0, False  # the user's start: podman resets it
        fresh.save(locked=True)
    from rootless.runtime import restart

    restart.clear_stopped(fresh)
    try:
        _start_pod_infra(plan.options_of(fresh))
        p = plan.prepare(plan.options_of(fresh), fresh.image_id or None)
    except BaseException:
        fresh.set_state("exited")
        raise
    monitor.spawn(p, fresh)


def exec(rec: state.ContainerRecord, argv: list[str], **kw) -> int:  # noqa: A001 - podman's verb
    """`rootless exec`: run argv in the running container (see rootless.runtime.exec.exec_in)."""
    from rootless.runtime.exec import exec_in

    return exec_in(rec, argv, **kw)
