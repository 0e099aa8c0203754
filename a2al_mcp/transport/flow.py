"""Receive windows that follow the application's reads, on both QUIC stacks. Core.

Both aioquic and qh3 give the peer new flow-control credit as soon as they *deliver* data
(aioquic even doubles its windows whenever half is used), so their windows bound nothing
once a connection delivers events into an application buffer that nobody reads. Here, as in
quic-go, credit follows what the application has read: a stream's receive window is
``stream_receive_buffer`` bytes past what the application consumed, the connection's
``connection_receive_buffer`` past what it consumed over all streams (bytes held in a
:class:`~a2al_mcp.transport.peer.PeerStream` buffer count as not consumed; everything else
the stack delivered — protocol frames, data of refused streams — counts as consumed at once).
A peer that sends beyond the window it was given breaks the protocol: both stacks close
the connection with FLOW_CONTROL_ERROR (0x3); nothing beyond a window is held.

* **aioquic** — :class:`FlowAioquicConnection` (our
  :class:`~a2al_mcp.transport.tls.A2ALQuicConnection` with two write hooks): before aioquic
  writes MAX_STREAM_DATA / MAX_DATA it sets the limits from the
  :class:`~a2al_mcp.transport.budget.ReceiveBudget`, and stops aioquic's doubling. Exact:
  unread bytes per stream never exceed the stream window.
* **qh3** — the window is inside its Rust core, which grants credit when Python *pops* the
  data (``next_event``), one queue for all streams. :func:`adopt_qh3` makes the core's
  windows half the budgets and stops popping (for that connection only) while any stream
  holds half its budget or the connection half of its own; it pops again as the
  application reads (:func:`after_read`). Unread bytes per stream stay under the stream
  budget; the core holds at most half a budget more.

Private names used (checked against aioquic 1.7.2 and qh3 2.1.0; tests/hostile/
test_transport_budget.py pins each one):

* aioquic: ``QuicConnection._write_stream_limits`` and ``_write_connection_limits``
  (overridden), ``_local_max_data`` (``Limit``: ``value``, ``used``),
  ``_local_max_streams_bidi`` (``Limit``; set to ``streams_per_connection`` before the
  handshake), ``_streams``, ``QuicStream.max_stream_data_local``,
  ``QuicStreamReceiver.highest_offset`` / ``_buffer_start`` (``starting_offset()``) /
  ``is_finished``;
* qh3: ``QuicConnection._drain_core`` (overridden), ``_core`` (its ``state``),
  ``_close_event``, ``_retry_source_connection_id`` (set on a server connection made after
  a Retry, before its core exists).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from . import tls
from .budget import ReceiveBudget
from .tls_qh3 import AVAILABLE as QH3_AVAILABLE

if TYPE_CHECKING:
    from aioquic.quic.packet_builder import QuicPacketBuilder
    from aioquic.quic.recovery import QuicPacketSpace
    from aioquic.quic.stream import QuicStream

__all__ = ["FlowAioquicConnection", "adopt_qh3", "after_read", "set_retry_source"]

_CONNECTED: Final = "connected"
"""qh3's core state once the handshake is done and until the connection closes."""


class FlowAioquicConnection(tls.A2ALQuicConnection):
    """:class:`~a2al_mcp.transport.tls.A2ALQuicConnection` whose receive windows follow
    the application's reads (:attr:`a2al_budget`; None: aioquic's own policy)."""

    a2al_budget: ReceiveBudget | None = None

    def a2al_limit_streams(self, n: int) -> None:
        """Let the peer open at most ``n`` concurrent bidirectional streams (before the
        handshake: it is a transport parameter)."""
        limit = self._local_max_streams_bidi
        limit.value = limit.sent = n

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream
    ) -> None:
        budget = self.a2al_budget
        if budget is None or not stream.max_stream_data_local:
            super()._write_stream_limits(builder, space, stream)
            return
        receiver = stream.receiver
        if not receiver.is_finished:
            window = budget.stream_window
            consumed = receiver.starting_offset() - budget.held(stream.stream_id or 0)
            target = consumed + window
            if target - stream.max_stream_data_local >= window // 4:
                stream.max_stream_data_local = target
        # aioquic doubles the limit when half is used; hide the offset from that check
        highest, receiver.highest_offset = receiver.highest_offset, 0
        try:
            super()._write_stream_limits(builder, space, stream)
        finally:
            receiver.highest_offset = highest

    def _write_connection_limits(self, builder: QuicPacketBuilder, space: QuicPacketSpace) -> None:
        budget = self.a2al_budget
        if budget is None:
            super()._write_connection_limits(builder, space)
            return
        max_data = self._local_max_data
        undelivered = 0
        for stream in self._streams.values():
            receiver = stream.receiver
            if not receiver.is_finished:
                undelivered += receiver.highest_offset - receiver.starting_offset()
        consumed = max_data.used - undelivered - budget.held_total
        window = budget.connection_window
        if consumed + window - max_data.value >= window // 4:
            max_data.value = consumed + window
        used, max_data.used = max_data.used, 0  # no doubling (as above)
        try:
            super()._write_connection_limits(builder, space)
        finally:
            max_data.used = used


def aioquic_windows(configuration: Any, budget: ReceiveBudget) -> None:
    """Set an aioquic ``QuicConfiguration``'s initial windows to the budget's."""
    configuration.max_data = budget.connection_window
    configuration.max_stream_data = budget.stream_window


if QH3_AVAILABLE:
    from .tls_qh3 import Qh3ClientConnection, Qh3ServerConnection

    class _Qh3Gate:
        """The qh3 half: pop the core's events only while the budget has room."""

        a2al_budget: ReceiveBudget | None = None
        a2al_deferred = False

        def _drain_core(self) -> None:
            budget = self.a2al_budget
            if budget is not None and budget.full() and self._a2al_core_open():
                self.a2al_deferred = True
                return
            self.a2al_deferred = False
            super()._drain_core()  # type: ignore[misc]

        def _a2al_core_open(self) -> bool:
            core = getattr(self, "_core", None)
            return (
                core is not None
                and getattr(self, "_close_event", None) is None
                and core.state == _CONNECTED
            )

    class FlowQh3Client(_Qh3Gate, Qh3ClientConnection):
        """A :class:`~a2al_mcp.transport.tls_qh3.Qh3ClientConnection` with the gate."""

    class FlowQh3Server(_Qh3Gate, Qh3ServerConnection):
        """A :class:`~a2al_mcp.transport.tls_qh3.Qh3ServerConnection` with the gate."""


def adopt_qh3(conn: Any, budget: ReceiveBudget) -> None:
    """Give a fresh qh3 connection (from the tls_qh3 factories, before it has a core) the
    budget: core windows of half the budgets, and the gate."""
    config = conn.configuration
    config.max_stream_data = max(budget.stream_window // 2, 16384)
    config.max_data = max(budget.connection_window // 2, 16384)
    conn.__class__ = FlowQh3Client if config.is_client else FlowQh3Server
    conn.a2al_budget = budget


def set_retry_source(conn: Any, retry_source_connection_id: bytes) -> None:
    """A qh3 server connection made after a Retry: its transport parameters must carry
    the Retry's source connection ID (and its address counts as validated)."""
    conn._retry_source_connection_id = retry_source_connection_id


def after_read(conn: Any, budget: ReceiveBudget) -> bool:
    """The application read from a connection; True if the driver should take events
    and send (new credit is due, or the qh3 gate reopened)."""
    if getattr(conn, "a2al_deferred", False):
        if budget.full():
            return False
        conn._drain_core()
        return True
    return budget.take_due()
