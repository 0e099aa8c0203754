"""ICE (a2al-wire §6.3) with aioice, wire-compatible with a2ald's pion/ice agent.

* :mod:`~a2al_mcp.ice.candidates` — pion's candidate grammar both ways (pure);
* :mod:`~a2al_mcp.ice.credentials` — ufrag/password, pion's shape (pure);
* :mod:`~a2al_mcp.ice.config` — :class:`IceConfig`: STUN/TURN servers, limits, timeouts;
* :mod:`~a2al_mcp.ice.selected` — the selected pair and its kind (host/srflx/relay);
* :mod:`~a2al_mcp.ice.session` — :class:`IceSession`, the driver around
  ``aioice.Connection``: gather, trickle in, connect with a deadline, send/receive, close;
* :mod:`~a2al_mcp.ice.path` — :class:`IceDatagramPath`, a datagram core (QUIC) over the pair.

The signalling that carries credentials and candidates (``cred``/``cand``/``eoc`` frames)
is not here: this package takes and returns strings.  See docs/ice.md.
"""

from __future__ import annotations

from .candidates import UnsupportedCandidate, parse_candidate, render_candidate
from .config import IceConfig, TurnServer, parse_stun_url, parse_turn_url
from .credentials import IceCredentials
from .path import DatagramLink, IceDatagramPath
from .selected import PairKind, SelectedPair, pair_kind
from .session import IceSession, IceStatistics

__all__ = [
    "DatagramLink",
    "IceConfig",
    "IceCredentials",
    "IceDatagramPath",
    "IceSession",
    "IceStatistics",
    "PairKind",
    "SelectedPair",
    "TurnServer",
    "UnsupportedCandidate",
    "pair_kind",
    "parse_candidate",
    "parse_stun_url",
    "parse_turn_url",
    "render_candidate",
]
