"""The DHT record store (a2al-wire §3.3–3.5, §4.6). Sans-I/O: every method takes ``now``.

Records are filed under a 32-byte DHT key; one key holds records of mixed categories, each in
a *slot* that keeps only the newest record (a2ald's ``RecordIsNewer``)::

    category   slot identity                  per-key cap        over the cap
    sovereign  (address, rec_type)            8                  first non-endpoint in list
                                                                 order, else oldest endpoint
    topic      address (the registrant AID)   100                by rank (below)
    mailbox    (pubkey, payload, rec_type)    50; 4 per sender   that sender's oldest, then
                                              AID                by rank

Sovereign keys only hold records their owner signed, so a2ald's rule is kept there. Topic and
mailbox keys take records from anyone, so their eviction must not be steerable by whoever
makes identities fastest (a2ald drops the oldest *timestamp*, which the attacker chooses).

*Fairness.* Every held record has a rank: records *vouched* for (our own, or stored by or
about a peer that answered one of our requests — the caller decides) rank above the rest;
within each class, the older registration (the time its slot was first filled here, kept
across updates of the slot) ranks above the newer. When a cap is reached — records under one
key (``max_records_per_key`` and the category caps), distinct keys (``max_keys``), records in
total (``max_records``) or encoded bytes in total (``max_bytes``) — the lowest-ranked record
(or, for the key cap, the newest key holding no vouched record) makes room, but only if it
ranks below the newcomer; otherwise the newcomer is refused (:attr:`PutOutcome.REJECTED_FULL`,
STORE_RESP reason 1). So a flood of fresh identities fills free room and is then refused; it
never pushes out an established registration, and a peer that answered us still gets in.
Vouched records are evicted only by the per-key caps; for room elsewhere they wait for expiry.

*Time.* A record dated in the future (up to the 60 s skew a2ald accepts) is held as if dated
now: its expiry here is ``min(timestamp, now) + ttl``.

*List order* is a2ald's: a successful put removes the slot's old record and appends the new
one, and then regroups the key's list so that the records of the category just stored come
last (a2ald's per-category eviction splits the list and rejoins it that way). Within a category
that is plain insertion order, oldest first — the order FIND_VALUE answers in and trims from.

Soft expiry: a sovereign record (0x01–0x0F) that a node other than its publisher STOREs into a
slot with no visible record is hidden 120 s later (``SOFT_EXPIRY_S``, §3.5) unless the
publisher stores it itself. (a2ald also lifts the soft expiry when the publisher answers a
FIND_NODE it sends; this node does not send that FIND_NODE, so only the publisher's own STORE
confirms.)

Expired records are purged lazily on access, by :meth:`RecordStore.remove_expired`, and before
any refusal for room. Per-source rate limiting is the DHT core's business, not the store's.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import OrderedDict
from collections.abc import Hashable
from enum import Enum
from typing import Final, TypeAlias

from ..config import LimitsConfig
from ..errors import A2ALError, UsageError
from ..identity.aid import NodeId
from ..protocol import limits
from ..protocol.records import Category, RecType, SignedRecord
from ..protocol.timers import SOFT_EXPIRY_S

__all__ = ["SOFT_EXPIRY_S", "PutOutcome", "PutResult", "RecordStore", "StoreStats"]


KEY_LEN: Final = 32
_ZERO_KEY: Final = bytes(KEY_LEN)
_HEAP_SLACK: Final = 1024
"""The expiry heap is rebuilt when it holds this many more entries than twice the keys."""
_DEFAULTS: Final = LimitsConfig()

KeyLike: TypeAlias = bytes | NodeId
"""A DHT key: 32 bytes, or a :class:`NodeId`."""

_Ref: TypeAlias = tuple[bytes, Category, Hashable]
"""Where a record is held: (key, category, slot)."""


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
    REJECTED_FULL = "rejected_full"
    """A cap is reached and every held record ranks above this one (see the module
    docstring): ``stored=false, reason=1`` (policy: the publisher should use another node)."""


@dataclasses.dataclass(frozen=True, slots=True)
class PutResult:
    """The result of one :meth:`RecordStore.put`."""

    outcome: PutOutcome
    reason: str
    """Human-readable explanation (for logs; not sent on the wire). For REJECTED_FULL one of
    ``keys``, ``records``, ``bytes``, ``per_key``: the cap that refused it."""
    is_new: bool
    """A genuinely new record was stored: one-shot subscribers of the key get a DHT_PUSH.
    True exactly when ``outcome`` is STORED (even if the per-sender mailbox cap evicted it
    again at once, as a2ald still pushes it then)."""
    key: bytes = b""
    """The DHT key the record was filed under (derived when the STORE had none); empty when
    the record was rejected before a key was derived."""

    @property
    def accepted(self) -> bool:
        """STORE_RESP ``stored``: true for STORED and STALE."""
        return self.outcome in (PutOutcome.STORED, PutOutcome.STALE)

    @property
    def wire_reason(self) -> int:
        """STORE_RESP ``reason``: 0 accepted, 1 policy or full, 2 record invalid."""
        if self.outcome in (PutOutcome.REJECTED_POLICY, PutOutcome.REJECTED_FULL):
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
    """Records dropped to make room for a higher-ranked one (or by a per-key cap)."""
    expired: int = 0
    """Records purged because their TTL ran out."""
    bytes: int = 0
    """Encoded bytes of the records held."""
    vouched: int = 0
    """Records held that are vouched for (ours, or from peers that answered us)."""
    refused_keys: int = 0
    """Puts refused because the distinct-key cap was reached."""
    refused_records: int = 0
    """Puts refused because the total-record cap was reached."""
    refused_bytes: int = 0
    """Puts refused because the total-bytes cap was reached."""
    refused_per_key: int = 0
    """Puts refused because the key's cap (per key or per category) was reached."""


