"""SignedRecord: the signed container every DHT value travels in (a2al-wire §3).

Canonical CBOR map::

    1 address    bstr 21   the AID the record is about (mailbox: the sender)
    2 rec_type   uint8
    3 payload    bstr      type-specific CBOR, carried opaquely
    4 seq        uint64
    5 timestamp  uint64    Unix seconds
    6 ttl        uint32    seconds
    7 pubkey     bstr 32   the Ed25519 key that signed (owner or operational key)
    8 signature  bstr 64   over "a2al-rec\\0" ‖ canonical{1..6}
    9 delegation bstr      DelegationProof CBOR; omitted when absent

Validity (:meth:`SignedRecord.verify`) is signature + payload rules + freshness;
authority (:meth:`SignedRecord.check_authority`) is whether the key may speak for the AID.
"""

from __future__ import annotations

import dataclasses
from enum import Enum, IntEnum
from typing import Any, Final, Self

from .. import _cbor, _digest
from .._dataclass import dataclass
from ..errors import DecodeError, UsageError, VerificationError
from ..identity.aid import Aid
from ..identity.delegation import CLOCK_SKEW_S as DELEGATION_SKEW_S
from ..identity.delegation import DelegationProof
from ..identity.keys import VerifyKey
from ..identity.local import Identity
from . import limits
from .payloads import EndpointPayload, TopicPayload

__all__ = ["Category", "RecType", "SignedRecord", "category_of"]

RECORD_PREFIX: Final = b"a2al-rec\x00"


class RecType(IntEnum):
    """Assigned record types."""

    ENDPOINT = 0x01
    PROFILE = 0x02
    TOPIC = 0x10
    MAILBOX = 0x80


class Category(Enum):
    """How a record type is keyed and stored."""

    SOVEREIGN = "sovereign"
    """Keyed at NodeID(address); one slot per (address, rec_type)."""
    TOPIC = "topic"
    """Keyed at the topic key; one slot per signing pubkey."""
    MAILBOX = "mailbox"
    """Keyed at NodeID(recipient); slots per (pubkey, payload)."""


def category_of(rec_type: int) -> Category:
    """The storage category of a rec_type (unknown types are sovereign)."""
    if 0x10 <= rec_type <= 0x1F:
        return Category.TOPIC
    if 0x80 <= rec_type <= 0x8F:
        return Category.MAILBOX
    return Category.SOVEREIGN


