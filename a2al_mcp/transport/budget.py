"""The transport's resource budget: counters and small decisions the cores are handed. Sans-I/O.

In the spirit of go-libp2p's resource manager (one scope per node, per peer, per connection,
per stream; a reservation either fits or is refused, and every refusal is counted under the
limit that refused it) and of quic-go's limits (receive windows that grow only as the
application reads). The numbers come from :class:`~a2al_mcp.config.LimitsConfig`; nothing
here reads a clock or a socket — times are arguments, randomness comes from an injected
:class:`~a2al_mcp._random.Rng`.

* :func:`ip_key` — the unit of per-source limits: an IPv4 address or an IPv6 /64.
* :class:`Admission` — what :class:`~a2al_mcp.transport.quic_host.QuicHost` checks before it
  gives a client INITIAL a connection: live connections (total and per source),
  handshakes in progress (total and per source), and whether the client must first prove
  its address with a QUIC Retry.
* :class:`RetryTokens` — keyed (HMAC-SHA256, random per-node key) stateless Retry tokens
  carrying the client address, the original and the Retry connection IDs, and the time.
* :class:`ReceiveBudget` — bytes received from peers and not read yet by the application,
  per stream and per connection, with the service-wide total for the statistics.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from typing import TYPE_CHECKING, Final

from .._dataclass import dataclass
from .._lazy import lazy_module
from .._random import Rng
from .._types import Addr

if TYPE_CHECKING:
    import hashlib
    import hmac
else:  # loaded with the first Retry token (they pull OpenSSL's _hashlib: ~0.65 MiB, issue 15)
    hashlib = lazy_module("hashlib")
    hmac = lazy_module("hmac")

__all__ = [
    "Admission",
    "ReceiveBudget",
    "RetryTokens",
    "TransportCounters",
    "ip_key",
]

RETRY_TOKEN_LIFETIME_S: Final = 10.0
"""A Retry token is accepted this long after it was issued (clients answer within an RTT)."""
_MAC_LEN: Final = 16
_TOKEN_HEAD: Final = struct.Struct("!dB")  # issued at, original DCID length


def ip_key(addr: Addr) -> str:
    """The source unit of per-IP limits: the IPv4 address, or the IPv6 /64 (an IPv4-mapped
    IPv6 address counts as its IPv4 address). Unparsable hosts count as themselves."""
    host = addr[0].split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


@dataclass(slots=True)
class TransportCounters:
    """What the transport refused, evicted and dropped, by the limit responsible."""

    refused_connections: int = 0
    """INITIALs refused: ``limits.connections`` reached and nothing idle to evict."""
    refused_per_ip: int = 0
    """INITIALs refused: ``limits.connections_per_ip`` reached for their source."""
    refused_half_open: int = 0
    """INITIALs refused: ``limits.half_open`` reached."""
    refused_half_open_per_ip: int = 0
    """INITIALs refused: ``limits.half_open_per_ip`` reached for their source."""
    refused_per_aid: int = 0
    """Authenticated connections closed: ``limits.connections_per_aid`` reached."""
    refused_streams: int = 0
    """Peer streams refused: ``limits.streams_per_connection`` reached (or no service)."""
    retries_sent: int = 0
    """QUIC Retry packets sent (more than ``limits.retry_above_half_open`` handshakes)."""
    retry_tokens_invalid: int = 0
    """INITIALs dropped for a bad, expired or misaddressed Retry token."""
    handshake_timeouts: int = 0
    """Inbound connections closed for not completing the handshake in time."""
    evicted_idle: int = 0
    """Idle accepted connections closed to make room (``limits.idle_evict_s``)."""
    flow_control_violations: int = 0
    """Connections closed because the peer sent beyond the window it was given."""
    writes_dropped: int = 0
    """Writes to a stream the peer had stopped or reset (dropped, not raised)."""
    reset_memory: int = 0
    """Peer streams reset because their data would take the node's unread bytes past
    ``limits.receive_buffer_total``."""
    connections_failed: int = 0
    """Connections whose QUIC stack raised (a bug or a panic): closed and forgotten."""
    paths_failed: int = 0
    """Datagram paths other than the socket (ICE pairs) that failed under their connection
    (the link closed or raised): the connection was closed with it."""
    path_misrouted: int = 0
    """Datagrams dropped for crossing paths: from the socket to a connection bound to
    another path, from a path to a connection not bound to it, or for a path gone."""
    path_dropped_full: int = 0
    """Datagrams for a path whose send queue was full (dropped, as a full socket buffer)."""


class Admission:
    """Inbound connection and handshake accounting per source (:func:`ip_key`).

    A connection is *half-open* from its first INITIAL until its handshake completes (or
    it is closed); it counts against the per-source connection limit until it is gone.
    """

    def __init__(
        self,
        *,
        connections: int,
        connections_per_ip: int,
        half_open: int,
        half_open_per_ip: int,
        retry_above_half_open: int,
        counters: TransportCounters,
    ) -> None:
        self.connections = connections
        self.connections_per_ip = connections_per_ip
        self.half_open = half_open
        self.half_open_per_ip = half_open_per_ip
        self.retry_above = retry_above_half_open
        self.counters = counters
        self._per_ip: Counter[str] = Counter()
        self._half_per_ip: Counter[str] = Counter()
        self.half_open_count = 0

    def needs_retry(self) -> bool:
        """Whether a client without a valid token must first be sent a Retry."""
        return self.half_open_count > self.retry_above

    def check(self, key: str, live: int) -> bool:
        """Whether an INITIAL from ``key`` may get a connection (``live`` connections now,
        after any eviction). Counts the refusal if not."""
        c = self.counters
        if live >= self.connections:
            c.refused_connections += 1
        elif self._per_ip[key] >= self.connections_per_ip:
            c.refused_per_ip += 1
        elif self.half_open_count >= self.half_open:
            c.refused_half_open += 1
        elif self._half_per_ip[key] >= self.half_open_per_ip:
            c.refused_half_open_per_ip += 1
        else:
            return True
        return False

    def opened(self, key: str) -> None:
        self._per_ip[key] += 1
        self._half_per_ip[key] += 1
        self.half_open_count += 1

    def established(self, key: str) -> None:
        """The handshake of a connection from ``key`` completed (or it was closed)."""
        self.half_open_count -= 1
        _decrement(self._half_per_ip, key)

    def closed(self, key: str) -> None:
        """A connection from ``key`` is gone (call :meth:`established` first if it was
        half-open)."""
        _decrement(self._per_ip, key)


def _decrement(counter: Counter[str], key: str) -> None:
    n = counter[key] - 1
    if n > 0:
        counter[key] = n
    else:
        counter.pop(key, None)


class RetryTokens:
    """Stateless Retry tokens (RFC 9000 §8.1.2): ``issued_at ‖ len ‖ original DCID ‖ MAC``,
    the MAC (HMAC-SHA256, truncated to 16 bytes, key drawn from ``rng`` once) binding the
    client's address, both connection IDs and the time. Nothing is stored per client."""

    def __init__(self, rng: Rng, *, lifetime_s: float = RETRY_TOKEN_LIFETIME_S) -> None:
        self._key = rng.bytes(32)
        self.lifetime_s = lifetime_s

    def _mac(self, issued: bytes, addr: Addr, odcid: bytes, rscid: bytes) -> bytes:
        host, port = addr[0], addr[1]
        msg = b"|".join((issued, host.encode(), str(port).encode(), odcid, rscid))
        return hmac.new(self._key, msg, hashlib.sha256).digest()[:_MAC_LEN]

    def create(self, addr: Addr, odcid: bytes, rscid: bytes, now: float) -> bytes:
        """A token for the client at ``addr`` whose first INITIAL went to ``odcid`` and
        that we send a Retry with source connection ID ``rscid``."""
        head = _TOKEN_HEAD.pack(now, len(odcid))
        return head + odcid + self._mac(head, addr, odcid, rscid)

    def validate(self, token: bytes, addr: Addr, rscid: bytes, now: float) -> bytes | None:
        """The original DCID if ``token`` was made by :meth:`create` for ``addr`` and
        ``rscid`` (the DCID of the client's new INITIAL) within the lifetime; else None."""
        size = _TOKEN_HEAD.size
        if len(token) < size + _MAC_LEN:
            return None
        issued_at, n = _TOKEN_HEAD.unpack_from(token)
        if len(token) != size + n + _MAC_LEN:
            return None
        odcid, mac = token[size : size + n], token[size + n :]
        if not hmac.compare_digest(mac, self._mac(token[:size], addr, odcid, rscid)):
            return None
        if not 0.0 <= now - issued_at <= self.lifetime_s:
            return None
        return odcid


