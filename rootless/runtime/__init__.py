"""The container runtime behind `rootless run`: namespaces, the root filesystem, security, the process.

Modules: spec (options -> process), rootfs (mounts and pivot_root), capabilities, seccomp, process
(exec, pty, signals), container (the orchestration), state (the container record on disk).
"""
