"""Starting the testbed's daemons (coturn, miniupnpd) and waiting until they answer.

Uses only the testbed's public API: each daemon is started with :meth:`NatTestbed.popen` (so
it is recorded and stopped with the testbed) and probed from inside the testbed.
"""

from __future__ import annotations

import socket
import subprocess
import time
from typing import TYPE_CHECKING, Final

from a2al_mcp._clock import SystemClock

from .nat_netns import NatTestbedError
from .nat_services import UPNP_HTTP_PORT, coturn_config, miniupnpd_config
from .nat_stun import stun_query
from .nat_topology import PUBLIC_NET, TURN_HOST, UPNP_KINDS

if TYPE_CHECKING:
    from .nat_testbed import NatTestbed

__all__ = ["start_daemons"]

_CLOCK: Final = SystemClock()
READY_TIMEOUT: Final = 15.0
_LABEL: Final = "svc:"


def start_daemons(tb: NatTestbed) -> None:
    """Start coturn and every miniupnpd of ``tb``; return once all of them answer."""
    logs = tb.state_dir / "logs"
    logs.mkdir()
    if tb.topology.turn:
        conf = tb.state_dir / "turnserver.conf"
        conf.write_text(coturn_config(tb.state_dir))
        with open(logs / "coturn.out", "wb") as out:
            tb.popen(
                TURN_HOST,
                ["turnserver", "-c", str(conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
                label=f"{_LABEL}coturn",
            )
    upnp = [p for p in tb.topology.hosts if p.kind in UPNP_KINDS]
    for index, plan in enumerate(upnp, start=1):
        assert plan.router is not None and plan.lan_net is not None
        state = tb.state_dir / plan.name
        state.mkdir()
        conf = state / "miniupnpd.conf"
        conf.write_text(
            miniupnpd_config(
                lan_net=plan.lan_net, igdv1=plan.kind == "upnp-igdv1", index=index, state=state
            )
        )
        with open(logs / f"miniupnpd-{plan.name}.log", "wb") as out:
            tb.popen(
                plan.router,
                ["miniupnpd", "-f", str(conf), "-d", "-P", str(state / "miniupnpd.pid")],
                stdout=out,
                stderr=subprocess.STDOUT,
                label=f"{_LABEL}miniupnpd:{plan.name}",
            )
    if tb.topology.turn:
        _wait_for_stun(tb)
    for plan in upnp:
        _wait_for_tcp(tb, plan.name, (plan.gateway, UPNP_HTTP_PORT), "miniupnpd")


def _wait_for_stun(tb: NatTestbed) -> None:
    deadline = _CLOCK.monotonic() + READY_TIMEOUT
    while True:
        with tb.netns("inet"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.bind((f"{PUBLIC_NET}.1", 0))
            if stun_query(sock, tb.stun, timeout=0.2, attempts=1) is not None:
                return
        _raise_if_a_daemon_died(tb)
        if _CLOCK.monotonic() > deadline:
            raise NatTestbedError(f"coturn did not answer STUN within {READY_TIMEOUT}s")


def _wait_for_tcp(tb: NatTestbed, host: str, addr: tuple[str, int], what: str) -> None:
    deadline = _CLOCK.monotonic() + READY_TIMEOUT
    while True:
        with tb.netns(host):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with sock:
            sock.settimeout(0.5)
            try:
                sock.connect(addr)
            except OSError:
                pass
            else:
                return
        _raise_if_a_daemon_died(tb)
        if _CLOCK.monotonic() > deadline:
            raise NatTestbedError(f"{what} of {host} not listening within {READY_TIMEOUT}s")
        time.sleep(0.05)


def _raise_if_a_daemon_died(tb: NatTestbed) -> None:
    for rec in tb.records():
        if rec.label.startswith(_LABEL) and not rec.alive:
            raise NatTestbedError(
                f"{rec.label} (pid {rec.pid}) exited; logs in {tb.state_dir / 'logs'}"
                " (keep_state=True keeps them)"
            )