class ReceiveBudget:
    """Bytes delivered to the application and not read yet, per stream and per connection.

    The flow-control adapters (:mod:`~a2al_mcp.transport.flow`) ask it how much the
    application still holds before they give the peer more credit, so a peer can have at
    most ``stream_window`` unread bytes in flight per stream and ``connection_window`` per
    connection, as quic-go does. ``total`` (shared by every connection of a service) is the
    statistics' ``buffered_bytes``.
    """

    __slots__ = (
        "_held",
        "_unannounced",
        "connection_window",
        "held_total",
        "shared",
        "stream_window",
    )

    def __init__(self, *, stream_window: int, connection_window: int,
                 shared: list[int] | None = None) -> None:  # fmt: skip
        self.stream_window = stream_window
        self.connection_window = connection_window
        self._held: dict[int, int] = {}
        self.held_total = 0
        self._unannounced = 0
        self.shared = shared if shared is not None else [0]
        """One-element list shared by the connections of a service: their total."""

    def held(self, stream_id: int) -> int:
        return self._held.get(stream_id, 0)

    def hold(self, stream_id: int, n: int) -> None:
        """``n`` more bytes of ``stream_id`` wait for the application."""
        if n:
            self._held[stream_id] = self._held.get(stream_id, 0) + n
            self.held_total += n
            self.shared[0] += n

    def release(self, stream_id: int, n: int) -> None:
        """The application read (or dropped) ``n`` bytes of ``stream_id``."""
        held = self._held.get(stream_id, 0)
        n = min(n, held)
        if not n:
            return
        if held == n:
            del self._held[stream_id]
        else:
            self._held[stream_id] = held - n
        self.held_total -= n
        self.shared[0] -= n
        self._unannounced += n

    def take_due(self) -> bool:
        """Whether enough was read since the last call that the peer should hear of new
        credit (a quarter of the smaller window, as quic-go's update threshold)."""
        if self._unannounced * 4 >= min(self.stream_window, self.connection_window):
            self._unannounced = 0
            return True
        return False

    def over_total(self, n: int, total: int) -> bool:
        """Whether ``n`` more bytes would take the unread bytes of every connection that
        shares :attr:`shared` past ``total``."""
        return self.shared[0] + n > total

    def drop(self, stream_id: int) -> None:
        """Forget everything held for ``stream_id`` (closed, reset)."""
        self.release(stream_id, self._held.get(stream_id, 0))

    def drop_all(self) -> None:
        for sid in list(self._held):
            self.drop(sid)

    def full(self) -> bool:
        """Whether some stream or the connection holds half its window or more (the qh3
        adapter stops taking data from its core then)."""
        if self.held_total * 2 >= self.connection_window:
            return True
        limit = self.stream_window // 2
        return any(v >= limit for v in self._held.values())
