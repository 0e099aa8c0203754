"""Which buckets of the routing table a DHT core refreshes, and when (a2al-wire §4.7).

a2ald's rule: a bucket is refilled when it is non-empty and holds fewer than K/2 verified
peers, nearest buckets (highest CPL) first, each bucket backing off 30 s → 2 min → 10 min →
15 min while its refills bring nobody new; a bucket that was healthy and declines starts
again at 30 s. Sans-I/O: :class:`BucketRefresher` names the buckets due; the core runs a
:class:`~a2al_mcp.dht.ops.BucketRefreshOp` for each and reports how it went.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..identity.aid import NodeId
from ..protocol import limits
from ..protocol.timers import REFRESH_COOLDOWNS_S
from .routing import RoutingTable

if TYPE_CHECKING:
    from .._random import Rng

__all__ = ["BucketRefresher", "random_id_in_bucket"]


class BucketRefresher:
    """The refresh schedule of each bucket of one routing table."""

    __slots__ = ("_futile", "_healthy", "_refresh_after", "_routing")

    def __init__(self, routing: RoutingTable) -> None:
        self._routing = routing
        self._healthy: set[int] = set()
        self._refresh_after: dict[int, float] = {}
        self._futile: dict[int, int] = {}
        """Per bucket: refreshes in a row that brought nobody new."""

    def due(self, now: float, limit: int) -> Iterator[tuple[int, int]]:
        """Up to ``limit`` buckets to refresh now, nearest first, as (index, size); each is
        marked as being refreshed when yielded (so it is not due again until its outcome)."""
        started = 0
        for i in range(256, -1, -1):
            size = self._routing.bucket_size(i)
            if size == 0:
                continue
            if self._routing.verified_in_bucket(i) >= limits.K // 2:
                self._healthy.add(i)
                continue
            if i in self._healthy:
                self._healthy.discard(i)
                self._futile[i] = 0
                self._refresh_after.pop(i, None)
            if self._refresh_after.get(i, 0.0) > now:
                continue
            if started >= limit:
                return
            self._refresh_after[i] = now + REFRESH_COOLDOWNS_S[-1]  # until the outcome is in
            yield i, size
            started += 1

    def done(self, bucket: int, size_before: int, now: float) -> None:
        """A refresh of ``bucket`` ended: back off unless it grew."""
        grew = self._routing.bucket_size(bucket) > size_before
        self._futile[bucket] = 0 if grew else self._futile.get(bucket, 0) + 1
        cooldown = min(self._futile[bucket], len(REFRESH_COOLDOWNS_S) - 1)
        self._refresh_after[bucket] = now + REFRESH_COOLDOWNS_S[cooldown]


def random_id_in_bucket(own_id: NodeId, i: int, rng: Rng) -> NodeId:
    """A random NodeID whose common prefix with ``own_id`` is exactly ``i`` bits (the
    target of a refresh of bucket ``i``; draws 32 bytes from ``rng``)."""
    own = int(own_id)
    rand = int.from_bytes(rng.bytes(32), "big")
    keep = ((1 << 256) - 1) ^ ((1 << (256 - i)) - 1)  # our first i bits
    flip = 1 << (255 - i)
    low = rand & (flip - 1)
    value = (own & keep) | ((own & flip) ^ flip) | low
    return NodeId(value.to_bytes(32, "big"))
