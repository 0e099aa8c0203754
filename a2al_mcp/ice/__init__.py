"""ICE (a2al-wire §6.3) with aioice, wire-compatible with a2ald's pion/ice agent.

* :mod:`~a2al_mcp.ice.candidates` — pion's candidate grammar both ways (pure);
* :mod:`~a2al_mcp.ice.credentials` — ufrag/password, pion's shape (pure);
* :mod:`~a2al_mcp.ice.config` — :class:`IceConfig`: STUN/TURN servers, limits, timeouts;
* :mod:`~a2al_mcp.ice.selected` — the selected pair and its kind (host/srflx/relay);
* :mod:`~a2al_mcp.ice.session` — :class:`IceSession`, the driver around
  ``aioice.Connection``: gather, trickle in, connect with a deadline, send/receive, close;
* :mod:`~a2al_mcp.ice.path` — the node's QUIC service over the pair: :func:`dial_over_ice`,
  :func:`accept_over_ice`.

The signalling that carries credentials and candidates (``cred``/``cand``/``eoc`` frames)
is not here: this package takes and returns strings.  See docs/ice.md.
"""

from __future__ import annotations

from .candidates import UnsupportedCandidate, parse_candidate, render_candidate
from .config import IceConfig, TurnServer, ice_config, parse_stun_url, parse_turn_url
from .credentials import IceCredentials
from .path import DatagramLink, accept_over_ice, dial_over_ice, path_label
from .selected import PairKind, SelectedPair, pair_kind
from .session import IceSession, IceStatistics

__all__ = [
    "DatagramLink",
    "IceConfig",
    "IceCredentials",
    "IceSession",
    "IceStatistics",
    "PairKind",
    "SelectedPair",
    "TurnServer",
    "UnsupportedCandidate",
    "accept_over_ice",
    "dial_over_ice",
    "ice_config",
    "pair_kind",
    "parse_candidate",
    "parse_stun_url",
    "parse_turn_url",
    "path_label",
    "render_candidate",
]
