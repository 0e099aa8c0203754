"""What a held DHT record is, which slot it fills, and how held records rank (a2al-wire
§3.3–3.5): the per-record rules of :class:`~a2al_mcp.dht.store.RecordStore`, with no state.

A key holds records of mixed categories, each in a *slot* that keeps only the newest record:
sovereign ``(address, rec_type)``, topic ``address``, mailbox ``(pubkey, payload, rec_type)``.
A held record ranks by (vouched, older registration); the lower-ranked one makes room.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final, TypeAlias

from ..protocol import limits
from ..protocol.records import Category, RecType, SignedRecord

__all__ = [
    "KEY_LEN",
    "Entry",
    "KeyRecords",
    "Ref",
    "category_cap",
    "expires_at",
    "oldest",
    "rank",
    "slot_of",
    "soft_expiring",
    "sovereign_victim",
    "visible",
]

KEY_LEN: Final = 32

Ref: TypeAlias = tuple[bytes, Category, Hashable]
"""Where a record is held: (key, category, slot)."""


class Entry:
    """A record in its slot: the slot's soft-expiry deadline (None: not soft-expiring), when
    it expires here, its encoded size, whether it is vouched for and its registration order
    (``since``, kept across updates of the slot)."""

    __slots__ = ("expires", "record", "since", "size", "soft_deadline", "vouched")

    def __init__(
        self,
        record: SignedRecord,
        soft_deadline: float | None,
        expires: int,
        size: int,
        vouched: bool,
        since: int,
    ) -> None:
        self.record = record
        self.soft_deadline = soft_deadline
        self.expires = expires
        self.size = size
        self.vouched = vouched
        self.since = since


class KeyRecords:
    """The records at one key: per category (in a2ald's list order) the slots in insertion
    order. Empty categories are removed, so ``groups`` is never left holding an empty dict."""

    __slots__ = ("count", "groups", "next_expiry", "vouched")

    def __init__(self) -> None:
        self.groups: dict[Category, dict[Hashable, Entry]] = {}
        self.next_expiry: int = 2**64
        """A lower bound on the earliest expiry of the records here."""
        self.count = 0
        """Records held here."""
        self.vouched = 0
        """Vouched records held here."""


def slot_of(record: SignedRecord, category: Category) -> Hashable:
    if category is Category.TOPIC:
        return bytes(record.address)  # one registration per registrant AID
    if category is Category.MAILBOX:
        return (record.pubkey, record.payload, record.rec_type)
    return (bytes(record.address), record.rec_type)


def soft_expiring(rec_type: int) -> bool:
    """a2ald arms and clears soft expiry only for the assigned sovereign range, not for the
    unknown rec types it otherwise stores like sovereign ones."""
    return 0x01 <= rec_type <= 0x0F


def expires_at(record: SignedRecord, now_s: int) -> int:
    """When a record expires here: a future date counts as now."""
    return min(record.timestamp, now_s) + record.ttl


def visible(entry: Entry, now: float) -> bool:
    """Valid at ``now`` (VerifySignedRecord's time checks) and not soft-expired."""
    if entry.expires < int(now) or entry.record.timestamp > now + limits.CLOCK_SKEW_S:
        return False
    deadline = entry.soft_deadline
    return deadline is None or now <= deadline


def rank(entry: Entry) -> tuple[bool, int]:
    """Higher is kept longer: vouched first, then the older registration."""
    return entry.vouched, -entry.since


def oldest(group: dict[Hashable, Entry], address: bytes | None = None) -> Hashable | None:
    """The slot with the smallest timestamp (first in order on ties), optionally among one
    sender address's records."""
    best: Hashable | None = None
    best_ts = 0
    for slot, entry in group.items():
        record = entry.record
        if address is not None and bytes(record.address) != address:
            continue
        if best is None or record.timestamp < best_ts:
            best, best_ts = slot, record.timestamp
    return best


def sovereign_victim(group: dict[Hashable, Entry]) -> Hashable | None:
    """The first non-endpoint record in list order; if only endpoints are left, the one with
    the oldest timestamp (store.go evictSovereign)."""
    for slot, entry in group.items():
        if entry.record.rec_type != RecType.ENDPOINT:
            return slot
    return oldest(group)


def category_cap(category: Category) -> int:
    if category is Category.TOPIC:
        return limits.TOPIC_PER_KEY
    if category is Category.MAILBOX:
        return limits.MAILBOX_PER_KEY
    return limits.SOVEREIGN_PER_KEY
