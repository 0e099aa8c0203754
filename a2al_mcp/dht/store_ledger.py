"""The records a :class:`~a2al_mcp.dht.store.RecordStore` holds and their accounting: keys
and their slots, the expiry heap, the orders fair eviction reads (records and keys not vouched
for, oldest registration first), running totals and lifetime counters. Sans-I/O.

It files, replaces, evicts and purges records exactly as it is told; which record to store
and which to evict for room is decided by :mod:`~a2al_mcp.dht.store` and
:mod:`~a2al_mcp.dht.store_room`.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Hashable
from typing import Final

from ..protocol.records import Category
from .store_slots import Entry, KeyRecords, Ref, rank

__all__ = ["COUNTERS", "StoreLedger"]

HEAP_SLACK: Final = 1024
"""The expiry heap is rebuilt when it holds this many more entries than twice the keys."""
COUNTERS: Final = ("stored", "stale", "policy", "invalid", "evicted", "expired",
                   "keys", "records", "bytes", "per_key")  # fmt: skip
"""Lifetime counters: put outcomes, evictions and expiries, and refusals per cap."""


class StoreLedger:
    """Held records by key, with the totals and orders the store's caps are checked against."""

    __slots__ = ("buckets", "bytes", "counts", "heap", "plain", "plain_keys", "records",
                 "vouched")  # fmt: skip

    def __init__(self) -> None:
        self.buckets: dict[bytes, KeyRecords] = {}
        self.heap: list[tuple[int, bytes]] = []
        """(a key's next_expiry, key); stale entries are skipped when popped."""
        self.plain: OrderedDict[Ref, None] = OrderedDict()
        """Records not vouched for, oldest registration first."""
        self.plain_keys: OrderedDict[bytes, None] = OrderedDict()
        """Keys holding no vouched record, in the order they became so."""
        self.records = 0
        self.bytes = 0
        self.vouched = 0
        self.counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    # -- filing -----------------------------------------------------------------------

    def hold(
        self, k: bytes, bucket: KeyRecords, category: Category, slot: Hashable, entry: Entry
    ) -> None:
        """Account for ``entry`` just placed in ``bucket``."""
        self.records += 1
        self.bytes += entry.size
        bucket.count += 1
        if entry.vouched:
            self.vouched += 1
            bucket.vouched += 1
            self.plain_keys.pop(k, None)
        else:
            self.plain[(k, category, slot)] = None

    def replace(
        self,
        k: bytes,
        bucket: KeyRecords,
        category: Category,
        slot: Hashable,
        prev: Entry,
        entry: Entry,
    ) -> None:
        """Account for ``entry`` having replaced ``prev`` in its slot (same registration:
        an unvouched one keeps its place in the order)."""
        self.bytes += entry.size - prev.size
        if entry.vouched and not prev.vouched:
            self.plain.pop((k, category, slot), None)
            self.vouched += 1
            bucket.vouched += 1
            self.plain_keys.pop(k, None)

    def unhold(
        self, k: bytes, bucket: KeyRecords, category: Category, slot: Hashable, entry: Entry
    ) -> None:
        """Account for ``entry`` just removed from ``bucket`` (the caller removed it)."""
        self.records -= 1
        self.bytes -= entry.size
        bucket.count -= 1
        if entry.vouched:
            self.vouched -= 1
            bucket.vouched -= 1
            if bucket.vouched == 0:
                self.plain_keys[k] = None
        else:
            self.plain.pop((k, category, slot), None)

    def vouch(
        self, k: bytes, bucket: KeyRecords, category: Category, slot: Hashable, entry: Entry
    ) -> None:
        """Mark a held record as vouched for (it leaves the eviction orders)."""
        if entry.vouched:
            return
        self.plain.pop((k, category, slot), None)
        entry.vouched = True
        self.vouched += 1
        bucket.vouched += 1
        self.plain_keys.pop(k, None)

    # -- removing ---------------------------------------------------------------------

    def evict(
        self, k: bytes, bucket: KeyRecords, category: Category, slot: Hashable | None
    ) -> None:
        if slot is None:  # pragma: no cover - callers only ask for a victim in a full group
            raise AssertionError("no record to evict")
        group = bucket.groups[category]
        entry = group.pop(slot)
        self.unhold(k, bucket, category, slot, entry)
        self.counts["evicted"] += 1
        if not group:
            del bucket.groups[category]
        if not bucket.groups:
            self.forget_key(k)

    def drop_key(self, k: bytes) -> None:
        bucket = self.buckets[k]
        for category, group in bucket.groups.items():
            for slot, entry in group.items():
                self.unhold(k, bucket, category, slot, entry)
                self.counts["evicted"] += 1
        bucket.groups.clear()
        self.forget_key(k)

    def forget_key(self, k: bytes) -> None:
        del self.buckets[k]
        self.plain_keys.pop(k, None)

    @staticmethod
    def lowest(
        bucket: KeyRecords, pool: dict[Hashable, Entry] | None, category: Category
    ) -> tuple[Category, Hashable, Entry | None]:
        """The lowest-ranked record of ``pool`` (one category's group), or of the whole
        bucket when ``pool`` is None."""
        groups = {category: pool} if pool is not None else bucket.groups
        best: tuple[Category, Hashable, Entry | None] = (category, None, None)
        best_rank: tuple[bool, int] | None = None
        for cat, group in groups.items():
            for slot, entry in group.items():
                r = rank(entry)
                if best_rank is None or r < best_rank:
                    best, best_rank = (cat, slot, entry), r
        return best

    # -- expiry -----------------------------------------------------------------------

    def remove_expired(self, now_s: int) -> int:
        """Purge every record expired at ``now_s``; costs in proportion to the keys that
        hold expired records. Returns the number removed."""
        before = self.counts["expired"]
        heap = self.heap
        while heap and heap[0][0] < now_s:
            due, k = heapq.heappop(heap)
            bucket = self.buckets.get(k)
            if bucket is not None and bucket.next_expiry == due:
                self.purge(k, bucket, now_s)
        return self.counts["expired"] - before

    def live_bucket(self, k: bytes, now: float) -> KeyRecords | None:
        """The records at ``k`` after purging any expired ones (None: none left)."""
        bucket = self.buckets.get(k)
        if bucket is None or not self.purge_if_due(k, bucket, int(now)):
            return None
        return bucket

    def purge_if_due(self, k: bytes, bucket: KeyRecords, now_s: int) -> bool:
        """Purge if a record may have expired; False if the bucket went away."""
        if bucket.next_expiry >= now_s:
            return True
        return self.purge(k, bucket, now_s)

    def purge(self, k: bytes, bucket: KeyRecords, now_s: int) -> bool:
        """Remove expired records and recompute ``next_expiry``; drop the key if it is left
        empty. Returns False if it was dropped."""
        earliest = 2**64
        for category in list(bucket.groups):
            group = bucket.groups[category]
            dead = [slot for slot, e in group.items() if e.expires < now_s]
            for slot in dead:
                self.unhold(k, bucket, category, slot, group.pop(slot))
            self.counts["expired"] += len(dead)
            if not group:
                del bucket.groups[category]
                continue
            earliest = min(earliest, min(e.expires for e in group.values()))
        if not bucket.groups:
            self.forget_key(k)
            return False
        bucket.next_expiry = earliest
        self.push_expiry(k, bucket)
        return True

    def push_expiry(self, k: bytes, bucket: KeyRecords) -> None:
        heap = self.heap
        if len(heap) > 2 * len(self.buckets) + HEAP_SLACK:
            heap[:] = [(b.next_expiry, key) for key, b in self.buckets.items()]
            heapq.heapify(heap)  # the rebuild already holds this bucket's entry
            return
        heapq.heappush(heap, (bucket.next_expiry, k))
