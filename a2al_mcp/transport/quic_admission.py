"""Which INITIALs get a connection on a :class:`~a2al_mcp.transport.quic_host.QuicHost`, the
stateless Retry, and the inbound handshakes in progress (issue 14, the resource budget).

An INITIAL gets a connection only within the limits of
:class:`~a2al_mcp.transport.budget.Admission` — live connections in total (an idle accepted
connection may be evicted to make room, through the ``evict`` callback), per source IPv4
address or IPv6 /64 (a datagram path, :mod:`~a2al_mcp.transport.quic_paths`, is a source
of its own), handshakes in progress in total and per source. With more than
``retry_above_half_open`` handshakes in progress a client must first prove its address: it
gets a stateless QUIC Retry (what aioquic's ``asyncio/server.py`` does, here with a keyed
token from :class:`~a2al_mcp.transport.budget.RetryTokens`), and its next INITIAL, carrying
the token, gets a connection whose transport parameters name the original and the Retry
connection IDs. An inbound connection whose handshake has not completed within
``handshake_timeout_s`` is dropped without a word (it may never have been a client).
Every refusal is counted in :class:`~a2al_mcp.transport.budget.TransportCounters`.

Sans-I/O: no clock (the times are the host's), no randomness of its own (Retry connection
IDs and the token key come from the injected ``rng``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

from aioquic.quic.packet import encode_quic_retry

from .._dataclass import dataclass
from .._random import Rng
from .._types import Addr, Datagram
from .budget import Admission, RetryTokens, TransportCounters, ip_key
from .quic_paths import is_path_addr

__all__ = ["SMALLEST_INITIAL", "Admit", "InboundGate"]

SMALLEST_INITIAL: Final = 1200
"""RFC 9000 §14.1: a client's INITIAL datagram is at least this long."""

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class Admit:
    """An INITIAL admitted: the host builds its connection with these."""

    original_cid: bytes
    """The client's first destination connection ID (before any Retry)."""
    retry_cid: bytes | None
    """After a Retry, the Retry's source connection ID; else None."""
    key: str
    """:func:`~a2al_mcp.transport.budget.ip_key` of the client."""


@dataclass(slots=True)
class _Inbound:
    key: str
    """:func:`~a2al_mcp.transport.budget.ip_key` of the client."""
    deadline: float
    half_open: bool = True


class InboundGate(Generic[C]):
    """Admission of INITIALs, Retry, and the inbound connections from INITIAL until they
    are released (their source slot and, while half-open, their handshake slot).

    Args:
        admission: the limits and what they hold (the host's ``admission``).
        counters: where refusals are counted.
        rng: source of Retry connection IDs and of the token key.
        cid_length: length of the connection IDs our connections issue.
        handshake_timeout_s: an inbound connection not authenticated by then expires.
        live: the host's connections that count against ``admission.connections``.
        evict: called when ``connections`` is reached; closes an idle connection and
            returns True, or returns False.
    """

    __slots__ = ("_cid_length", "_deadlines", "_evict", "_handshake_timeout", "_inbound",
                 "_live", "_retry", "_rng", "admission", "counters")  # fmt: skip

    def __init__(
        self,
        admission: Admission,
        counters: TransportCounters,
        *,
        rng: Rng,
        cid_length: int,
        handshake_timeout_s: float,
        live: Callable[[], int],
        evict: Callable[[], bool] | None,
    ) -> None:
        self.admission = admission
        self.counters = counters
        self._rng = rng
        self._retry = RetryTokens(rng)
        self._cid_length = cid_length
        self._handshake_timeout = handshake_timeout_s
        self._live = live
        self._evict = evict
        self._inbound: dict[C, _Inbound] = {}
        self._deadlines: deque[tuple[float, C]] = deque()

    def admit(self, header: Any, addr: Addr, now: float) -> Admit | Datagram | None:
        """Decide on an INITIAL (a parsed long header, for no known connection): admitted,
        a Retry datagram to send to ``addr``, or None (refused, counted)."""
        dcid: bytes = header.destination_cid
        odcid, rscid = dcid, None
        if header.token:
            # only our Retry hands out tokens (we send no NEW_TOKEN): without a valid one
            # the client's transport-parameter checks would fail anyway
            valid = self._retry.validate(header.token, addr, dcid, now)
            if valid is None:
                self.counters.retry_tokens_invalid += 1
                return None
            odcid, rscid = valid, dcid
        elif self.admission.needs_retry():
            return self._retry_datagram(header, addr, now)
        key = addr[0] if is_path_addr(addr) else ip_key(addr)  # a path is its own source
        if self._live() >= self.admission.connections and self._evict is not None:
            self._evict()
        if not self.admission.check(key, self._live()):
            return None
        return Admit(odcid, rscid, key)

    def _retry_datagram(self, header: Any, addr: Addr, now: float) -> Datagram:
        """A stateless Retry (RFC 9000 §8.1.2): the client must come back with the token."""
        scid = self._rng.bytes(self._cid_length)
        token = self._retry.create(addr, header.destination_cid, scid, now)
        packet = encode_quic_retry(
            version=header.version,
            source_cid=scid,
            destination_cid=header.source_cid,
            original_destination_cid=header.destination_cid,
            retry_token=token,
        )
        self.counters.retries_sent += 1
        return (packet, addr)

    def opened(self, conn: C, key: str, now: float) -> None:
        """``conn`` was built for an admitted INITIAL from ``key``: it holds its slots and
        is half-open until settled, or expires after the handshake timeout."""
        self.admission.opened(key)
        deadline = now + self._handshake_timeout
        self._inbound[conn] = _Inbound(key, deadline)
        self._deadlines.append((deadline, conn))

    def settle(self, conn: C) -> None:
        """``conn`` is no longer half-open (authenticated, closing or gone)."""
        inbound = self._inbound.get(conn)
        if inbound is not None and inbound.half_open:
            inbound.half_open = False
            self.admission.established(inbound.key)

    def release(self, conn: C) -> None:
        """``conn`` is closing or gone: settled, and its source slot is free."""
        self.settle(conn)
        inbound = self._inbound.pop(conn, None)
        if inbound is not None:
            self.admission.closed(inbound.key)

    def expired(self, now: float) -> list[C]:
        """The connections still half-open at their handshake deadline, ``now`` or before
        (each is given once)."""
        deadlines = self._deadlines
        out: list[C] = []
        while deadlines and deadlines[0][0] <= now:
            _, conn = deadlines.popleft()
            inbound = self._inbound.get(conn)
            if inbound is not None and inbound.half_open:
                out.append(conn)
        return out

    def next_deadline(self) -> float | None:
        """The earliest handshake deadline of a connection still half-open."""
        deadlines = self._deadlines
        while deadlines and (
            (inbound := self._inbound.get(deadlines[0][1])) is None or not inbound.half_open
        ):
            deadlines.popleft()  # settled or gone: no deadline any more
        return deadlines[0][0] if deadlines else None
