"""DHT messages: the signed outer map, the header and the twelve bodies (a2al-wire §4.2–4.4).

Outer canonical map::

    1 header        {1 version, 2 features, 3 msg_type, 4 tx_id (20 bytes)}
    2 body          the body map, embedded verbatim
    3 sender_pubkey bstr 32, the sending node's Ed25519 key
    4 signature     bstr 64 over "a2al-msg\\0" ‖ header ‖ body

:func:`encode_message` signs and encodes. :func:`decode_message` parses (raising only
DecodeError) and keeps the exact signed bytes as received, so :meth:`Message.verify`
checks the signature over the raw header and body spans: a message from a newer peer
with an extra field still verifies (§1.2).
"""

from __future__ import annotations

import dataclasses
from enum import IntEnum
from typing import Any, ClassVar, Final, Self, TypeAlias

from .. import _cbor
from .._dataclass import dataclass
from .._types import Addr
from ..errors import DecodeError, LimitExceeded, UsageError, VerificationError
from ..identity.aid import Aid, NodeId
from ..identity.keys import SigningKey, VerifyKey
from . import limits
from .records import SignedRecord
from .wireaddr import decode_addr, encode_addr, ip_from_bytes

__all__ = [
    "Body",
    "DhtPush",
    "DhtPushAck",
    "FindNode",
    "FindNodeResp",
    "FindValue",
    "FindValueResp",
    "Message",
    "MsgType",
    "NatProbeEcho",
    "NatProbeReq",
    "NodeInfo",
    "Ping",
    "Pong",
    "ReceivePoolHint",
    "Store",
    "StoreReason",
    "StoreResp",
    "decode_body",
    "decode_message",
    "encode_body",
    "encode_message",
]

MESSAGE_PREFIX: Final = b"a2al-msg\x00"


class MsgType(IntEnum):
    """DHT message types."""

    PING = 0x01
    PONG = 0x02
    FIND_NODE = 0x03
    FIND_NODE_RESP = 0x04
    FIND_VALUE = 0x05
    FIND_VALUE_RESP = 0x06
    STORE = 0x07
    STORE_RESP = 0x08
    NAT_PROBE_REQ = 0x09
    NAT_PROBE_ECHO = 0x0A
    DHT_PUSH = 0x0B
    DHT_PUSH_ACK = 0x0C


class StoreReason(IntEnum):
    """Why a STORE was refused."""

    OK = 0
    POLICY = 1
    INVALID = 2


def _node_id(f: _cbor.Fields, key: int) -> NodeId:
    return NodeId(f.bytes_(key, size=32))


def _addr(f: _cbor.Fields, key: int) -> Addr:
    return decode_addr(f.bytes_(key, size=(6, 18)))


