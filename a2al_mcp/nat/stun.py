"""A sans-I/O STUN client (RFC 5389 Binding, RFC 5780 CHANGE-REQUEST) on the shared socket.

The codec is aioice's (:mod:`aioice.stun`): its attribute table already carries
CHANGE-REQUEST (0x0003), RESPONSE-ORIGIN (0x802B) and OTHER-ADDRESS (0x802C), so nothing is
added to it here. This module keeps the transactions: random 96-bit IDs from the injected
:class:`~a2al_mcp._random.Rng`, retransmission of the same bytes after ``rto``, ``2·rto``…
(RFC 5389 §7.2.1) bounded by ``tries``, and matching of answers by transaction ID only (an
answer to a CHANGE-REQUEST comes from another address by design). Datagrams the demux
(:func:`a2al_mcp.transport.demux.classify`) calls STUN are handed to :meth:`StunClient.receive`;
anything that is not the answer to a pending transaction is dropped and counted.

It reads no clock and sends nothing: requests are queued for :meth:`StunClient.datagrams`.
"""

from __future__ import annotations

import functools
import struct
from types import ModuleType
from typing import TYPE_CHECKING, Final

from .._dataclass import dataclass
from .._types import Addr, Datagram
from .addresses import normalise

if TYPE_CHECKING:
    from .._random import Rng

__all__ = ["CHANGE_IP", "CHANGE_PORT", "StunAnswer", "StunClient", "StunStats", "StunTimeout"]

CHANGE_IP: Final = 0x04
"""CHANGE-REQUEST flag: answer from the alternate IP (RFC 5780 §7.2)."""
CHANGE_PORT: Final = 0x02
"""CHANGE-REQUEST flag: answer from the alternate port."""
_TXID_LEN: Final = 12


@functools.cache
def _codec() -> ModuleType:
    """aioice's STUN codec, imported with the first transaction or answer: importing aioice
    loads all of it (ICE, dnspython: ~0.1 s and ~5 MiB), which a node with no STUN server
    configured never needs."""
    from aioice import stun

    return stun


@dataclass(frozen=True, slots=True)
class StunAnswer:
    """A Binding success or error response matched to one of our transactions."""

    txid: bytes
    server: Addr
    """Where the request went."""
    purpose: str
    """The caller's label for the transaction."""
    source: Addr
    """Where the answer came from (differs from ``server`` for a CHANGE-REQUEST)."""
    mapped: Addr | None
    """XOR-MAPPED-ADDRESS (MAPPED-ADDRESS from an RFC 3489 server); None on error."""
    other: Addr | None = None
    """OTHER-ADDRESS (RFC 5780): the server's alternate IP and port."""
    origin: Addr | None = None
    """RESPONSE-ORIGIN (RFC 5780)."""
    error: int | None = None
    """ERROR-CODE of an error response."""


@dataclass(frozen=True, slots=True)
class StunTimeout:
    """A transaction that got no answer after every try."""

    txid: bytes
    server: Addr
    purpose: str


@dataclass(slots=True)
class StunStats:
    sent: int = 0
    """Requests sent, retransmissions included."""
    retransmitted: int = 0
    answered: int = 0
    errors: int = 0
    """Error responses (counted in ``answered`` too)."""
    timeouts: int = 0
    garbage: int = 0
    """Datagrams that did not parse as STUN."""
    unmatched: int = 0
    """Well-formed STUN that answers none of our pending transactions (late, forged, a
    request or an indication)."""
    refused: int = 0
    """Requests not started: ``max_pending`` transactions already in flight."""


@dataclass(slots=True)
class _Pending:
    server: Addr
    purpose: str
    data: bytes
    deadline: float
    rto: float
    tries_left: int


