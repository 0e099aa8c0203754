"""Room for a newcomer in a :class:`~a2al_mcp.dht.store.RecordStore`: the store's caps and
the fair-eviction rule that enforces them (a2al-wire §3.5; see the store's docstring).

When a cap is reached — distinct keys, records in total, encoded bytes in total, records under
one key (and the category caps) — the lowest-ranked record (for the key cap, the newest key
holding no vouched record) makes room, but only if it ranks below the newcomer; otherwise the
newcomer is refused and the cap that refused it is named.
"""

from __future__ import annotations

from collections.abc import Hashable

from .._dataclass import dataclass
from ..errors import UsageError
from ..protocol import limits
from ..protocol.records import Category
from .store_ledger import StoreLedger
from .store_slots import Entry, Ref, category_cap, rank, sovereign_victim

__all__ = ["StoreCaps", "make_room"]


@dataclass(frozen=True, slots=True)
class StoreCaps:
    """The bounds of one store: distinct keys, records, records per key, encoded bytes."""

    max_keys: int
    max_records: int
    max_per_key: int
    max_bytes: int

    def __post_init__(self) -> None:
        if min(self.max_keys, self.max_records, self.max_per_key, self.max_bytes) < 1:
            raise UsageError("record store limits must be at least 1")


def make_room(
    ledger: StoreLedger,
    caps: StoreCaps,
    k: bytes,
    category: Category,
    slot: Hashable,
    old: Entry | None,
    entry: Entry,
    now_s: int,
) -> str:
    """Evict lower-ranked records until ``entry`` fits in place of ``old`` (None: a new
    slot). Returns the name of the cap that refuses it, or "" when it fits."""
    rank_new = rank(entry)
    own: Ref = (k, category, slot)
    buckets = ledger.buckets
    if k not in buckets and len(buckets) >= caps.max_keys:
        ledger.remove_expired(now_s)
        while len(buckets) >= caps.max_keys:
            victim = next(reversed(ledger.plain_keys), None) if entry.vouched else None
            if victim is None:
                return "keys"
            ledger.drop_key(victim)
    grow = 0 if old is not None else 1
    need = entry.size - (old.size if old is not None else 0)

    def over() -> bool:
        return ledger.records + grow > caps.max_records or ledger.bytes + need > caps.max_bytes

    if over():
        ledger.remove_expired(now_s)
    while over():
        cap = "records" if ledger.records + grow > caps.max_records else "bytes"
        ref = next((r for r in reversed(ledger.plain) if r != own), None)
        if ref is None:
            return cap
        vk, vcat, vslot = ref
        if rank(buckets[vk].groups[vcat][vslot]) >= rank_new:
            return cap
        ledger.evict(vk, buckets[vk], vcat, vslot)
    bucket = buckets.get(k)
    if old is not None or bucket is None:
        return ""
    return _room_in_key(ledger, caps, k, category, entry)


def _room_in_key(
    ledger: StoreLedger, caps: StoreCaps, k: bytes, category: Category, entry: Entry
) -> str:
    """The per-key and per-category caps of an existing key, for a new slot."""
    bucket = ledger.buckets[k]
    group = bucket.groups.get(category, {})
    if category is Category.MAILBOX:
        address = bytes(entry.record.address)
        mine = sum(1 for e in group.values() if bytes(e.record.address) == address)
        if mine >= limits.MAILBOX_PER_PUBKEY:
            return ""  # the sender's own oldest note makes room after the put
    if category is Category.SOVEREIGN:  # only the owner fills these: a2ald's rule
        while len(group) >= limits.SOVEREIGN_PER_KEY:
            ledger.evict(k, bucket, category, sovereign_victim(group))
    cap_group = min(category_cap(category), caps.max_per_key)
    rank_new = rank(entry)
    while len(group) >= cap_group or bucket.count >= caps.max_per_key:
        pool = group if len(group) >= cap_group else None
        vcat, vslot, ventry = ledger.lowest(bucket, pool, category)
        if ventry is None or rank(ventry) >= rank_new:
            return "per_key"
        ledger.evict(k, bucket, vcat, vslot)
        if k not in ledger.buckets:
            break
    return ""
