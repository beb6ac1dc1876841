"""The public face of rootless's networking as the design names it (issue #2's layout, issue #7):
``parse_network``, ``start``, ``NetworkHandle`` and the slirp4netns API client.

The code lives in the rootless.network package (one module per concern: modes, the handle, each
helper, ports, /etc files); this module only re-exports its entry points so that ``from rootless
import slirp`` keeps working for scripts and notes written against the original layout. Code in
rootless itself imports rootless.network.
"""

from rootless.network.etc import host_address
from rootless.network.handle import NetworkHandle
from rootless.network.mode import DEFAULT_MODE, MODES, helpers_info, parse_network, start
from rootless.network.slirp4netns import API_SOCKET
from rootless.network.slirpapi import request as api_request

__all__ = [
    "API_SOCKET",
    "DEFAULT_MODE",
    "MODES",
    "NetworkHandle",
    "api_request",
    "helpers_info",
    "host_address",
    "parse_network",
    "start",
]
