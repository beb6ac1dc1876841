"""Container networking: how a container's network namespace reaches the outside, rootless.

Modules (nothing is imported here: import the one you need):
- ``mode``: ``--network`` parsing (slirp4netns, pasta, none, host), starting a mode's helper;
- ``handle``: ``NetworkHandle``, a running helper, its record state, and the exit-fd contract that
  ties the helper's life to the container's;
- ``slirp4netns``, ``pasta``: each helper's options and command line (and pasta's guard process);
- ``helper``: what both helpers share (start, readiness, logs, finding the binary);
- ``slirpapi``: the slirp4netns API socket client (published ports);
- ``ports``: ``-p``/``-P`` parsing and host-port checks;
- ``etc``: the one generator of a container's /etc/hosts and /etc/resolv.conf;
- ``netlink``: links, addresses and routes inside a network namespace (loopback up on the start
  path by ioctl; pyroute2 for everything else, off the start path).
rootless.slirp is the older public face of this package (parse_network, start, NetworkHandle).
"""