class _Entry:
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


class _Bucket:
    """The records at one key: per category (in a2ald's list order) the slots in insertion
    order. Empty categories are removed, so ``groups`` is never left holding an empty dict."""

    __slots__ = ("count", "groups", "next_expiry", "vouched")

    def __init__(self) -> None:
        self.groups: dict[Category, dict[Hashable, _Entry]] = {}
        self.next_expiry: int = 2**64
        """A lower bound on the earliest expiry of the records here."""
        self.count = 0
        """Records held here."""
        self.vouched = 0
        """Vouched records held here."""


def _slot(record: SignedRecord, category: Category) -> Hashable:
    if category is Category.TOPIC:
        return bytes(record.address)  # one registration per registrant AID
    if category is Category.MAILBOX:
        return (record.pubkey, record.payload, record.rec_type)
    return (bytes(record.address), record.rec_type)


def _soft_expiring(rec_type: int) -> bool:
    """a2ald arms and clears soft expiry only for the assigned sovereign range, not for the
    unknown rec types it otherwise stores like sovereign ones."""
    return 0x01 <= rec_type <= 0x0F


def _expires(record: SignedRecord, now_s: int) -> int:
    """When a record expires here: a future date counts as now."""
    return min(record.timestamp, now_s) + record.ttl


def _visible(entry: _Entry, now: float) -> bool:
    """Valid at ``now`` (VerifySignedRecord's time checks) and not soft-expired."""
    if entry.expires < int(now) or entry.record.timestamp > now + limits.CLOCK_SKEW_S:
        return False
    deadline = entry.soft_deadline
    return deadline is None or now <= deadline


def _rank(entry: _Entry) -> tuple[bool, int]:
    """Higher is kept longer: vouched first, then the older registration."""
    return entry.vouched, -entry.since


def _oldest(group: dict[Hashable, _Entry], address: bytes | None = None) -> Hashable | None:
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


def _sovereign_victim(group: dict[Hashable, _Entry]) -> Hashable | None:
    """The first non-endpoint record in list order; if only endpoints are left, the one with
    the oldest timestamp (store.go evictSovereign)."""
    for slot, entry in group.items():
        if entry.record.rec_type != RecType.ENDPOINT:
            return slot
    return _oldest(group)


def _category_cap(category: Category) -> int:
    if category is Category.TOPIC:
        return limits.TOPIC_PER_KEY
    if category is Category.MAILBOX:
        return limits.MAILBOX_PER_KEY
    return limits.SOVEREIGN_PER_KEY