def _records(items: list[Any] | None) -> tuple[SignedRecord, ...]:
    return tuple(SignedRecord.from_map(r) for r in items or ())


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    """A peer in a FIND_* response: AID, NodeID and a UDP address."""

    address: Aid
    node_id: NodeId
    ip: bytes
    """4 (IPv4) or 16 (IPv6) bytes."""
    port: int

    @classmethod
    def of(cls, address: Aid, addr: Addr) -> Self:
        """The NodeInfo of a peer at ``addr`` (NodeID derived from the AID)."""
        from .wireaddr import ip_bytes

        return cls(address=address, node_id=address.node_id, ip=ip_bytes(addr[0]), port=addr[1])

    @property
    def addr(self) -> Addr:
        """``(host, port)``."""
        return ip_from_bytes(self.ip), self.port

    def to_map(self) -> dict[int, Any]:
        return {1: bytes(self.address), 2: bytes(self.node_id), 3: self.ip, 4: self.port}

    @classmethod
    def from_map(cls, value: object) -> Self:
        if not isinstance(value, dict):
            raise DecodeError("NodeInfo must be a CBOR map")
        # Fast path for the well-formed shape (up to 16 of these per answer).
        a, n, ip, port = value.get(1), value.get(2), value.get(3), value.get(4)
        if (
            type(a) is bytes
            and len(a) == 21
            and 0xA0 <= a[0] <= 0xAF
            and type(n) is bytes
            and len(n) == 32
            and type(ip) is bytes
            and len(ip) in (4, 16)
            and type(port) is int
            and 0 <= port <= 0xFFFF
        ):
            return cls(address=Aid(a), node_id=NodeId(n), ip=ip, port=port)
        f = _cbor.Fields(value, "NodeInfo")
        return cls(
            address=Aid(f.bytes_(1, size=21)),
            node_id=_node_id(f, 2),
            ip=f.bytes_(3, size=(4, 16)),
            port=f.uint(4, 16),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivePoolHint:
    """a2ald 0.3.5: records waiting for the publisher at the storing node."""

    rec_type: int
    count: int
    ids: tuple[bytes, ...] = ()

    def to_map(self) -> dict[int, Any]:
        m: dict[int, Any] = {1: self.rec_type, 2: self.count}
        if self.ids:
            m[3] = list(self.ids)
        return m

    @classmethod
    def from_map(cls, value: object) -> Self:
        if not isinstance(value, dict):
            raise DecodeError("ReceivePoolHint must be a CBOR map")
        f = _cbor.Fields(value, "ReceivePoolHint")
        ids = f.list_(3) or []
        if not all(isinstance(i, bytes) for i in ids):
            raise DecodeError("ReceivePoolHint: ids must be byte strings")
        return cls(rec_type=f.uint(1, 8), count=f.uint(2, 16), ids=tuple(ids))


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """Liveness check; ``address`` must be the sender's AID."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.PING
    address: Aid

    def to_map(self) -> dict[int, Any]:
        return {1: bytes(self.address)}

    @classmethod
    def from_fields(cls, f: _cbor.Fields) -> Self:
        return cls(address=Aid(f.bytes_(1, size=21)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    """Answer to PING: the responder's AID and the requester's address as seen."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.PONG
    address: Aid
    observed_addr: Addr

    def to_map(self) -> dict[int, Any]:
        return {1: bytes(self.address), 2: encode_addr(self.observed_addr)}

    @classmethod
    def from_fields(cls, f: _cbor.Fields) -> Self:
        return cls(address=Aid(f.bytes_(1, size=21)), observed_addr=_addr(f, 2))


@dataclass(frozen=True, slots=True, kw_only=True)
class FindNode:
    """Ask for the peers nearest to ``target``."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.FIND_NODE
    target: NodeId

    def to_map(self) -> dict[int, Any]:
        return {1: bytes(self.target)}

    @classmethod
    def from_fields(cls, f: _cbor.Fields) -> Self:
        return cls(target=_node_id(f, 1))


@dataclass(frozen=True, slots=True, kw_only=True)
class FindNodeResp:
    """Up to K peers, and the requester's address as seen."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.FIND_NODE_RESP
    nodes: tuple[NodeInfo, ...]
    observed_addr: Addr

    def to_map(self) -> dict[int, Any]:
        return {1: [n.to_map() for n in self.nodes], 2: encode_addr(self.observed_addr)}

    @classmethod
    def from_fields(cls, f: _cbor.Fields) -> Self:
        nodes = tuple(NodeInfo.from_map(n) for n in f.list_(1) or ())
        return cls(nodes=nodes, observed_addr=_addr(f, 2))


@dataclass(frozen=True, slots=True, kw_only=True)
class FindValue:
    """Ask for the records stored at ``target`` (all types when ``rec_type`` is 0)."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.FIND_VALUE
    target: NodeId
    rec_type: int = 0
    one_shot_subscribe: bool = False

    def to_map(self) -> dict[int, Any]:
        m: dict[int, Any] = {1: bytes(self.target)}
        if self.rec_type:
            m[2] = self.rec_type
        if self.one_shot_subscribe:
            m[3] = True
        return m

    @classmethod
    def from_fields(cls, f: _cbor.Fields) -> Self:
        return cls(target=_node_id(f, 1), rec_type=f.uint(2, 8), one_shot_subscribe=f.bool_(3))


@dataclass(frozen=True, slots=True, kw_only=True)
class FindValueResp:
    """Records at the target (key 4; legacy single record in key 2) plus nearer peers."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.FIND_VALUE_RESP
    nodes: tuple[NodeInfo, ...]
    observed_addr: Addr
    records: tuple[SignedRecord, ...] = ()
    record: SignedRecord | None = None

    def to_map(self) -> dict[int, Any]:
        m: dict[int, Any] = {1: [n.to_map() for n in self.nodes]}
        if self.record is not None:
            m[2] = self.record.to_map()
        m[3] = encode_addr(self.observed_addr)
        if self.records:
            m[4] = [r.to_map() for r in self.records]
        return m

    @classmethod
    def from_fields(cls, f: _cbor.Fields) -> Self:
        legacy = f.map_(2)
        return cls(
            nodes=tuple(NodeInfo.from_map(n) for n in f.list_(1) or ()),
            record=SignedRecord.from_map(legacy) if legacy is not None else None,
            observed_addr=_addr(f, 3),
            records=_records(f.list_(4)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Store:
    """Store ``record`` under ``key`` (None: NodeID(record.address))."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.STORE
    record: SignedRecord
    key: NodeId | None = None

    def to_map(self) -> dict[int, Any]:
        m: dict[int, Any] = {1: self.record.to_map()}
        if self.key is not None:
            m[2] = bytes(self.key)
        return m

    @classmethod
    def from_fields(cls, f: _cbor.Fields) -> Self:
        key = f.bytes_(2, size=(0, 32))
        return cls(record=SignedRecord.from_map(f.raw(1)), key=NodeId(key) if key else None)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreResp:
    """Outcome of a STORE."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.STORE_RESP
    stored: bool
    already_had: bool = False
    reason: int = StoreReason.OK
    pool: tuple[ReceivePoolHint, ...] = ()

    def to_map(self) -> dict[int, Any]:
        m: dict[int, Any] = {1: self.stored}
        if self.already_had:
            m[2] = True
        if self.reason:
            m[3] = int(self.reason)
        if self.pool:
            m[4] = [p.to_map() for p in self.pool]
        return m

    @classmethod
    def from_fields(cls, f: _cbor.Fields) -> Self:
        return cls(
            stored=f.bool_(1),
            already_had=f.bool_(2),
            reason=f.uint(3, 8),
            pool=tuple(ReceivePoolHint.from_map(p) for p in f.list_(4) or ()),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class NatProbeReq:
    """Ask a peer to send a NAT_PROBE_ECHO to ``claimed_addr``."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.NAT_PROBE_REQ
    token: bytes
    claimed_addr: Addr

    def to_map(self) -> dict[int, Any]:
        return {1: self.token, 2: encode_addr(self.claimed_addr)}

    @classmethod
    def from_fields(cls, f: _cbor.Fields) -> Self:
        return cls(token=f.bytes_(1, size=limits.NAT_TOKEN_LEN), claimed_addr=_addr(f, 2))


@dataclass(frozen=True, slots=True, kw_only=True)
class NatProbeEcho:
    """The echo of a NAT probe, carrying the request's token."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.NAT_PROBE_ECHO
    token: bytes

    def to_map(self) -> dict[int, Any]:
        return {1: self.token}

    @classmethod
    def from_fields(cls, f: _cbor.Fields) -> Self:
        return cls(token=f.bytes_(1, size=limits.NAT_TOKEN_LEN))


@dataclass(frozen=True, slots=True, kw_only=True)
class DhtPush:
    """A new record for a one-shot subscriber of ``key``."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.DHT_PUSH
    key: NodeId
    record: SignedRecord

    def to_map(self) -> dict[int, Any]:
        return {1: bytes(self.key), 2: self.record.to_map()}

    @classmethod
    def from_fields(cls, f: _cbor.Fields) -> Self:
        return cls(key=_node_id(f, 1), record=SignedRecord.from_map(f.raw(2)))


@dataclass(frozen=True, slots=True, kw_only=True)
class DhtPushAck:
    """Acknowledges a push; ``one_shot_subscribe`` re-arms the subscription."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.DHT_PUSH_ACK
    key: NodeId
    msg_id: bytes
    one_shot_subscribe: bool = False

    def to_map(self) -> dict[int, Any]:
        m: dict[int, Any] = {1: bytes(self.key), 2: self.msg_id}
        if self.one_shot_subscribe:
            m[3] = True
        return m

    @classmethod
    def from_fields(cls, f: _cbor.Fields) -> Self:
        return cls(key=_node_id(f, 1), msg_id=f.bytes_(2, size=32), one_shot_subscribe=f.bool_(3))


Body: TypeAlias = (
    Ping
    | Pong
    | FindNode
    | FindNodeResp
    | FindValue
    | FindValueResp
    | Store
    | StoreResp
    | NatProbeReq
    | NatProbeEcho
    | DhtPush
    | DhtPushAck
)

_BODIES: Final[dict[int, Any]] = {
    cls.MSG_TYPE: cls
    for cls in (
        Ping, Pong, FindNode, FindNodeResp, FindValue, FindValueResp,
        Store, StoreResp, NatProbeReq, NatProbeEcho, DhtPush, DhtPushAck,
    )
}  # fmt: skip


def encode_body(body: Body) -> bytes:
    """Canonical CBOR of a body (every ``to_map`` inserts its integer keys in ascending
    order, so no sorting is needed)."""
    return _cbor.dumps_ordered(body.to_map())


def decode_body(msg_type: int, data: bytes) -> Body:
    """Decode a body of the given type.

    Raises:
        DecodeError: unknown type, malformed CBOR, or wrong field types/sizes.
    """
    cls = _BODIES.get(msg_type)
    if cls is None:
        raise DecodeError(f"unknown DHT msg_type 0x{msg_type:02x}")
    body: Body = cls.from_fields(_cbor.loads_map(data, cls.__name__))
    return body


def _header_bytes(msg_type: int, tx_id: bytes, version: int, features: int) -> bytes:
    return _cbor.dumps({1: version, 2: features, 3: msg_type, 4: tx_id})


def _assemble(header: bytes, body: bytes, pubkey: bytes, signature: bytes) -> bytes:
    # keys 1..4 are single bytes in ascending order, so this is the canonical map
    return (
        b"\xa4\x01" + header + b"\x02" + body
        + b"\x03\x58\x20" + pubkey + b"\x04\x58\x40" + signature
    )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A decoded DHT message. Call :meth:`verify` before trusting it."""

    body: Body
    tx_id: bytes
    """20-byte transaction ID."""
    sender_pubkey: bytes
    """The sending node's Ed25519 key."""
    signature: bytes
    version: int = limits.PROTOCOL_VERSION
    features: int = 0
    signed: bytes = dataclasses.field(default=b"", compare=False, repr=False)
    """The exact bytes the signature should cover, taken from the datagram."""

    @property
    def msg_type(self) -> MsgType:
        return self.body.MSG_TYPE

    @property
    def sender(self) -> Aid:
        """The sender's AID, derived from its key (DHT nodes are native identities)."""
        return Aid.from_public_key(self.sender_pubkey)

    def verify(self) -> None:
        """Check the signature and, for PING/PONG, that the body names the sender.

        Raises:
            VerificationError: the signature does not verify or the address mismatches.
        """
        signed = self.signed or self._canonical_signed()
        if not VerifyKey(self.sender_pubkey).is_valid(self.signature, signed):
            raise VerificationError(f"{self.msg_type.name} signature does not verify")
        if isinstance(self.body, Ping | Pong) and self.body.address != self.sender:
            raise VerificationError(f"{self.msg_type.name} address is not the sender's AID")

    def _canonical_signed(self) -> bytes:
        header = _header_bytes(self.msg_type, self.tx_id, self.version, self.features)
        return MESSAGE_PREFIX + header + encode_body(self.body)

    def to_bytes(self) -> bytes:
        """Re-encode canonically from the fields (with the original signature)."""
        header = _header_bytes(self.msg_type, self.tx_id, self.version, self.features)
        return _assemble(header, encode_body(self.body), self.sender_pubkey, self.signature)


def encode_message(
    body: Body, *, tx_id: bytes, key: SigningKey, body_bytes: bytes | None = None
) -> bytes:
    """Sign ``body`` with the node key and encode the datagram. ``body_bytes``, when the
    caller already has it, must be ``encode_body(body)``.

    Raises:
        UsageError: the tx_id is not 20 bytes.
        LimitExceeded: the datagram would exceed 1200 bytes (trim the body first).
    """
    if len(tx_id) != limits.TX_ID_LEN:
        raise UsageError(f"tx_id must be {limits.TX_ID_LEN} bytes")
    header = _header_bytes(body.MSG_TYPE, tx_id, limits.PROTOCOL_VERSION, 0)
    if body_bytes is None:
        body_bytes = encode_body(body)
    signature = key.sign(MESSAGE_PREFIX + header + body_bytes)
    data = _assemble(header, body_bytes, bytes(key.public), signature)
    if len(data) > limits.MAX_DATAGRAM:
        raise LimitExceeded(
            f"{body.MSG_TYPE.name} datagram is {len(data)} bytes; "
            f"the limit is {limits.MAX_DATAGRAM}"
        )
    return data


def _outer_spans(data: bytes) -> tuple[tuple[int, int], tuple[int, int], bytes, bytes]:
    """Spans of header and body, and the values of keys 3 and 4."""
    n = len(data)
    # Fast path: the canonical layout every A2AL node emits.
    if n > 104 and data[0] == 0xA4 and data[1] == 0x01:
        h_end = _cbor.item_end(data, 2)
        if (
            h_end < n - 102
            and data[h_end] == 0x02
            and data[n - 102 : n - 99] == b"\x03\x58\x20"
            and data[n - 67 : n - 64] == b"\x04\x58\x40"
        ):
            return (2, h_end), (h_end + 1, n - 102), data[n - 99 : n - 67], data[n - 64 :]
    # General path: any key order, unknown keys ignored.
    spans = _cbor.map_value_spans(data)
    if not all(k in spans for k in (1, 2, 3, 4)):
        raise DecodeError("DHT message lacks header, body, sender key or signature")
    pk = _cbor.loads(data[slice(*spans[3])])
    sig = _cbor.loads(data[slice(*spans[4])])
    if not isinstance(pk, bytes) or not isinstance(sig, bytes):
        raise DecodeError("DHT message sender_pubkey and signature must be byte strings")
    return spans[1], spans[2], pk, sig


def decode_message(data: bytes) -> Message:
    """Parse a DHT datagram without verifying it.

    Raises:
        DecodeError: anything malformed: never any other exception.
    """
    if not isinstance(data, bytes):
        raise TypeError("decode_message takes bytes")
    (h0, h1), (b0, b1), pubkey, signature = _outer_spans(data)
    header = _cbor.loads_map(data[h0:h1], "DHT header")
    tx_id = header.bytes_(4, size=limits.TX_ID_LEN)
    if len(pubkey) != 32 or len(signature) != 64:
        raise DecodeError("DHT message sender_pubkey must be 32 bytes and signature 64")
    msg_type = header.uint(3, 8)
    body_bytes = data[b0:b1]
    return Message(
        body=decode_body(msg_type, body_bytes),
        tx_id=tx_id,
        sender_pubkey=pubkey,
        signature=signature,
        version=header.uint(1, 8),
        features=header.uint(2, 16),
        signed=MESSAGE_PREFIX + data[h0:h1] + body_bytes,
    )


def decode_verified(data: bytes) -> Message:
    """:func:`decode_message` then :meth:`Message.verify`."""
    msg = decode_message(data)
    msg.verify()
    return msg
