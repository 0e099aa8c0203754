"""What a :class:`~a2al_mcp.transport.quic_host.QuicHost` does with a connection whose stack
raised: its last words, the count and a rate-limited log line.

A connection whose stack raises (``receive_datagram``, ``handle_timer``, ``get_timer``,
``datagrams_to_send``, ``next_event``; any exception that
:func:`~a2al_mcp._containment.containable` allows, qh3's Rust panics included) is closed
(best effort, INTERNAL_ERROR) and the host forgets it at once, with a
:class:`~a2al_mcp.transport.quic_host.ConnectionGone`: it frees its slot, its deadline leaves
the timer, and it cannot stop the other connections' timers or sends. Counted
(``connections_failed``), logged at most once per :data:`LOG_INTERVAL_S`.

Sans-I/O: no clock (the times are the host's).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from aioquic.quic.packet import QuicErrorCode

from .._containment import containable
from .._types import Datagram
from .budget import TransportCounters

__all__ = ["LOG_INTERVAL_S", "Containment"]

LOG_INTERVAL_S: Final = 30.0
"""At most one log line per this many seconds for failing connections (all are counted)."""


class Containment:
    """Closes failing connections, counts them, and logs at most once per interval.

    Args:
        counters: where failures are counted (``connections_failed``).
        logger: the host's logger (the log line names the host).
    """

    __slots__ = ("_last_log", "_logger", "counters")

    def __init__(self, counters: TransportCounters, logger: logging.Logger) -> None:
        self.counters = counters
        self._logger = logger
        self._last_log: float | None = None

    def last_words(self, conn: Any, exc: BaseException, now: float) -> list[Datagram]:
        """``conn``'s stack raised ``exc`` (containable): count and log it, close it (best
        effort) and return what it has to send (its CONNECTION_CLOSE); nothing if that
        raised too (it is broken: it goes without a word). Re-raises cancellation and
        exit from the close."""
        self.counters.connections_failed += 1
        if self._last_log is None or now - self._last_log >= LOG_INTERVAL_S:
            self._last_log = now
            self._logger.warning("quic_host.connection_failed error=%r (closed; further "
                                 "failures counted, logged at most every %.0f s)", exc,
                                 LOG_INTERVAL_S, exc_info=exc)  # fmt: skip
        close = getattr(conn, "close", None)
        try:
            if close is not None:
                close(error_code=QuicErrorCode.INTERNAL_ERROR, reason_phrase="internal error")
            sent: list[Datagram] = conn.datagrams_to_send(now)
        except BaseException as again:
            if not containable(again):
                raise
            return []
        return sent