class RecordStore:
    """The bounded, sans-I/O record store of a DHT node.

    Args:
        max_keys: distinct keys kept (a2ald: 100 000, 5 000 000 on "beacon" nodes).
        max_records: records kept over all keys.
        max_records_per_key: records kept under one key (the category caps of a2al-wire
            §3.5 apply too).
        max_bytes: encoded bytes of the records kept.

    Defaults are :class:`~a2al_mcp.config.LimitsConfig`'s. Every method takes ``now``, the
    wall clock in Unix seconds (records carry Unix times).
    """

    __slots__ = (
        "_buckets",
        "_bytes",
        "_c",
        "_heap",
        "_max_bytes",
        "_max_keys",
        "_max_per_key",
        "_max_records",
        "_plain",
        "_plain_keys",
        "_records",
        "_since",
        "_vouched",
    )

    def __init__(
        self,
        max_keys: int = _DEFAULTS.dht_keys,
        *,
        max_records: int = _DEFAULTS.dht_records,
        max_records_per_key: int = _DEFAULTS.dht_records_per_key,
        max_bytes: int = _DEFAULTS.dht_bytes,
    ) -> None:
        if min(max_keys, max_records, max_records_per_key, max_bytes) < 1:
            raise UsageError("record store limits must be at least 1")
        self._max_keys = max_keys
        self._max_records = max_records
        self._max_per_key = max_records_per_key
        self._max_bytes = max_bytes
        self._buckets: dict[bytes, _Bucket] = {}
        self._heap: list[tuple[int, bytes]] = []
        """(a bucket's next_expiry, key); stale entries are skipped when popped."""
        self._plain: OrderedDict[_Ref, None] = OrderedDict()
        """Records not vouched for, oldest registration first."""
        self._plain_keys: OrderedDict[bytes, None] = OrderedDict()
        """Keys holding no vouched record, in the order they became so."""
        self._records = self._bytes = self._vouched = self._since = 0
        self._c: dict[str, int] = dict.fromkeys(
            ("stored", "stale", "policy", "invalid", "evicted", "expired",
             "keys", "records", "bytes", "per_key"), 0,
        )  # fmt: skip

    @classmethod
    def from_limits(cls, lim: LimitsConfig) -> RecordStore:
        """A store bounded by the ``dht_*`` fields of ``lim``."""
        return cls(
            lim.dht_keys,
            max_records=lim.dht_records,
            max_records_per_key=lim.dht_records_per_key,
            max_bytes=lim.dht_bytes,
        )

    # -- writing ----------------------------------------------------------------------

    def put(
        self,
        key: KeyLike,
        record: SignedRecord,
        now: float,
        *,
        from_publisher: bool,
        vouched: bool = False,
    ) -> PutResult:
        """Store ``record`` at ``key`` if it is valid, authorised, newer than its slot and
        there is room for it (see the module docstring).

        Args:
            key: the DHT key. Anything but 32 non-zero bytes (an absent, short or all-zero STORE
                key) means NodeID(record.address), as in a2ald.
            record: the record, as received.
            now: wall clock, Unix seconds.
            from_publisher: the STORE came from the record's publisher (sender NodeID equals
                NodeID(address), or, for endpoints, the sender IP is one of the record's
                ``quic://`` IPs), or the record is our own. Otherwise a sovereign record stored
                into a slot with no visible record is hidden after ``SOFT_EXPIRY_S``; a
                publisher's put — even a stale one — confirms it.
            vouched: the record is ours, or its sender or publisher is a peer that answered
                us: it ranks above records that are not (and stays so when its slot is
                updated).

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

        now_s = int(now)
        bucket = self._live_bucket(k, now)
        slot = _slot(record, category)
        group = bucket.groups.get(category) if bucket is not None else None
        old = group.get(slot) if group is not None else None
        soft = _soft_expiring(record.rec_type)
        if old is not None and not record.is_newer_than(old.record):
            self._c["stale"] += 1
            if soft and from_publisher:
                old.soft_deadline = None
            if vouched and bucket is not None:
                self._vouch(k, bucket, category, slot, old)
            return PutResult(PutOutcome.STALE, "already holds an equal or newer record", False, k)

        if not soft or from_publisher:
            deadline: float | None = None
        elif old is not None and _visible(old, now):
            deadline = old.soft_deadline  # an occupied slot keeps whatever it had
        else:
            deadline = now + SOFT_EXPIRY_S

        size = len(record.to_bytes())
        since = old.since if old is not None else self._since + 1
        entry = _Entry(record, deadline, _expires(record, now_s), size,
                       vouched or (old is not None and old.vouched), since)  # fmt: skip
        full = self._make_room(k, category, slot, old, entry, now_s)
        if full:
            self._c[full] += 1
            return PutResult(PutOutcome.REJECTED_FULL, full, False, k)
        if old is None:
            self._since = since

        bucket = self._buckets.get(k)  # making room may have dropped or purged it
        if bucket is None:
            bucket = self._buckets[k] = _Bucket()
            self._plain_keys[k] = None
        group = bucket.groups.pop(category, None) or {}
        prev = group.pop(slot, None)
        group[slot] = entry
        bucket.groups[category] = group  # the category just stored moves to the end
        if prev is None:
            self._hold(k, bucket, category, slot, entry)
        else:
            self._replace(k, bucket, category, slot, prev, entry)
        if category is Category.MAILBOX:  # a2ald: a sender's own oldest notes go first
            address = bytes(record.address)
            same = sum(1 for e in group.values() if bytes(e.record.address) == address)
            while same > limits.MAILBOX_PER_PUBKEY:
                self._evict(k, bucket, category, _oldest(group, address))
                same -= 1
        if entry.expires < bucket.next_expiry:
            bucket.next_expiry = entry.expires
            self._push_expiry(k, bucket)
        self._c["stored"] += 1
        return PutResult(PutOutcome.STORED, "stored", True, k)

    def remove_expired(self, now: float) -> int:
        """Purge every record whose TTL ran out; drop keys left empty.

        Costs in proportion to the keys that hold expired records, not to the store size.

        Returns:
            The number of records removed.
        """
        now_s = int(now)
        before = self._c["expired"]
        heap = self._heap
        while heap and heap[0][0] < now_s:
            due, k = heapq.heappop(heap)
            bucket = self._buckets.get(k)
            if bucket is not None and bucket.next_expiry == due:
                self._purge(k, bucket, now_s)
        return self._c["expired"] - before

    # -- reading ----------------------------------------------------------------------

    def get(self, key: KeyLike, now: float, rec_type: int = 0) -> list[SignedRecord]:
        """The records currently valid at ``key`` (FIND_VALUE's ``records``).

        Args:
            key: the DHT key.
            now: wall clock, Unix seconds.
            rec_type: only records of this type; 0 for all.

        Returns:
            Oldest first in a2ald's list order (see the module docstring), without expired,
            future-dated or soft-expired records.
        """
        bucket = self._live_bucket(_norm_key(key), now)
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
        ``record``), or None."""
        bucket = self._live_bucket(_norm_key(key), now)
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

    @property
    def byte_count(self) -> int:
        """Encoded bytes of the records held."""
        return self._bytes

    def statistics(self) -> StoreStats:
        """Current size and lifetime counters."""
        c = self._c
        return StoreStats(
            keys=len(self._buckets), records=self._records, stored=c["stored"],
            stale=c["stale"], rejected_policy=c["policy"], rejected_invalid=c["invalid"],
            evicted=c["evicted"], expired=c["expired"], bytes=self._bytes,
            vouched=self._vouched, refused_keys=c["keys"], refused_records=c["records"],
            refused_bytes=c["bytes"], refused_per_key=c["per_key"],
        )  # fmt: skip

    # -- internals: room --------------------------------------------------------------

    def _make_room(
        self,
        k: bytes,
        category: Category,
        slot: Hashable,
        old: _Entry | None,
        entry: _Entry,
        now_s: int,
    ) -> str:
        """Evict lower-ranked records until ``entry`` fits in place of ``old`` (None: a new
        slot). Returns the name of the cap that refuses it, or "" when it fits."""
        rank = _rank(entry)
        own: _Ref = (k, category, slot)
        if k not in self._buckets and len(self._buckets) >= self._max_keys:
            self.remove_expired(now_s)
            while len(self._buckets) >= self._max_keys:
                victim = next(reversed(self._plain_keys), None) if entry.vouched else None
                if victim is None:
                    return "keys"
                self._drop_key(victim)
        grow = 0 if old is not None else 1
        need = entry.size - (old.size if old is not None else 0)
        if self._records + grow > self._max_records or self._bytes + need > self._max_bytes:
            self.remove_expired(now_s)
        while self._records + grow > self._max_records or self._bytes + need > self._max_bytes:
            cap = "records" if self._records + grow > self._max_records else "bytes"
            ref = next((r for r in reversed(self._plain) if r != own), None)
            if ref is None:
                return cap
            vk, vcat, vslot = ref
            victim_entry = self._buckets[vk].groups[vcat][vslot]
            if _rank(victim_entry) >= rank:
                return cap
            self._evict(vk, self._buckets[vk], vcat, vslot)
        bucket = self._buckets.get(k)
        if old is not None or bucket is None:
            return ""
        group = bucket.groups.get(category, {})
        if category is Category.MAILBOX:
            address = bytes(entry.record.address)
            mine = sum(1 for e in group.values() if bytes(e.record.address) == address)
            if mine >= limits.MAILBOX_PER_PUBKEY:
                return ""  # the sender's own oldest note makes room after the put
        if category is Category.SOVEREIGN:  # only the owner fills these: a2ald's rule
            while len(group) >= limits.SOVEREIGN_PER_KEY:
                self._evict(k, bucket, category, _sovereign_victim(group))
        cap_group = min(_category_cap(category), self._max_per_key)
        while len(group) >= cap_group or bucket.count >= self._max_per_key:
            pool = group if len(group) >= cap_group else None
            vcat, vslot, ventry = self._lowest(bucket, pool, category)
            if ventry is None or _rank(ventry) >= rank:
                return "per_key"
            self._evict(k, bucket, vcat, vslot)
            if k not in self._buckets:
                break
        return ""

    @staticmethod
    def _lowest(
        bucket: _Bucket, pool: dict[Hashable, _Entry] | None, category: Category
    ) -> tuple[Category, Hashable, _Entry | None]:
        """The lowest-ranked record of ``pool`` (one category's group), or of the whole
        bucket when ``pool`` is None."""
        groups = {category: pool} if pool is not None else bucket.groups
        best: tuple[Category, Hashable, _Entry | None] = (category, None, None)
        best_rank: tuple[bool, int] | None = None
        for cat, group in groups.items():
            for slot, entry in group.items():
                r = _rank(entry)
                if best_rank is None or r < best_rank:
                    best, best_rank = (cat, slot, entry), r
        return best

    # -- internals: bookkeeping -------------------------------------------------------

    def _hold(
        self, k: bytes, bucket: _Bucket, category: Category, slot: Hashable, entry: _Entry
    ) -> None:
        """Account for ``entry`` just placed in ``bucket``."""
        self._records += 1
        self._bytes += entry.size
        bucket.count += 1
        if entry.vouched:
            self._vouched += 1
            bucket.vouched += 1
            self._plain_keys.pop(k, None)
        else:
            self._plain[(k, category, slot)] = None

    def _replace(
        self,
        k: bytes,
        bucket: _Bucket,
        category: Category,
        slot: Hashable,
        prev: _Entry,
        entry: _Entry,
    ) -> None:
        """Account for ``entry`` having replaced ``prev`` in its slot (same registration:
        an unvouched one keeps its place in the order)."""
        self._bytes += entry.size - prev.size
        if entry.vouched and not prev.vouched:
            self._plain.pop((k, category, slot), None)
            self._vouched += 1
            bucket.vouched += 1
            self._plain_keys.pop(k, None)

    def _unhold(
        self, k: bytes, bucket: _Bucket, category: Category, slot: Hashable, entry: _Entry
    ) -> None:
        """Account for ``entry`` just removed from ``bucket`` (the caller removed it)."""
        self._records -= 1
        self._bytes -= entry.size
        bucket.count -= 1
        if entry.vouched:
            self._vouched -= 1
            bucket.vouched -= 1
            if bucket.vouched == 0:
                self._plain_keys[k] = None
        else:
            self._plain.pop((k, category, slot), None)

    def _vouch(
        self, k: bytes, bucket: _Bucket, category: Category, slot: Hashable, entry: _Entry
    ) -> None:
        if entry.vouched:
            return
        self._plain.pop((k, category, slot), None)
        entry.vouched = True
        self._vouched += 1
        bucket.vouched += 1
        self._plain_keys.pop(k, None)

    def _evict(self, k: bytes, bucket: _Bucket, category: Category, slot: Hashable | None) -> None:
        if slot is None:  # pragma: no cover - callers only ask for a victim in a full group
            raise AssertionError("no record to evict")
        group = bucket.groups[category]
        entry = group.pop(slot)
        self._unhold(k, bucket, category, slot, entry)
        self._c["evicted"] += 1
        if not group:
            del bucket.groups[category]
        if not bucket.groups:
            self._forget_key(k)

    def _drop_key(self, k: bytes) -> None:
        bucket = self._buckets[k]
        for category, group in bucket.groups.items():
            for slot, entry in group.items():
                self._unhold(k, bucket, category, slot, entry)
                self._c["evicted"] += 1
        bucket.groups.clear()
        self._forget_key(k)

    def _forget_key(self, k: bytes) -> None:
        del self._buckets[k]
        self._plain_keys.pop(k, None)

    def _reject(self, outcome: PutOutcome, reason: str, key: bytes = b"") -> PutResult:
        if outcome is PutOutcome.REJECTED_POLICY:
            self._c["policy"] += 1
        else:
            self._c["invalid"] += 1
        return PutResult(outcome, reason, False, key)

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
            dead = [slot for slot, e in group.items() if e.expires < now_s]
            for slot in dead:
                self._unhold(k, bucket, category, slot, group.pop(slot))
            self._c["expired"] += len(dead)
            if not group:
                del bucket.groups[category]
                continue
            earliest = min(earliest, min(e.expires for e in group.values()))
        if not bucket.groups:
            self._forget_key(k)
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


def _norm_key(key: KeyLike) -> bytes:
    return key if isinstance(key, bytes) else bytes(key)