def _signable(rec_type: int) -> bool:
    return rec_type == 0x01 or 0x02 <= rec_type <= 0x1F or 0x80 <= rec_type <= 0x8F


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedRecord:
    """A signed DHT record. Construct with :meth:`sign` or decode with :meth:`from_bytes`."""

    address: Aid
    """The AID the record is about (for mailbox records: the sender)."""
    rec_type: int
    """Record type (see :class:`RecType`)."""
    payload: bytes
    """The type-specific payload CBOR, signed as opaque bytes."""
    seq: int
    """Sequence number (Unix nanoseconds for topic and mailbox records)."""
    timestamp: int
    """Unix seconds at signing."""
    ttl: int
    """Lifetime in seconds from ``timestamp``."""
    pubkey: bytes
    """The Ed25519 key that signed."""
    signature: bytes
    """Ed25519 signature over :meth:`signed_bytes`."""
    delegation: bytes = b""
    """Raw DelegationProof CBOR when a delegated (operational) key signed."""
    _signature_ok: bool = dataclasses.field(default=False, init=False, repr=False, compare=False)
    # set once the signature verified: the fields are immutable, so it stays true (a resolve
    # checks a record when the lookup accepts it and again when it is cached)
    _delegation_expires: int | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )
    # once the delegation proof verified for this record (key, AID, scope, owner signature:
    # all immutable), its expires_at; only the expiry is checked again

    # -- construction ---------------------------------------------------------------

    @classmethod
    def sign(
        cls,
        identity: Identity,
        rec_type: int,
        payload: bytes,
        *,
        seq: int,
        timestamp: int,
        ttl: int = limits.DEFAULT_RECORD_TTL_S,
    ) -> Self:
        """Sign a record as ``identity`` (attaching its delegation proof, if any).

        Raises:
            UsageError: rec_type not signable, ttl not positive, or a field out of range.
        """
        if not _signable(rec_type):
            raise UsageError(f"rec_type 0x{rec_type:02x} cannot be signed")
        if not 0 < ttl <= 0xFFFF_FFFF:
            raise UsageError("ttl must be between 1 and 2^32-1 seconds")
        if not (0 <= seq < 2**64 and 0 <= timestamp < 2**64):
            raise UsageError("seq and timestamp must be unsigned 64-bit integers")
        unsigned = cls(
            address=identity.aid,
            rec_type=rec_type,
            payload=payload,
            seq=seq,
            timestamp=timestamp,
            ttl=ttl,
            pubkey=bytes(identity.key.public),
            signature=b"",
            delegation=identity.delegation.to_bytes() if identity.delegation else b"",
        )
        return dataclasses.replace(unsigned, signature=identity.sign(unsigned.signed_bytes()))

    def signed_bytes(self) -> bytes:
        """The message the signature covers: prefix ‖ canonical{1..6}.

        Built by hand (a fixed shape of scalars in key order): this is on the hot path of
        every received record, and generic canonical encoding is several times slower.
        """
        h = _cbor.head
        return b"".join(
            (
                RECORD_PREFIX,
                b"\xa6\x01\x55",  # map(6), key 1, bstr(21)
                bytes(self.address),
                b"\x02",
                h(0, self.rec_type),
                b"\x03",
                h(2, len(self.payload)),
                self.payload,
                b"\x04",
                h(0, self.seq),
                b"\x05",
                h(0, self.timestamp),
                b"\x06",
                h(0, self.ttl),
            )
        )

    # -- wire form --------------------------------------------------------------------

    def to_map(self) -> dict[int, Any]:
        """The CBOR map, for embedding in DHT message bodies."""
        m: dict[int, Any] = {
            1: bytes(self.address),
            2: self.rec_type,
            3: self.payload,
            4: self.seq,
            5: self.timestamp,
            6: self.ttl,
            7: self.pubkey,
            8: self.signature,
        }
        if self.delegation:
            m[9] = self.delegation
        return m

    def to_bytes(self) -> bytes:
        """Canonical CBOR of the record."""
        return _cbor.dumps(self.to_map())

    @classmethod
    def from_map(cls, value: object) -> Self:
        """Build from a decoded CBOR map, with the wire-shape check (21/32/64 bytes).

        Raises:
            DecodeError: not a map, wrong field types, or wrong sizes.
        """
        if not isinstance(value, dict):
            raise DecodeError("record must be a CBOR map")
        fast = cls._from_map_fast(value)
        if fast is not None:
            return fast
        f = _cbor.Fields(value, "record")
        return cls(
            address=Aid(f.bytes_(1, size=21)),
            rec_type=f.uint(2, 8),
            payload=f.bytes_(3),
            seq=f.uint(4),
            timestamp=f.uint(5),
            ttl=f.uint(6, 32),
            pubkey=f.bytes_(7, size=32),
            signature=f.bytes_(8, size=64),
            delegation=f.bytes_(9),
        )

    @classmethod
    def _from_map_fast(cls, m: dict[Any, Any]) -> Self | None:
        """The common well-formed case with direct checks; None sends the caller down the
        field-by-field path that names what is wrong."""
        get = m.get
        address, rec_type, payload = get(1), get(2), get(3)
        seq, timestamp, ttl = get(4), get(5), get(6)
        pubkey, signature, delegation = get(7), get(8), get(9, b"")
        if not (
            type(address) is bytes
            and len(address) == 21
            and 0xA0 <= address[0] <= 0xAF
            and type(payload) is bytes
            and type(pubkey) is bytes
            and len(pubkey) == 32
            and type(signature) is bytes
            and len(signature) == 64
            and type(delegation) is bytes
            and type(rec_type) is int
            and 0 <= rec_type <= 0xFF
            and type(seq) is int
            and 0 <= seq < 2**64
            and type(timestamp) is int
            and 0 <= timestamp < 2**64
            and type(ttl) is int
            and 0 <= ttl < 2**32
        ):
            return None
        return cls(
            address=Aid(address),
            rec_type=rec_type,
            payload=payload,
            seq=seq,
            timestamp=timestamp,
            ttl=ttl,
            pubkey=pubkey,
            signature=signature,
            delegation=delegation,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode a record from its CBOR bytes."""
        return cls.from_map(_cbor.loads(data))

    # -- derived facts ----------------------------------------------------------------

    @property
    def category(self) -> Category:
        """Storage category of this record's type."""
        return category_of(self.rec_type)

    @property
    def expires_at(self) -> int:
        """Unix second after which the record is expired."""
        return self.timestamp + self.ttl

    @property
    def msg_id(self) -> bytes:
        """SHA-256 of the payload: the ID a2ald uses for dedup and ACKs."""
        if self.payload:
            return _digest.sha256(self.payload).digest()
        return _digest.sha256(bytes(self.address) + self.seq.to_bytes(8, "big")).digest()

    def default_key(self) -> bytes:
        """The DHT key a STORE without an explicit key files this record under."""
        return bytes(self.address.node_id)

    def delegation_proof(self) -> DelegationProof | None:
        """The parsed delegation proof (None if absent).

        Raises:
            DecodeError: the delegation bytes are malformed.
        """
        return DelegationProof.from_bytes(self.delegation) if self.delegation else None

    def delegation_issued_at(self) -> int:
        """The delegation's issued_at, or 0 if absent or unparseable (RecordIsNewer)."""
        if not self.delegation:
            return 0
        try:
            return DelegationProof.from_bytes(self.delegation).issued_at
        except DecodeError:
            return 0

    def is_newer_than(self, other: SignedRecord) -> bool:
        """a2ald's RecordIsNewer: delegation issued_at, then seq, then timestamp."""
        mine, theirs = self.delegation_issued_at(), other.delegation_issued_at()
        if mine != theirs:
            return mine > theirs
        if self.seq != other.seq:
            return self.seq > other.seq
        return self.timestamp > other.timestamp

    # -- validation -------------------------------------------------------------------

    def verify(self, now: float) -> None:
        """Signature, payload rules and freshness at Unix time ``now`` (a2ald's
        VerifySignedRecord). Does not check authority; see :meth:`check_authority`.

        Raises:
            VerificationError: with the reason (bad signature, payload rule, future, expired).
        """
        if not self._signature_ok:
            if not VerifyKey(self.pubkey).is_valid(self.signature, self.signed_bytes()):
                raise VerificationError("record signature does not verify")
            object.__setattr__(self, "_signature_ok", True)  # frozen: the one cached fact
        try:
            if self.rec_type == RecType.ENDPOINT:
                EndpointPayload.from_bytes(self.payload)
            elif self.rec_type == RecType.TOPIC:
                TopicPayload.from_bytes(self.payload)
        except DecodeError as exc:
            raise VerificationError(f"record payload invalid: {exc}") from exc
        if self.category is Category.MAILBOX and len(self.payload) > limits.MAILBOX_PAYLOAD_MAX:
            raise VerificationError("mailbox payload over 512 bytes")
        if self.timestamp > now + limits.CLOCK_SKEW_S:
            raise VerificationError(
                f"record timestamp {self.timestamp} is more than 60 s in the future"
            )
        if self.timestamp + self.ttl < int(now):
            raise VerificationError(f"record expired at {self.timestamp + self.ttl}")

    def check_authority(self, now: float, key: bytes | None = None) -> None:
        """May ``pubkey`` speak for ``address``? (a2ald's recordAuthPolicy)

        Args:
            now: Unix time, for the delegation's expiry.
            key: the DHT key the record is filed under; sovereign records must sit at
                NodeID(address).

        Raises:
            VerificationError: wrong key placement, or neither own key nor a valid delegation.
        """
        if key is not None and self.category is Category.SOVEREIGN and key != self.default_key():
            raise VerificationError("sovereign record filed under a key other than NodeID(address)")
        if self.address.matches_key(self.pubkey):
            return
        if not self.delegation:
            raise VerificationError("record key does not own the AID and carries no delegation")
        expires = self._delegation_expires
        if expires is not None:  # verified before: only time has moved
            if expires and now >= expires + DELEGATION_SKEW_S:
                raise VerificationError(f"delegation proof expired at {expires}")
            return
        try:
            proof = DelegationProof.from_bytes(self.delegation)
        except DecodeError as exc:
            raise VerificationError(f"record delegation malformed: {exc}") from exc
        proof.verify(now, op_pub=self.pubkey, agent=self.address)
        object.__setattr__(self, "_delegation_expires", proof.expires_at)  # frozen: cached

    def validate(self, now: float, key: bytes | None = None) -> None:
        """:meth:`verify` and :meth:`check_authority` together."""
        self.verify(now)
        self.check_authority(now, key)
