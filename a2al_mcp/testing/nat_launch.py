"""Running a2ald in a NAT testbed host: the launch :class:`~.a2ald_peer.A2aldPeer` takes.

``A2aldPeer(data_dir, udp_port=4121, api_port=2121, launch=tb.a2ald_launch("pub1"))`` writes a
config for the host (listens on ``0.0.0.0``, the testbed's STUN/TURN, UPnP behind a UPnP
router, embedded hub and relay as a2ald's defaults), proves the testbed's outer namespace
sealed before every launch (the testbed's safety proof: the host itself has a default route,
towards ``inet``, which has none), starts the daemon in the host with the testbed's
``/etc/resolv.conf``, and opens its REST sockets in the host.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .nat_topology import TURN_ADDR, TURN_PORT, UPNP_KINDS

if TYPE_CHECKING:
    from .nat_testbed import NatTestbed

__all__ = ["TestbedLaunch"]


class TestbedLaunch:
    """Runs a daemon in one testbed host (an :class:`~.a2ald_peer.A2aldLaunch`)."""

    __test__ = False  # not a pytest test class

    def __init__(self, testbed: NatTestbed, host: str) -> None:
        self.testbed = testbed
        self.host = host
        plan = testbed.host(host)
        self.listen_host = plan.addr
        self.config: Mapping[str, Any] = {
            "listen_host": "0.0.0.0",
            "fallback_host": None,
            "min_observed_peers": None,
            "stun_urls": [f"stun:{TURN_ADDR}:{TURN_PORT}"] if testbed.topology.turn else [],
            "turn_servers": testbed.turn_servers,
            "disable_upnp": plan.kind not in UPNP_KINDS,
            "signal_listen_addr": "",
            "disable_relay": False,
        }

    def __repr__(self) -> str:
        return f"<TestbedLaunch host {self.host} ({self.listen_host})>"

    def prove_sealed(self) -> None:
        """Raise :class:`NotSealedError` unless the testbed's outer namespace is sealed."""
        self.testbed.prove_sealed()

    def popen(
        self,
        argv: Sequence[str],
        *,
        stdout: IO[Any],
        env: Mapping[str, str],
        cwd: Path,
        label: str,
    ) -> subprocess.Popen[bytes]:
        """Start the daemon in the host (recorded and stopped with the testbed)."""
        return self.testbed.popen(
            self.host, argv, env=env, cwd=cwd, stdout=stdout, stderr=subprocess.STDOUT, label=label
        )

    def client_context(self) -> contextlib.AbstractContextManager[None]:
        """REST sockets to the daemon's 127.0.0.1 must be created in the host's namespace."""
        return self.testbed.netns(self.host)
