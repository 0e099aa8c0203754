"""The operations a :class:`~a2al_mcp.dht.core.DhtCore` runs, one small class per kind.

Each operation owns only its own state and decides its own next step from an event (a
response, a failed RPC, its lookup running dry); the core sends what it is told to and turns
a finished operation into its :mod:`events` (or into nothing, for maintenance work).

- :class:`PingOp` one PING;
- :class:`BootstrapOp` PINGs to the seeds (joined at the first PONG);
- :class:`FindOp` a caller's iterative lookup (FIND_NODE or FIND_VALUE, with paging);
- :class:`PublishOp` a lookup of the key's closest peers, then STOREs to them;
- :class:`SelfLookupOp` the lookup of our own NodeID a bootstrap hands on;
- :class:`BucketRefreshOp` the lookup of a random ID in one unhealthy bucket;
- :class:`PathCacheOp` a STORE of a found record one hop back on the path (a2al-wire §4.8),
  after a PING of a sovereign record's publisher.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import ClassVar
from urllib.parse import urlsplit

from .._types import Addr
from ..errors import DecodeError
from ..identity.aid import Aid, NodeId
from ..protocol import dht_messages as dm
from ..protocol.payloads import EndpointPayload
from ..protocol.records import RecType, SignedRecord
from . import events as ev
from .lookup import Lookup, LookupKind

__all__ = [
    "BootstrapOp",
    "BucketRefreshOp",
    "FindOp",
    "LookupOp",
    "Op",
    "PathCacheOp",
    "PingOp",
    "PublishOp",
    "SelfLookupOp",
]


@dataclasses.dataclass(slots=True, kw_only=True)
class Op:
    """What every operation has: its id, whether it ended, and its requests in flight."""

    INTERNAL: ClassVar[bool] = False
    """Maintenance work: ends without an event."""

    op_id: int
    done: bool = False
    txs: set[bytes] = dataclasses.field(default_factory=set)
    """tx_ids of its requests still pending (the core keeps this in step with its table)."""


@dataclasses.dataclass(slots=True, kw_only=True)
class PingOp(Op):
    def on_pong(self, sender: Aid) -> ev.PingFinished:
        return ev.PingFinished(op_id=self.op_id, ok=True, aid=sender)

    def on_failure(self) -> ev.PingFinished:
        return ev.PingFinished(op_id=self.op_id, ok=False)


@dataclasses.dataclass(slots=True, kw_only=True)
class BootstrapOp(Op):
    seeds_left: int
    seeds_answered: int = 0

    def on_pong(self) -> bool:
        """A seed answered; True at the first answer (joined: the op ends there)."""
        self.seeds_answered += 1
        self.seeds_left -= 1
        return self.seeds_answered == 1

    def on_failure(self) -> bool:
        """A seed stayed silent; True when none is left to wait for."""
        self.seeds_left -= 1
        return self.seeds_left <= 0

    def finished(self, peers: int) -> ev.BootstrapFinished:
        return ev.BootstrapFinished(op_id=self.op_id, ok=self.seeds_answered > 0,
                                    seeds_answered=self.seeds_answered,
                                    peers=peers)  # fmt: skip


@dataclasses.dataclass(slots=True, kw_only=True)
class LookupOp(Op):
    """An operation driven by an iterative :class:`Lookup`."""

    lookup: Lookup

    @property
    def answers(self) -> bool:
        """Whether FIND_NODE/FIND_VALUE answers still feed the lookup."""
        return True

    def request_body(self) -> dm.Body:
        """The request sent to each candidate the lookup picks."""
        return dm.FindNode(target=self.lookup.target)

    def on_answer(self, sender: NodeId, peers: list[tuple[Aid, Addr]],
                  records: list[SignedRecord]) -> None:  # fmt: skip
        self.lookup.on_answer(sender, peers, records)

    def closest(self) -> tuple[tuple[Aid, Addr], ...]:
        return tuple((c.aid, c.addr) for c in self.lookup.closest())

    def nodes_finished(self) -> ev.LookupFinished:
        return ev.LookupFinished(op_id=self.op_id, target=self.lookup.target,
                                 closest=self.closest())  # fmt: skip


@dataclasses.dataclass(slots=True, kw_only=True)
class FindOp(LookupOp):
    """A caller's lookup: FIND_NODE (``NODES``) or FIND_VALUE (``FIRST``/``ALL``)."""

    rec_type: int = 0
    subscribe: bool = False
    pages: dict[NodeId, int] = dataclasses.field(default_factory=dict)
    """Per peer: how many further record windows we asked it for."""
    seen_from: dict[NodeId, int] = dataclasses.field(default_factory=dict)
    """Per peer: how many records its answers carried."""

    def request_body(self) -> dm.Body:
        if self.lookup.kind is LookupKind.NODES:
            return dm.FindNode(target=self.lookup.target)
        return self.value_request()

    def value_request(self) -> dm.FindValue:
        return dm.FindValue(target=self.lookup.target, rec_type=self.rec_type,
                            one_shot_subscribe=self.subscribe)  # fmt: skip

    def on_answer(self, sender: NodeId, peers: list[tuple[Aid, Addr]],
                  records: list[SignedRecord]) -> None:  # fmt: skip
        self.seen_from[sender] = self.seen_from.get(sender, 0) + len(records)
        self.lookup.on_answer(sender, peers, records)

    def next_page(self, peer: NodeId, max_pages: int) -> int | None:
        """The record offset to ask ``peer`` for next, or None (no more pages)."""
        page = self.pages.get(peer, 0) + 1
        if page > max_pages or not self.lookup.reopen(peer):
            return None
        self.pages[peer] = page
        return self.seen_from.get(peer, 0)

    def path_cache_peer(self) -> tuple[Aid, Addr] | None:
        """The closest peer that answered without a record (a2al-wire §4.8), if any."""
        peer = next((c for c in self.lookup.closest() if not self.seen_from.get(c.node_id)),
                    None)  # fmt: skip
        return None if peer is None else (peer.aid, peer.addr)

    def finished(self, records: tuple[SignedRecord, ...]) -> ev.LookupFinished:
        return ev.LookupFinished(op_id=self.op_id, target=self.lookup.target,
                                 closest=self.closest(), records=records,
                                 queried=self.lookup.queried,
                                 hops=self.lookup.path_hops())  # fmt: skip


