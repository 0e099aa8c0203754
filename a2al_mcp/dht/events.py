"""Events the DHT core emits (drained with ``DhtCore.next_event``)."""

from __future__ import annotations

from typing import TypeAlias

from .._dataclass import dataclass
from .._types import Addr
from ..identity.aid import Aid, NodeId
from ..protocol.records import SignedRecord

__all__ = [
    "AddressObserved",
    "BootstrapFinished",
    "DhtEvent",
    "LookupFinished",
    "MailboxStored",
    "NatProbeEchoed",
    "NatProbeRequested",
    "PeerUnanswered",
    "PingFinished",
    "PublishFinished",
    "RecordPushed",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class PingFinished:
    op_id: int
    ok: bool
    """The peer answered."""
    aid: Aid | None = None
    """The AID that answered."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BootstrapFinished:
    op_id: int
    ok: bool
    """At least one seed answered."""
    seeds_answered: int
    peers: int
    """Routing-table size afterwards."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LookupFinished:
    op_id: int
    target: NodeId
    closest: tuple[tuple[Aid, Addr], ...]
    """The closest peers that answered."""
    records: tuple[SignedRecord, ...] = ()
    """Valid records found (the first one for resolve; newest per slot for aggregate)."""
    queried: int = 0
    """RPCs sent."""
    hops: int = 0
    """Sequential RPCs behind the result (0: answered from the local store)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishFinished:
    op_id: int
    key: NodeId
    stored_at: tuple[Aid, ...]
    """Replicas that accepted (or already had) the record."""
    refused: tuple[tuple[Aid, int], ...] = ()
    """Replicas that refused, with the STORE_RESP reason."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordPushed:
    """A subscribed key got a new record (DHT_PUSH), already verified."""

    key: NodeId
    record: SignedRecord
    source: Addr


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxStored:
    """A peer STOREd a new mailbox record (rec_type 0x80–0x8F) with us, already verified.

    a2ald files a note for a local agent as soon as its STORE arrives; the node does the same
    when ``key`` is the NodeID of one of its identities."""

    key: NodeId
    record: SignedRecord
    source: Addr


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressObserved:
    """A peer told us the address it sees us at (a natsense vote)."""

    reporter: Aid
    addr: Addr


@dataclass(frozen=True, slots=True, kw_only=True)
class NatProbeRequested:
    """A peer asks us to send a NAT_PROBE_ECHO with ``token`` to ``claimed`` (a2al-wire §4.4).

    Hostile input: the NAT layer decides whether to answer (``DhtCore.send_nat_echo``); the
    core never sends on its own to an address only the asker vouches for."""

    sender: Aid
    addr: Addr
    """Where the request came from."""
    token: bytes
    claimed: Addr


@dataclass(frozen=True, slots=True, kw_only=True)
class NatProbeEchoed:
    """A NAT_PROBE_ECHO arrived: the answer to a NAT_PROBE_REQ of ours, matched by ``token``
    in the NAT layer."""

    sender: Aid
    addr: Addr
    token: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerUnanswered:
    """A routing-table peer let an RPC's every attempt time out at ``addr``: for the Mode-B
    driver (a2al-wire §4.11), which may reach a NATed node over QUIC instead. Nobody needs
    to take it (the service ignores it)."""

    aid: Aid
    addr: Addr


DhtEvent: TypeAlias = (
    PingFinished
    | BootstrapFinished
    | LookupFinished
    | PublishFinished
    | RecordPushed
    | MailboxStored
    | AddressObserved
    | NatProbeRequested
    | NatProbeEchoed
    | PeerUnanswered
)