class StunClient:
    """STUN Binding transactions, sans I/O."""

    def __init__(self, rng: Rng, *, rto_s: float = 0.5, tries: int = 3,
                 max_pending: int = 16) -> None:  # fmt: skip
        self._rng = rng
        self._rto = rto_s
        self._tries = tries
        self._max_pending = max_pending
        self._pending: dict[bytes, _Pending] = {}
        self._out: list[Datagram] = []
        self.stats = StunStats()

    def request(
        self, server: Addr, now: float, *, purpose: str = "", change: int = 0
    ) -> bytes | None:
        """Send a Binding request to ``server`` (with CHANGE-REQUEST ``change`` when non-zero:
        :data:`CHANGE_IP` | :data:`CHANGE_PORT`). Returns the transaction ID, or None (counted
        in ``refused``) when ``max_pending`` transactions are already in flight."""
        if len(self._pending) >= self._max_pending:
            self.stats.refused += 1
            return None
        txid = self._rng.bytes(_TXID_LEN)
        while txid in self._pending:  # pragma: no cover - 96 random bits
            txid = self._rng.bytes(_TXID_LEN)
        attrs = {"CHANGE-REQUEST": change} if change else {}
        stun = _codec()
        msg = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, transaction_id=txid,
                           attributes=attrs)  # fmt: skip
        data = bytes(msg)
        self._pending[txid] = _Pending(server, purpose, data, now + self._rto, self._rto,
                                       self._tries - 1)  # fmt: skip
        self._send(data, server)
        return txid

    def cancel(self, txid: bytes) -> bool:
        """Forget a transaction (its answer will count as unmatched)."""
        return self._pending.pop(txid, None) is not None

    def cancel_all(self) -> None:
        self._pending.clear()

    def receive(self, data: bytes, source: Addr, now: float) -> StunAnswer | None:
        """Hand in a datagram the demux classified as STUN. Returns the answer it completes,
        or None when it is garbage or answers nothing pending (both counted)."""
        stun = _codec()
        try:
            msg = stun.parse_message(data)
        except (ValueError, struct.error, IndexError):
            self.stats.garbage += 1
            return None
        p = self._pending.get(msg.transaction_id)
        if (
            p is None
            or msg.message_method != stun.Method.BINDING
            or msg.message_class not in (stun.Class.RESPONSE, stun.Class.ERROR)
        ):
            self.stats.unmatched += 1
            return None
        del self._pending[msg.transaction_id]
        self.stats.answered += 1
        a = msg.attributes
        if msg.message_class == stun.Class.ERROR:
            self.stats.errors += 1
            return StunAnswer(msg.transaction_id, p.server, p.purpose, normalise(source), None,
                              error=msg.error_code)  # fmt: skip
        mapped = a.get("XOR-MAPPED-ADDRESS") or a.get("MAPPED-ADDRESS")
        other = a.get("OTHER-ADDRESS") or a.get("CHANGED-ADDRESS")
        origin = a.get("RESPONSE-ORIGIN")
        return StunAnswer(
            msg.transaction_id, p.server, p.purpose, normalise(source),
            normalise(mapped) if mapped else None,
            other=normalise(other) if other else None,
            origin=normalise(origin) if origin else None,
        )  # fmt: skip

    def handle_timer(self, now: float) -> list[StunTimeout]:
        """Retransmit what is due; returns the transactions that ran out of tries."""
        timed_out: list[StunTimeout] = []
        for txid, p in list(self._pending.items()):
            if p.deadline > now:
                continue
            if p.tries_left <= 0:
                del self._pending[txid]
                self.stats.timeouts += 1
                timed_out.append(StunTimeout(txid, p.server, p.purpose))
                continue
            p.tries_left -= 1
            p.rto *= 2
            p.deadline = now + p.rto
            self.stats.retransmitted += 1
            self._send(p.data, p.server)
        return timed_out

    def get_timer(self) -> float | None:
        """The next retransmission or timeout."""
        return min((p.deadline for p in self._pending.values()), default=None)

    def pending(self) -> int:
        return len(self._pending)

    def datagrams(self) -> list[Datagram]:
        """Take the queued requests."""
        out, self._out = self._out, []
        return out

    def _send(self, data: bytes, server: Addr) -> None:
        self.stats.sent += 1
        self._out.append((data, server))
