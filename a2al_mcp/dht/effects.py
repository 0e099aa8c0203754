"""What a DHT operation (:mod:`a2al_mcp.dht.ops`) is, what it is told and what it asks for.

An operation is a small state machine: ``op.advance(event, view) -> list[Effect]``. The core
routes each response or failed request to the operation that owns its transaction, and
carries out the effects it returns, in order. An operation reads the core through a
read-only :class:`CoreView` and changes nothing outside itself: every request, every routing
or store change and its end are effects.

Inputs: :class:`Start`, :class:`Replied`, :class:`Answered`, :class:`Failed`.

Effects: :class:`Send` (a request, with its deadline and retries), :class:`Finish` (the end,
with its event), and the hand-offs :class:`AnchorSeed`, :class:`StartSelfLookup`,
:class:`RefreshBuckets`, :class:`RefillEnded`, :class:`CacheFound`, :class:`StartPathCache`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Protocol, TypeAlias

from .._dataclass import dataclass
from .._types import Addr
from ..config import DhtConfig
from ..identity.aid import Aid, NodeId
from ..protocol import dht_messages as dm
from ..protocol.records import SignedRecord
from . import events as ev

__all__ = [
    "AnchorSeed",
    "Answered",
    "CacheFound",
    "CoreView",
    "Effect",
    "Failed",
    "Finish",
    "Op",
    "OpEvent",
    "RefillEnded",
    "RefreshBuckets",
    "Replied",
    "Send",
    "Start",
    "StartPathCache",
    "StartSelfLookup",
]

Peer: TypeAlias = tuple[Aid, Addr]


class CoreView(Protocol):
    """What an operation may read of the core that runs it."""

    @property
    def aid(self) -> Aid:
        """Our own AID (the ``address`` of our PINGs)."""
        ...

    @property
    def config(self) -> DhtConfig: ...

    def find_node_peers(self, target: NodeId, n: int = ...) -> list[Peer]:
        """The routing table's peers nearest to ``target``."""
        ...

    def peer_count(self) -> int:
        """Peers in the routing table."""
        ...


# -- inputs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """The operation was just created; ``records`` are the valid local records of a value
    lookup's key (empty for every other kind)."""

    records: tuple[SignedRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class Replied:
    """A response matched one of the operation's requests (and was already verified)."""

    sender: Aid
    addr: Addr
    body: dm.Body


@dataclass(frozen=True, slots=True)
class Answered:
    """A FIND_NODE/FIND_VALUE answer to a lookup, its peers already checked by the routing
    table (``peers``: the ones usable as candidates)."""

    sender: Aid
    peers: list[Peer]
    records: list[SignedRecord]
    trimmed: bool
    """A FIND_VALUE answer with at most one node: the responder likely trimmed records."""


@dataclass(frozen=True, slots=True)
class Failed:
    """One of the operation's requests stayed unanswered after its last attempt."""

    node_id: NodeId | None
    expect: dm.MsgType
    """The response type it waited for."""


OpEvent: TypeAlias = Start | Replied | Answered | Failed


# -- effects ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send a request: the core draws its tx_id (random bytes after ``tx_prefix``), tracks it
    and sets its deadline at ``now + timeout_s``; when that passes and ``attempts`` are left
    it sends the same body again under a fresh tx_id with a new deadline, else the operation
    gets :class:`Failed`. An answer cancels the deadline."""

    body: dm.Body
    addr: Addr
    node_id: NodeId | None
    """Who we expect to answer (its routing entry records the outcome), if known."""
    timeout_s: float
    attempts: int = 1
    tx_prefix: bytes = b""


@dataclass(frozen=True, slots=True)
class Finish:
    """The operation ended: its pending requests no longer reach it, and ``event`` is
    emitted unless the operation is internal."""

    event: ev.DhtEvent


@dataclass(frozen=True, slots=True)
class AnchorSeed:
    """Remember the address a seed answered at as the one we were given for it."""

    node_id: NodeId
    addr: Addr


@dataclass(frozen=True, slots=True)
class StartSelfLookup:
    """Run the background lookup of our own NodeID from these peers."""

    seeds: tuple[Peer, ...]


@dataclass(frozen=True, slots=True)
class RefreshBuckets:
    """Refresh up to ``limit`` unhealthy buckets."""

    limit: int


@dataclass(frozen=True, slots=True)
class RefillEnded:
    """A bucket's refresh ended (its next one backs off unless it grew)."""

    bucket: int
    size_before: int


@dataclass(frozen=True, slots=True)
class CacheFound:
    """Keep a record a lookup found in the local store (vouched if its publisher answered
    one of our requests)."""

    key: NodeId
    record: SignedRecord


@dataclass(frozen=True, slots=True)
class StartPathCache:
    """Run a path-cache STORE of ``record`` at ``cache_at`` (a2al-wire §4.8)."""

    key: NodeId
    record: SignedRecord
    cache_at: Peer


Effect: TypeAlias = (
    Send
    | Finish
    | AnchorSeed
    | StartSelfLookup
    | RefreshBuckets
    | RefillEnded
    | CacheFound
    | StartPathCache
)


@dataclass(slots=True, kw_only=True)
class Op:
    """What every operation has: its id, whether it ended, its requests in flight, and
    :meth:`advance`."""

    INTERNAL: ClassVar[bool] = False
    """Maintenance work: ends without an event."""

    op_id: int
    done: bool = False
    txs: set[bytes] = dataclasses.field(default_factory=set)
    """tx_ids of its requests still pending (the core keeps this in step with its table)."""

    def advance(self, event: OpEvent, view: CoreView) -> list[Effect]:
        """Take one input; return the effects to carry out, in order."""
        raise NotImplementedError  # pragma: no cover - every kind overrides it
