"""The receive side of the endpoint's UDP socket: read a batch, hand each datagram to its core.

:meth:`DatagramReceiver.drain` is what :class:`~a2al_mcp.transport.endpoint.UdpEndpoint`'s
receive loop runs each time the socket is readable: it reads up to ``max_batch`` datagrams
(a GRO read, :func:`~a2al_mcp.transport.udp_offload.recv_coalesced`, counts all its
datagrams), classifies each one by its own first byte (QUIC and the DHT share the socket;
:func:`~a2al_mcp.transport.demux.classify`) and hands it to its core, all with the same
``now``. QUIC datagrams — the bulk of the traffic — go to a core that takes a whole batch
(``receive_datagrams``, as QuicHost has) in one call per wake-up. Echo probes are answered
through the sender when asked to; STUN messages go to the ``stun`` core when one is attached
(the node's NAT sensing, which this package does not know); what no core takes is dropped and
counted.

Exceptions of a core go to the endpoint's ``core_failed`` (counted and logged, or re-raised
if they are cancellation or exit); a failed read is counted and logged, and ends the batch,
but for the ICMP reports Windows makes about earlier sends (WSAECONNRESET, a
``ConnectionResetError``, and WSAENETRESET; :mod:`~a2al_mcp.transport.udp_icmp`): counted
apart and read past, each taking a place in the batch, so a socket that keeps failing cannot
hold the loop.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
from typing import Any, Final

from .._types import Addr, DatagramCore
from .demux import Kind, classify, echo_reply
from .udp_addr import normalise
from .udp_icmp import ICMP_RESET_ERRNOS
from .udp_offload import recv_coalesced
from .udp_send import DatagramSender, LogLimited

__all__ = ["RECV_BUFFER_BYTES", "DatagramReceiver"]

RECV_BUFFER_BYTES: Final = 65_535
"""Largest datagram read (a2ald's mux read buffer is 64 KiB)."""

_QUIC_FIXED_BIT: Final = 0x40
"""A datagram with this bit in byte 0 can be neither an echo probe nor STUN (demux.py)."""


class DatagramReceiver:
    """Reads batches from one UDP socket and hands each datagram to its core.

    Args:
        sock: the endpoint's bound, non-blocking socket (not owned: never closed here).
        family: its address family (a dual-stack socket's IPv4-mapped senders are reported
            to the cores as plain IPv4).
        gro: the socket has UDP GRO on (reads may return several datagrams).
        max_batch: datagrams read per :meth:`drain` (a GRO read may go past it).
        dht: core fed with DHT-classified datagrams (named ``"dht"``).
        quic: core fed with QUIC-classified datagrams (named ``"quic"``).
        stun: core fed with STUN-classified datagrams (named ``"stun"``); None drops them.
        echo: answer echo probes verbatim through ``sender``.
        sender: the socket's send side (for echo replies).
        core_failed: ``core_failed(exc, core_name)``, called inside ``except``.
        log_limited: the endpoint's rate-limited warning log.
    """

    __slots__ = (
        "_core_failed",
        "_dht",
        "_echo",
        "_log_limited",
        "_max_batch",
        "_normalise",
        "_quic",
        "_quic_batch",
        "_recvfrom",
        "_sender",
        "_stun",
        "batches",
        "dropped",
        "dropped_empty",
        "gro_reads",
        "received",
        "received_by_kind",
        "received_quic",
        "recv_errors",
        "recv_resets",
    )

    def __init__(
        self,
        sock: socket.socket,
        family: socket.AddressFamily,
        *,
        gro: bool,
        max_batch: int,
        dht: DatagramCore[object] | None,
        quic: DatagramCore[object] | None,
        echo: bool,
        sender: DatagramSender,
        core_failed: Callable[[BaseException, str], None],
        log_limited: LogLimited,
        stun: DatagramCore[object] | None = None,
    ) -> None:
        self._recvfrom: Callable[[int], tuple[Any, Any]] = (
            functools.partial(recv_coalesced, sock) if gro else sock.recvfrom
        )
        # on an IPv4 socket the address is already (host, port)
        self._normalise: Callable[[Any], Addr] = _as_addr if family == socket.AF_INET else normalise
        self._max_batch = max_batch
        self._dht = dht
        self._quic = quic
        self._stun = stun
        self._quic_batch: Callable[[list[tuple[bytes, Addr]], float], None] | None = getattr(
            quic, "receive_datagrams", None
        )  # a QUIC core that takes a whole batch (QuicHost) pays per batch, not per datagram
        self._echo = echo
        self._sender = sender
        self._core_failed = core_failed
        self._log_limited = log_limited
        self.received = 0
        """Datagrams read (including empty ones)."""
        self.received_by_kind = dict.fromkeys(Kind, 0)
        """Datagrams read by classification, but for those counted in ``received_quic``."""
        self.received_quic = 0
        """QUIC datagrams taken by the fast path (not in ``received_by_kind``)."""
        self.dropped = dict.fromkeys(Kind, 0)
        """Datagrams nobody consumed, by classification."""
        self.dropped_empty = 0
        """Empty datagrams read."""
        self.recv_errors = 0
        """Errors reported by a read (but for resets)."""
        self.recv_resets = 0
        """Reads that failed with ConnectionResetError (read past)."""
        self.batches = 0
        """Drains that read at least one datagram."""
        self.gro_reads = 0
        """Reads that returned several datagrams coalesced by the kernel."""

    def drain(self, now: float) -> int:
        """Read what is waiting (up to ``max_batch``), hand it to the cores with ``now``,
        and return how many datagrams were read (0: nothing to flush)."""
        recvfrom = self._recvfrom
        max_batch = self._max_batch
        dispatch = self._dispatch
        normalise = self._normalise
        batching = self._quic_batch is not None
        quic_batch: list[tuple[bytes, Addr]] = []
        count = 0
        while count < max_batch:
            try:
                data, raw_addr = recvfrom(RECV_BUFFER_BYTES)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in ICMP_RESET_ERRNOS:  # an ICMP report about an earlier send
                    self.recv_resets += 1
                    max_batch -= 1  # takes a place in the batch: one that keeps failing ends it
                    continue
                self.recv_errors += 1
                self._log_limited("recv", "endpoint.recv_error error=%r", exc)
                break
            if isinstance(data, list):  # a GRO run: several datagrams of one sender
                self.gro_reads += 1
                segments: list[bytes] | tuple[bytes] = data
            else:
                segments = (data,)
            count += len(segments)
            addr: Addr | None = None
            for d in segments:  # each by its own first byte: QUIC and DHT share a socket
                if d and d[0] & _QUIC_FIXED_BIT and batching:
                    # the bulk of the traffic: QUIC (no STUN/echo), handed over per batch
                    if addr is None:
                        addr = normalise(raw_addr)
                    quic_batch.append((d, addr))
                else:
                    dispatch(d, raw_addr, now)
        if quic_batch:
            self.received_quic += len(quic_batch)
            self._receive_quic_batch(quic_batch, now)
        if count:
            self.received += count
            self.batches += 1
        return count

    def _receive_quic_batch(self, batch: list[tuple[bytes, Addr]], now: float) -> None:
        assert self._quic_batch is not None
        try:
            self._quic_batch(batch, now)
        except BaseException as exc:  # the rest of the batch is lost, as if the network dropped it
            self._core_failed(exc, "quic")

    def _dispatch(self, data: bytes, raw_addr: Any, now: float) -> None:
        if data and data[0] & _QUIC_FIXED_BIT:  # QUIC, no STUN/echo
            quic = self._quic
            if quic is not None:
                self.received_quic += 1
                try:
                    quic.receive_datagram(data, self._normalise(raw_addr), now)
                except BaseException as exc:
                    self._core_failed(exc, "quic")
                return
        kind = classify(data)
        if kind is None:
            self.dropped_empty += 1
            return
        self.received_by_kind[kind] += 1
        if kind is Kind.DHT:
            core = self._dht
        elif kind is Kind.QUIC:
            core = self._quic
        elif kind is Kind.STUN:
            core = self._stun
        else:
            if kind is Kind.ECHO and self._echo:
                self._sender.send_raw(echo_reply(data), (raw_addr[0], raw_addr[1]))
            else:
                self.dropped[kind] += 1
            return
        if core is None:
            self.dropped[kind] += 1
            return
        try:
            core.receive_datagram(data, self._normalise(raw_addr), now)
        except BaseException as exc:
            self._core_failed(exc, kind.value)


def _as_addr(raw_addr: Any) -> Addr:
    return raw_addr  # type: ignore[no-any-return]  # already (host, port)