@dataclasses.dataclass(slots=True, kw_only=True)
class SelfLookupOp(LookupOp):
    """The lookup of our own NodeID that follows a bootstrap's first PONG."""

    INTERNAL: ClassVar[bool] = True


@dataclasses.dataclass(slots=True, kw_only=True)
class BucketRefreshOp(LookupOp):
    """The lookup of a random ID in one bucket, to refill it."""

    INTERNAL: ClassVar[bool] = True
    bucket: int
    size_before: int
    """The bucket's size when the refresh started (did it grow?)."""


@dataclasses.dataclass(slots=True, kw_only=True)
class PublishOp(LookupOp):
    """Look up the key's closest peers, then STORE the record on up to ``replicas`` of them."""

    key: NodeId
    record: SignedRecord
    storing: bool = False
    """In its STORE phase (the lookup has ended)."""
    store_queue: list[tuple[Aid, Addr]] = dataclasses.field(default_factory=list)
    in_flight: int = 0
    stored_at: list[Aid] = dataclasses.field(default_factory=list)
    refused: list[tuple[Aid, int]] = dataclasses.field(default_factory=list)

    @property
    def answers(self) -> bool:
        return not self.storing

    def start_storing(self, peers: list[tuple[Aid, Addr]]) -> None:
        self.storing = True
        self.store_queue = list(peers)

    def on_store_resp(self, sender: Aid, resp: dm.StoreResp) -> None:
        self.in_flight -= 1
        if resp.stored:
            self.stored_at.append(sender)
        else:
            self.refused.append((sender, resp.reason))

    def on_store_failed(self) -> None:
        self.in_flight -= 1

    def next_stores(self, concurrency: int, want: int) -> list[tuple[Aid, Addr]]:
        """The peers to send a STORE to now (counted as in flight)."""
        out = []
        while (
            self.store_queue
            and self.in_flight < concurrency
            and (len(self.stored_at) + self.in_flight < want)
        ):
            out.append(self.store_queue.pop(0))
            self.in_flight += 1
        return out

    def complete(self, want: int) -> bool:
        return self.in_flight == 0 and (len(self.stored_at) >= want or not self.store_queue)

    def store_request(self) -> dm.Store:
        return dm.Store(record=self.record, key=self.key)

    def finished(self) -> ev.PublishFinished:
        return ev.PublishFinished(op_id=self.op_id, key=self.key,
                                  stored_at=tuple(self.stored_at),
                                  refused=tuple(self.refused))  # fmt: skip


@dataclasses.dataclass(slots=True, kw_only=True)
class PathCacheOp(Op):
    """STORE a found record at the closest peer that answered without it; a sovereign
    record only once its publisher answered a PING (``confirming``)."""

    INTERNAL: ClassVar[bool] = True
    key: NodeId
    record: SignedRecord
    cache_at: tuple[Aid, Addr]
    storing: bool = False

    def publisher_addr(self) -> Addr | None:
        """Where to PING a sovereign record's publisher: the first ``quic://``/``udp://``
        IP-literal endpoint of an endpoint record (None: nowhere, so no copy)."""
        record = self.record
        if record.rec_type != RecType.ENDPOINT:
            return None
        try:
            ep = EndpointPayload.from_bytes(record.payload)
        except DecodeError:
            return None
        for url in ep.endpoints:
            try:
                parts = urlsplit(url)
                host, port = parts.hostname, parts.port
            except ValueError:
                continue
            if parts.scheme in ("quic", "udp") and host and port and _is_ip(host):
                return host, port
        return None

    def on_pong_confirms(self, sender: Aid) -> bool:
        """True if this PONG is the publisher's confirmation (the STORE goes out next)."""
        return sender == self.record.address and not self.storing

    def store_request(self) -> dm.Store:
        self.storing = True
        return dm.Store(record=self.record, key=self.key)

    def ended(self, *, ok: bool) -> ev.PingFinished:
        """Its (unemitted) end event."""
        return ev.PingFinished(op_id=self.op_id, ok=ok)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
