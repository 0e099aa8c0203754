"""Launcher for the reference daemon ``a2ald`` 0.3.5, used by the interop tests.

``a2ald`` always performs DNS, STUN and IP-echo probes that cannot be switched off, so it must
only ever run inside a *sealed* network namespace: only ``lo`` (and it must be up), no IPv4
routes, no IPv6 routes beyond loopback/link-local/multicast/reject entries, and a UDP
``connect()`` towards public addresses must fail.  :func:`check_sealed` verifies exactly that
and :meth:`A2aldPeer.start` calls it before *every* launch.

Typical use (inside ``unshare -n sh -c 'ip link set lo up && ...'``)::

    with A2aldNetwork(4) as net:
        ident = net.peers[1].identity_generate()

Linux only; standard library only.  This module is the harness's public face; the parts live in

- :mod:`.a2ald_errors`: the error classes;
- :mod:`.a2ald_sealed`: the sealed-namespace check (:func:`check_sealed`);
- :mod:`.a2ald_config`: the binary, ``config.toml`` and the daemon's environment;
- :mod:`.ports`: free loopback ports (:func:`free_port`);
- :mod:`.a2ald_api`: the REST client (:class:`A2aldClient`) and :func:`poll_until`;
- :mod:`.a2ald_peer`: one daemon process (:class:`A2aldPeer`);
- :mod:`.a2ald_network`: N peers bootstrapped from the first (:class:`A2aldNetwork`).
"""

from __future__ import annotations

from .a2ald_api import A2aldClient, poll_until
from .a2ald_config import A2ALD_VERSION, find_a2ald, render_config
from .a2ald_errors import A2aldApiError, A2aldError, A2aldStartError, NotSealed, NotSealedError
from .a2ald_network import A2aldNetwork
from .a2ald_peer import A2aldPeer
from .a2ald_sealed import PROBE_TARGETS, UdpProbe, check_sealed, sealed_problems
from .ports import free_port

__all__ = [
    "A2ALD_VERSION",
    "PROBE_TARGETS",
    "A2aldApiError",
    "A2aldClient",
    "A2aldError",
    "A2aldNetwork",
    "A2aldPeer",
    "A2aldStartError",
    "NotSealed",
    "NotSealedError",
    "UdpProbe",
    "check_sealed",
    "find_a2ald",
    "free_port",
    "poll_until",
    "render_config",
    "sealed_problems",
]
