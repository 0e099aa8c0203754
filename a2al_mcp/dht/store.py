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

Module map: this module decides what a put does (validation, authority, staleness, soft
expiry, list order) and answers reads; :mod:`.store_slots` says what a slot is and how held
records rank; :mod:`.store_room` holds the caps and makes room fairly;
:mod:`.store_ledger` files, evicts, purges and counts.
"""

from __future__ import annotations

from collections.abc import Hashable
from enum import Enum
from typing import Final, TypeAlias

from .._dataclass import dataclass
from ..config import LimitsConfig
from ..errors import A2ALError
from ..identity.aid import NodeId
from ..protocol import limits
from ..protocol.records import Category, RecType, SignedRecord
from ..protocol.timers import SOFT_EXPIRY_S
from .store_ledger import StoreLedger
from .store_room import StoreCaps, make_room
from .store_slots import (
    KEY_LEN,
    Entry,
    KeyRecords,
    expires_at,
    oldest,
    slot_of,
    soft_expiring,
    visible,
)

__all__ = ["SOFT_EXPIRY_S", "KeyLike", "PutOutcome", "PutResult", "RecordStore", "StoreStats"]


_ZERO_KEY: Final = bytes(KEY_LEN)
_DEFAULTS: Final = LimitsConfig()

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
    REJECTED_FULL = "rejected_full"
    """A cap is reached and every held record ranks above this one (see the module
    docstring): ``stored=false, reason=1`` (policy: the publisher should use another node)."""


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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

    __slots__ = ("_caps", "_held", "_since")

    def __init__(
        self,
        max_keys: int = _DEFAULTS.dht_keys,
        *,
        max_records: int = _DEFAULTS.dht_records,
        max_records_per_key: int = _DEFAULTS.dht_records_per_key,
        max_bytes: int = _DEFAULTS.dht_bytes,
    ) -> None:
        self._caps = StoreCaps(max_keys, max_records, max_records_per_key, max_bytes)
        self._held = StoreLedger()
        self._since = 0
        """The registration order given to the newest slot filled."""

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

        held = self._held
        now_s = int(now)
        bucket = held.live_bucket(k, now)
        slot = slot_of(record, category)
        group = bucket.groups.get(category) if bucket is not None else None
        old = group.get(slot) if group is not None else None
        soft = soft_expiring(record.rec_type)
        if old is not None and not record.is_newer_than(old.record):
            held.counts["stale"] += 1
            if soft and from_publisher:
                old.soft_deadline = None
            if vouched and bucket is not None:
                held.vouch(k, bucket, category, slot, old)
            return PutResult(PutOutcome.STALE, "already holds an equal or newer record", False, k)

        if not soft or from_publisher:
            deadline: float | None = None
        elif old is not None and visible(old, now):
            deadline = old.soft_deadline  # an occupied slot keeps whatever it had
        else:
            deadline = now + SOFT_EXPIRY_S

        size = len(record.to_bytes())
        since = old.since if old is not None else self._since + 1
        entry = Entry(record, deadline, expires_at(record, now_s), size,
                      vouched or (old is not None and old.vouched), since)  # fmt: skip
        full = make_room(held, self._caps, k, category, slot, old, entry, now_s)
        if full:
            held.counts[full] += 1
            return PutResult(PutOutcome.REJECTED_FULL, full, False, k)
        if old is None:
            self._since = since
        self._file(k, category, slot, entry)
        held.counts["stored"] += 1
        return PutResult(PutOutcome.STORED, "stored", True, k)

    def _file(self, k: bytes, category: Category, slot: Hashable, entry: Entry) -> None:
        """Put ``entry`` in its slot at ``k``, its category last in the key's list order."""
        held = self._held
        bucket = held.buckets.get(k)  # making room may have dropped or purged it
        if bucket is None:
            bucket = held.buckets[k] = KeyRecords()
            held.plain_keys[k] = None
        group = bucket.groups.pop(category, None) or {}
        prev = group.pop(slot, None)
        group[slot] = entry
        bucket.groups[category] = group  # the category just stored moves to the end
        if prev is None:
            held.hold(k, bucket, category, slot, entry)
        else:
            held.replace(k, bucket, category, slot, prev, entry)
        if category is Category.MAILBOX:  # a2ald: a sender's own oldest notes go first
            address = bytes(entry.record.address)
            same = sum(1 for e in group.values() if bytes(e.record.address) == address)
            while same > limits.MAILBOX_PER_PUBKEY:
                held.evict(k, bucket, category, oldest(group, address))
                same -= 1
        if entry.expires < bucket.next_expiry:
            bucket.next_expiry = entry.expires
            held.push_expiry(k, bucket)

    def remove_expired(self, now: float) -> int:
        """Purge every record whose TTL ran out; drop keys left empty.

        Costs in proportion to the keys that hold expired records, not to the store size.

        Returns:
            The number of records removed.
        """
        return self._held.remove_expired(int(now))

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
        bucket = self._held.live_bucket(_norm_key(key), now)
        if bucket is None:
            return []
        return [
            entry.record
            for group in bucket.groups.values()
            for entry in group.values()
            if (rec_type == 0 or entry.record.rec_type == rec_type) and visible(entry, now)
        ]

    def newest_endpoint(self, key: KeyLike, now: float) -> SignedRecord | None:
        """The newest currently valid endpoint record at ``key`` (FIND_VALUE's legacy
        ``record``), or None."""
        bucket = self._held.live_bucket(_norm_key(key), now)
        group = bucket.groups.get(Category.SOVEREIGN) if bucket is not None else None
        if group is None:
            return None
        best: SignedRecord | None = None
        for entry in group.values():
            record = entry.record
            if record.rec_type != RecType.ENDPOINT or not visible(entry, now):
                continue
            if best is None or record.is_newer_than(best):
                best = record
        return best

    def __len__(self) -> int:
        """Records held (including soft-hidden ones and expired ones not yet purged)."""
        return self._held.records

    @property
    def key_count(self) -> int:
        """Distinct keys held."""
        return len(self._held.buckets)

    @property
    def max_keys(self) -> int:
        """The distinct-key cap."""
        return self._caps.max_keys

    @property
    def byte_count(self) -> int:
        """Encoded bytes of the records held."""
        return self._held.bytes

    def statistics(self) -> StoreStats:
        """Current size and lifetime counters."""
        held = self._held
        c = held.counts
        return StoreStats(
            keys=len(held.buckets), records=held.records, stored=c["stored"],
            stale=c["stale"], rejected_policy=c["policy"], rejected_invalid=c["invalid"],
            evicted=c["evicted"], expired=c["expired"], bytes=held.bytes,
            vouched=held.vouched, refused_keys=c["keys"], refused_records=c["records"],
            refused_bytes=c["bytes"], refused_per_key=c["per_key"],
        )  # fmt: skip

    def _reject(self, outcome: PutOutcome, reason: str, key: bytes = b"") -> PutResult:
        counter = "policy" if outcome is PutOutcome.REJECTED_POLICY else "invalid"
        self._held.counts[counter] += 1
        return PutResult(outcome, reason, False, key)


def _norm_key(key: KeyLike) -> bytes:
    return key if isinstance(key, bytes) else bytes(key)
