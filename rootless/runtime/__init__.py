"""The container runtime behind `rootless run`, one module per process role and per concern.

Entry points: ``api`` (create, run, run_detached, start, exec, stop, kill, remove, wait).
Deciding, on the host: ``plan`` (the frozen Plan and Launch: image, namespaces, mounts, network,
cgroup), ``spec`` (options -> the container's process), ``security`` (capabilities, seccomp,
no_new_privs, and ``become``), ``rootfs`` (mount specs, then the mounts and pivot_root).
The processes of a container, in the order they start: ``monitor`` (host side, like conmon),
``setup`` (root in the user namespace: the storage), ``nsholder`` (the namespaces), ``init`` (PID 1
until it execs the command); ``exec`` joins a running one. They talk over ``channel`` (typed
messages). Around them: ``storage`` (overlay, fuse-overlay, vfs), ``console`` (pty, signals),
``command`` (PATH lookup and exec), ``logs``, ``state`` (the record on disk), ``manage`` (acting on
a container from its record), ``inspect``, ``top``, ``capabilities``, ``seccomp``.
"""
