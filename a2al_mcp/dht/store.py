"""The DHT record store (a2al-wire §3.3–3.5, §4.6). Sans-I/O: every method takes ``now``.

Records are filed under a 32-byte DHT key; one key holds records of mixed categories, each in
a *slot* that keeps only the newest record (a2ald's ``RecordIsNewer``)::

    category   slot identity                  per-key cap        over the cap, drop
    sovereign  (address, rec_type)            8                  first non-endpoint in list
                                                                 order, else oldest endpoint
    topic      signing pubkey                 100                oldest timestamp
    mailbox    (pubkey, payload, rec_type)    50; 4 per pubkey   that pubkey's oldest, then
                                                                 the oldest overall

"Oldest" is by record timestamp, the first in list order on ties. Rec types outside the
assigned ranges (0x00, 0x20–0x7F, 0x90–0xFF) are stored like sovereign ones.

*List order* is a2ald's: a successful put removes the slot's old record and appends the new
one, and then regroups the key's list so that the records of the category just stored come
last (a2ald's per-category eviction splits the list and rejoins it that way). Within a category
that is plain insertion order, oldest first — the order FIND_VALUE answers in and trims from.

Soft expiry: a sovereign record (0x01–0x0F) that a node other than its publisher STOREs into a
slot with no visible record is hidden 120 s later unless the publisher confirms it
(:meth:`RecordStore.confirm`, after the publisher answered us) or stores it itself.

Distinct keys are capped (LRU by last successful put or any read). Expired records are purged
lazily on access and by :meth:`RecordStore.remove_expired`. Per-source rate limiting is the DHT
core's business, not the store's.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import OrderedDict
from collections.abc import Hashable
from enum import Enum
from typing import Final, TypeAlias

from ..errors import A2ALError, UsageError
from ..identity.aid import Aid, NodeId
from ..protocol import limits
from ..protocol.records import Category, RecType, SignedRecord

__all__ = ["SOFT_EXPIRY_S", "PutOutcome", "PutResult", "RecordStore", "StoreStats"]

SOFT_EXPIRY_S: Final = 120.0
"""How long a sovereign record path-cached by a non-publisher stays visible unconfirmed."""

KEY_LEN: Final = 32
_ZERO_KEY: Final = bytes(KEY_LEN)
_HEAP_SLACK: Final = 1024
"""The expiry heap is rebuilt when it holds this many more entries than twice the keys."""

KeyLike: TypeAlias = bytes | NodeId
"""A DHT key: 32 bytes, or a :class:`NodeId`."""


class PutOutcome(Enum):
    """What :meth:`RecordStore.put` did, and how STORE_RESP reports it."""

    STORED = "stored"
    """Stored (new slot or newer than the slot's record): ``stored=true``."""
    STALE = "stale"
    """The slot already holds an equal or newer record: ``stored=true, already_had=true``."""
    REJECTED_POLICY = "rejected_policy"
    """The key may not speak for the address (authority): ``stored=false, reason=1``."""
    REJECTED_INVALID = "rejected_invalid"
    """Bad signature or payload, expired, > 60 s in the future, or a sovereign record under
    a key other than NodeID(address): ``stored=false, reason=2``."""


@dataclasses.dataclass(frozen=True, slots=True)
class PutResult:
    """The result of one :meth:`RecordStore.put`."""

    outcome: PutOutcome
    reason: str
    """Human-readable explanation (for logs; not sent on the wire)."""
    is_new: bool
    """A genuinely new record was stored: one-shot subscribers of the key get a DHT_PUSH.
    True exactly when ``outcome`` is STORED (even if the cap evicted it again at once, as
    a2ald still pushes it then)."""
    key: bytes = b""
    """The DHT key the record was filed under (derived when the STORE had none); empty when
    the record was rejected before a key was derived."""

    @property
    def accepted(self) -> bool:
        """STORE_RESP ``stored``: true for STORED and STALE."""
        return self.outcome in (PutOutcome.STORED, PutOutcome.STALE)

    @property
    def wire_reason(self) -> int:
        """STORE_RESP ``reason``: 0 accepted, 1 policy, 2 record invalid."""
        if self.outcome is PutOutcome.REJECTED_POLICY:
            return 1
        if self.outcome is PutOutcome.REJECTED_INVALID:
            return 2
        return 0


@dataclasses.dataclass(frozen=True, slots=True)
class StoreStats:
    """A snapshot of the store's size and lifetime counters."""

    keys: int
    """Distinct keys held."""
    records: int
    """Records held (including soft-hidden ones and expired ones not purged yet)."""
    stored: int
    """Puts that stored a record."""
    stale: int
    """Puts refused because the slot held an equal or newer record."""
    rejected_policy: int
    """Puts refused by the authority policy."""
    rejected_invalid: int
    """Puts refused as invalid."""
    evicted: int
    """Records dropped by a per-key cap or with a key evicted by the key cap."""
    expired: int = 0
    """Records purged because their TTL ran out."""


class _Entry:
    """A record in its slot, with the slot's soft-expiry deadline (None: not soft-expiring)."""

    __slots__ = ("record", "soft_deadline")

    def __init__(self, record: SignedRecord, soft_deadline: float | None) -> None:
        self.record = record
        self.soft_deadline = soft_deadline


class _Bucket:
    """The records at one key: per category (in a2ald's list order) the slots in insertion
    order. Empty categories are removed, so ``groups`` is never left holding an empty dict."""

    __slots__ = ("groups", "next_expiry")

    def __init__(self) -> None:
        self.groups: dict[Category, dict[Hashable, _Entry]] = {}
        self.next_expiry: int = 2**64
        """A lower bound on the earliest ``expires_at`` of the records here."""


def _slot(record: SignedRecord, category: Category) -> Hashable:
    if category is Category.TOPIC:
        return record.pubkey
    if category is Category.MAILBOX:
        return (record.pubkey, record.payload, record.rec_type)
    return (bytes(record.address), record.rec_type)


def _soft_expiring(rec_type: int) -> bool:
    """a2ald arms and clears soft expiry only for the assigned sovereign range, not for the
    unknown rec types it otherwise stores like sovereign ones."""
    return 0x01 <= rec_type <= 0x0F


def _expired(record: SignedRecord, now_s: int) -> bool:
    return record.timestamp + record.ttl < now_s


def _visible(entry: _Entry, now: float) -> bool:
    """Valid at ``now`` (VerifySignedRecord's time checks) and not soft-expired."""
    record = entry.record
    if _expired(record, int(now)) or record.timestamp > now + limits.CLOCK_SKEW_S:
        return False
    deadline = entry.soft_deadline
    return deadline is None or now <= deadline


def _oldest(group: dict[Hashable, _Entry], pubkey: bytes | None = None) -> Hashable | None:
    """The slot with the smallest timestamp (first in order on ties), optionally among one
    pubkey's records."""
    best: Hashable | None = None
    best_ts = 0
    for slot, entry in group.items():
        record = entry.record
        if pubkey is not None and record.pubkey != pubkey:
            continue
        if best is None or record.timestamp < best_ts:
            best, best_ts = slot, record.timestamp
    return best


def _sovereign_victim(group: dict[Hashable, _Entry]) -> Hashable | None:
    """The first non-endpoint record in list order; if only endpoints are left, the one with
    the oldest timestamp (store.go evictSovereign)."""
    for slot, entry in group.items():
        if entry.record.rec_type != RecType.ENDPOINT:
            return slot
    return _oldest(group)


class RecordStore:
    """The bounded, sans-I/O record store of a DHT node.

    Args:
        max_keys: distinct keys kept; adding one more evicts the least recently used key
            (last successful put, get or :meth:`newest_endpoint`). a2ald uses 100 000
            (5 000 000 on "beacon" nodes).

    Every method takes ``now``, the wall clock in Unix seconds (records carry Unix times).
    """

    __slots__ = (
        "_buckets",
        "_c_evicted",
        "_c_expired",
        "_c_invalid",
        "_c_policy",
        "_c_stale",
        "_c_stored",
        "_heap",
        "_max_keys",
        "_records",
    )

    def __init__(self, max_keys: int = limits.STORE_KEYS_MAX) -> None:
        if max_keys < 1:
            raise UsageError("max_keys must be at least 1")
        self._max_keys = max_keys
        self._buckets: OrderedDict[bytes, _Bucket] = OrderedDict()
        self._heap: list[tuple[int, bytes]] = []
        """(a bucket's next_expiry, key); stale entries are skipped when popped."""
        self._records = 0
        self._c_stored = self._c_stale = self._c_policy = self._c_invalid = 0
        self._c_evicted = self._c_expired = 0

    # -- writing ----------------------------------------------------------------------

    def put(
        self, key: KeyLike, record: SignedRecord, now: float, *, from_publisher: bool
    ) -> PutResult:
        """Store ``record`` at ``key`` if it is valid, authorised and newer than its slot.

        Args:
            key: the DHT key. Anything but 32 non-zero bytes (an absent, short or all-zero STORE
                key) means NodeID(record.address), as in a2ald.
            record: the record, as received.
            now: wall clock, Unix seconds.
            from_publisher: the STORE came from the record's publisher (sender NodeID equals
                NodeID(address), or, for endpoints, the sender IP is one of the record's
                ``quic://`` IPs), or the record is our own. Otherwise a sovereign record stored
                into a slot with no visible record is hidden after :data:`SOFT_EXPIRY_S` unless
                :meth:`confirm` is called. A publisher's put — even a stale one — confirms.

        Never raises for a bad record: the outcome says what happened.
        """
        try:
            record.verify(now)
        except A2ALError as exc:
            return self._reject(PutOutcome.REJECTED_INVALID, str(exc))
        k = _norm_key(key)
        if len(k) != KEY_LEN or k == _ZERO_KEY:
            k = record.default_key()
        category = record.category
        if category is Category.SOVEREIGN and k != record.default_key():
            return self._reject(
                PutOutcome.REJECTED_INVALID,
                "sovereign record filed under a key other than NodeID(address)",
                k,
            )
        try:
            record.check_authority(now, k)
        except A2ALError as exc:
            # a2ald answers authority failures with reason 2 ("invalid"), not 1 (policy):
            # its check returns plain errors (host.go), and reason 1 makes a2ald drop us
            # from the record's replica set.
            return self._reject(PutOutcome.REJECTED_INVALID, str(exc), k)

        bucket = self._live_bucket(k, now)
        slot = _slot(record, category)
        group = bucket.groups.get(category) if bucket is not None else None
        old = group.get(slot) if group is not None else None
        soft = _soft_expiring(record.rec_type)
        if old is not None and not record.is_newer_than(old.record):
            self._c_stale += 1
            if soft and from_publisher:
                old.soft_deadline = None
            return PutResult(PutOutcome.STALE, "already holds an equal or newer record", False, k)

        if not soft or from_publisher:
            deadline: float | None = None
        elif old is not None and _visible(old, now):
            deadline = old.soft_deadline  # an occupied slot keeps whatever it had
        else:
            deadline = now + SOFT_EXPIRY_S

        new_key = bucket is None
        if bucket is None:
            bucket = self._buckets[k] = _Bucket()
        group = bucket.groups.pop(category, None) or {}
        if group.pop(slot, None) is None:
            self._records += 1
        group[slot] = _Entry(record, deadline)
        bucket.groups[category] = group  # the category just stored moves to the end
        self._enforce_cap(category, group, record)
        if record.expires_at < bucket.next_expiry:
            bucket.next_expiry = record.expires_at
            self._push_expiry(k, bucket)
        self._buckets.move_to_end(k)
        if new_key:
            while len(self._buckets) > self._max_keys:
                _, victim = self._buckets.popitem(last=False)
                self._drop_bucket(victim)
        self._c_stored += 1
        return PutResult(PutOutcome.STORED, "stored", True, k)

    def confirm(self, key: KeyLike, address: Aid, rec_type: int, now: float) -> bool:
        """The publisher of ``address`` acknowledged us: cancel the slot's soft expiry.

        ``key`` may be empty (NodeID(address)). Does not count as a use of the key.

        Returns:
            True if a soft-expiry deadline was cancelled (the record is visible again even
            if the deadline had passed).
        """
        k = _norm_key(key)
        if len(k) != KEY_LEN or k == _ZERO_KEY:
            k = bytes(address.node_id)
        bucket = self._buckets.get(k)
        if bucket is None:
            return False
        self._purge_if_due(k, bucket, int(now))
        group = bucket.groups.get(Category.SOVEREIGN)
        entry = group.get((bytes(address), rec_type)) if group is not None else None
        if entry is None or entry.soft_deadline is None:
            return False
        entry.soft_deadline = None
        return True

    def remove_expired(self, now: float) -> int:
        """Purge every record whose TTL ran out; drop keys left empty.

        Costs in proportion to the keys that hold expired records, not to the store size.

        Returns:
            The number of records removed.
        """
        now_s = int(now)
        before = self._c_expired
        heap = self._heap
        while heap and heap[0][0] < now_s:
            due, k = heapq.heappop(heap)
            bucket = self._buckets.get(k)
            if bucket is not None and bucket.next_expiry == due:
                self._purge(k, bucket, now_s)
        return self._c_expired - before

    # -- reading ----------------------------------------------------------------------

    def get(self, key: KeyLike, now: float, rec_type: int = 0) -> list[SignedRecord]:
        """The records currently valid at ``key`` (FIND_VALUE's ``records``).

        Args:
            key: the DHT key.
            now: wall clock, Unix seconds.
            rec_type: only records of this type; 0 for all.

        Returns:
            Oldest first in a2ald's list order (see the module docstring), without expired,
            future-dated or soft-expired records. Counts as a use of the key.
        """
        k = _norm_key(key)
        bucket = self._touch(k, now)
        if bucket is None:
            return []
        return [
            entry.record
            for group in bucket.groups.values()
            for entry in group.values()
            if (rec_type == 0 or entry.record.rec_type == rec_type) and _visible(entry, now)
        ]

    def newest_endpoint(self, key: KeyLike, now: float) -> SignedRecord | None:
        """The newest currently valid endpoint record at ``key`` (FIND_VALUE's legacy
        ``record``), or None. Counts as a use of the key."""
        bucket = self._touch(_norm_key(key), now)
        group = bucket.groups.get(Category.SOVEREIGN) if bucket is not None else None
        if group is None:
            return None
        best: SignedRecord | None = None
        for entry in group.values():
            record = entry.record
            if record.rec_type != RecType.ENDPOINT or not _visible(entry, now):
                continue
            if best is None or record.is_newer_than(best):
                best = record
        return best

    def __len__(self) -> int:
        """Records held (including soft-hidden ones and expired ones not yet purged)."""
        return self._records

    @property
    def key_count(self) -> int:
        """Distinct keys held."""
        return len(self._buckets)

    @property
    def max_keys(self) -> int:
        """The distinct-key cap."""
        return self._max_keys

    def statistics(self) -> StoreStats:
        """Current size and lifetime counters."""
        return StoreStats(
            keys=len(self._buckets),
            records=self._records,
            stored=self._c_stored,
            stale=self._c_stale,
            rejected_policy=self._c_policy,
            rejected_invalid=self._c_invalid,
            evicted=self._c_evicted,
            expired=self._c_expired,
        )

    # -- internals --------------------------------------------------------------------

    def _reject(self, outcome: PutOutcome, reason: str, key: bytes = b"") -> PutResult:
        if outcome is PutOutcome.REJECTED_POLICY:
            self._c_policy += 1
        else:
            self._c_invalid += 1
        return PutResult(outcome, reason, False, key)

    def _touch(self, k: bytes, now: float) -> _Bucket | None:
        """A read: mark the key used and return its bucket with expired records purged."""
        if k not in self._buckets:
            return None
        self._buckets.move_to_end(k)
        return self._live_bucket(k, now)

    def _live_bucket(self, k: bytes, now: float) -> _Bucket | None:
        bucket = self._buckets.get(k)
        if bucket is None or not self._purge_if_due(k, bucket, int(now)):
            return None
        return bucket

    def _purge_if_due(self, k: bytes, bucket: _Bucket, now_s: int) -> bool:
        """Purge if a record may have expired; False if the bucket went away."""
        if bucket.next_expiry >= now_s:
            return True
        return self._purge(k, bucket, now_s)

    def _purge(self, k: bytes, bucket: _Bucket, now_s: int) -> bool:
        """Remove expired records and recompute ``next_expiry``; drop the key if it is left
        empty. Returns False if it was dropped."""
        earliest = 2**64
        for category in list(bucket.groups):
            group = bucket.groups[category]
            dead = [slot for slot, e in group.items() if _expired(e.record, now_s)]
            for slot in dead:
                del group[slot]
            self._records -= len(dead)
            self._c_expired += len(dead)
            if not group:
                del bucket.groups[category]
                continue
            earliest = min(earliest, min(e.record.expires_at for e in group.values()))
        if not bucket.groups:
            del self._buckets[k]
            return False
        bucket.next_expiry = earliest
        self._push_expiry(k, bucket)
        return True

    def _push_expiry(self, k: bytes, bucket: _Bucket) -> None:
        heap = self._heap
        if len(heap) > 2 * len(self._buckets) + _HEAP_SLACK:
            heap[:] = [(b.next_expiry, key) for key, b in self._buckets.items()]
            heapq.heapify(heap)  # the rebuild already holds this bucket's entry
            return
        heapq.heappush(heap, (bucket.next_expiry, k))

    def _drop_bucket(self, bucket: _Bucket) -> None:
        n = sum(len(group) for group in bucket.groups.values())
        self._records -= n
        self._c_evicted += n

    def _evict(self, group: dict[Hashable, _Entry], slot: Hashable | None) -> None:
        if slot is None:  # pragma: no cover - callers only ask for a victim in a full group
            raise AssertionError("no record to evict")
        del group[slot]
        self._records -= 1
        self._c_evicted += 1

    def _enforce_cap(
        self, category: Category, group: dict[Hashable, _Entry], record: SignedRecord
    ) -> None:
        """Apply the per-key cap of ``category`` after ``record`` was added to ``group``."""
        if category is Category.SOVEREIGN:
            while len(group) > limits.SOVEREIGN_PER_KEY:
                self._evict(group, _sovereign_victim(group))
        elif category is Category.TOPIC:
            while len(group) > limits.TOPIC_PER_KEY:
                self._evict(group, _oldest(group))
        else:
            pubkey = record.pubkey
            same = sum(1 for e in group.values() if e.record.pubkey == pubkey)
            while same > limits.MAILBOX_PER_PUBKEY:
                self._evict(group, _oldest(group, pubkey))
                same -= 1
            while len(group) > limits.MAILBOX_PER_KEY:
                self._evict(group, _oldest(group))


def _norm_key(key: KeyLike) -> bytes:
    return key if isinstance(key, bytes) else bytes(key)
