"""The QUIC settings both stacks (aioquic and qh3) share on the A2AL data plane (a2al-wire §5.1).

:mod:`~a2al_mcp.transport.tls` builds aioquic's ``QuicConfiguration`` from them and
:mod:`~a2al_mcp.transport.tls_qh3` qh3's, so a connection offers the same ALPN and windows
whichever stack runs it.
"""

from __future__ import annotations

from typing import Final

from ..protocol.timers import QUIC_IDLE_TIMEOUT_S

__all__ = ["ALPN", "IDLE_TIMEOUT_S", "MAX_DATA", "MAX_DATAGRAM_SIZE", "MAX_STREAM_DATA"]

ALPN: Final = "a2al-quic-1"
"""The one ALPN protocol of the A2AL data plane; both sides must offer it."""

IDLE_TIMEOUT_S: Final = QUIC_IDLE_TIMEOUT_S
"""a2ald's QUIC max idle timeout (§5.1; ``quic.idle_timeout_s`` tunes it per node)."""

MAX_DATAGRAM_SIZE: Final = 1200
"""QUIC datagram size: the smallest every path must carry (RFC 9000 §14)."""

MAX_DATA: Final = 32 * 1024 * 1024
"""Connection flow-control window (aioquic's 1 MiB default halves bulk throughput)."""

MAX_STREAM_DATA: Final = 8 * 1024 * 1024
"""Per-stream flow-control window."""
