"""The DHT operations driven by an iterative :class:`~a2al_mcp.dht.lookup.Lookup`, each a
state machine ``advance(event, view) -> list[Effect]`` (see :mod:`~a2al_mcp.dht.effects`).

- :class:`FindOp` a caller's lookup: FIND_NODE (``NODES``) or FIND_VALUE (``FIRST``/``ALL``,
  asking a peer whose answer was trimmed for further record windows);
- :class:`PublishOp` a lookup of the key's closest peers, then STOREs to them;
- :class:`SelfLookupOp` the lookup of our own NodeID a bootstrap hands on (then a refresh);
- :class:`BucketRefreshOp` the lookup of a random ID in one unhealthy bucket.

Every request they send gets one attempt of ``lookup_rpc_timeout_s``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Final

from .._dataclass import dataclass
from .._types import Addr
from ..identity.aid import Aid, NodeId
from ..protocol import dht_messages as dm
from ..protocol.records import SignedRecord
from . import events as ev
from .effects import (
    Answered,
    CacheFound,
    CoreView,
    Effect,
    Failed,
    Finish,
    Op,
    OpEvent,
    RefillEnded,
    RefreshBuckets,
    Replied,
    Send,
    Start,
    StartPathCache,
)
from .lookup import Lookup, LookupKind
from .responder import PAGE_MARK

__all__ = [
    "MAX_PAGES",
    "REFRESH_AFTER_BOOTSTRAP",
    "BucketRefreshOp",
    "FindOp",
    "LookupOp",
    "Op",
    "PublishOp",
    "SelfLookupOp",
]

MAX_PAGES: Final = 16
"""Further record windows asked of one peer in one lookup."""
REFRESH_AFTER_BOOTSTRAP: Final = 2
"""Buckets refreshed when the self-lookup after a bootstrap ends."""


@dataclass(slots=True, kw_only=True)
class LookupOp(Op):
    """An operation driven by an iterative :class:`Lookup`: it sends what the lookup picks
    and, when the lookup runs dry, does what its kind does at the end (:meth:`lookup_done`)."""

    lookup: Lookup

    @property
    def answers(self) -> bool:
        """Whether FIND_NODE/FIND_VALUE answers still feed the lookup (the core hands them
        on as :class:`Answered`)."""
        return True

    def advance(self, event: OpEvent, view: CoreView) -> list[Effect]:
        match event:
            case Start(records=records):
                if self.lookup.kind is not LookupKind.NODES:
                    self.lookup.add_records(records)
                return self.drive(view)
            case Answered():
                return self.on_answered(event, view)
            case Failed(node_id=node_id) if node_id is not None:
                self.lookup.on_failure(node_id)
                return self.drive(view)
        return []

    def on_answered(self, event: Answered, view: CoreView) -> list[Effect]:
        self.on_answer(event.sender.node_id, event.peers, event.records)
        return self.drive(view)

    def drive(self, view: CoreView) -> list[Effect]:
        """Requests to the candidates the lookup picks now; its end if it ran dry."""
        lookup = self.lookup
        timeout = view.config.lookup_rpc_timeout_s
        out: list[Effect] = [Send(self.request_body(), c.addr, c.node_id, timeout_s=timeout)
                             for c in lookup.next_requests()]  # fmt: skip
        if lookup.finished or lookup.waiting == 0:
            out += self.lookup_done(view)
        return out

    def lookup_done(self, view: CoreView) -> list[Effect]:
        """What this kind does when its lookup has ended."""
        return [Finish(self.nodes_finished())]

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


@dataclass(slots=True, kw_only=True)
class FindOp(LookupOp):
    """A caller's lookup: FIND_NODE (``NODES``) or FIND_VALUE (``FIRST``/``ALL``).

    ``FIRST`` ends at the first valid record, keeps it in the local store and path-caches it
    (a2al-wire §4.8); ``ALL`` merges every answer's records, asking a peer whose answer was
    likely trimmed for its next window (up to ``MAX_PAGES``)."""

    rec_type: int = 0
    subscribe: bool = False
    pages: dict[NodeId, int] = dataclasses.field(default_factory=dict)
    """Per peer: how many further record windows we asked it for."""
    seen_from: dict[NodeId, int] = dataclasses.field(default_factory=dict)
    """Per peer: how many records its answers carried."""

    def on_answered(self, event: Answered, view: CoreView) -> list[Effect]:
        lookup = self.lookup
        paging = lookup.kind is LookupKind.ALL and event.trimmed
        before = len(lookup.records()) if paging else 0
        self.on_answer(event.sender.node_id, event.peers, event.records)
        out: list[Effect] = []
        if paging and len(lookup.records()) > before:
            out += self._page(event.sender, view)
        return out + self.drive(view)

    def _page(self, peer: Aid, view: CoreView) -> list[Effect]:
        """Ask a peer whose answer was trimmed for the next window of its records."""
        seen = self.next_page(peer.node_id, MAX_PAGES)
        if seen is None:
            return []
        cand = self.lookup.candidate(peer.node_id)
        prefix = PAGE_MARK + (seen % 65536).to_bytes(2, "big")
        return [Send(self.value_request(), cand.addr, peer.node_id,
                     timeout_s=view.config.lookup_rpc_timeout_s, tx_prefix=prefix)]  # fmt: skip

    def lookup_done(self, view: CoreView) -> list[Effect]:
        lookup = self.lookup
        out: list[Effect] = []
        if lookup.kind is LookupKind.FIRST:
            found = lookup.found
            records: tuple[SignedRecord, ...] = (found,) if found else ()
            if found is not None:  # cache the hit, as a2ald does (soft-expires in 2 min)
                out.append(CacheFound(lookup.target, found))
                peer = self.path_cache_peer() if lookup.path_hops() > 0 else None
                if peer is not None:
                    out.append(StartPathCache(lookup.target, found, peer))
        else:
            records = tuple(lookup.records())
        out.append(Finish(self.finished(records)))
        return out

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


@dataclass(slots=True, kw_only=True)
class SelfLookupOp(LookupOp):
    """The lookup of our own NodeID that follows a bootstrap's first PONG; a bucket refresh
    follows it."""

    INTERNAL: ClassVar[bool] = True

    def lookup_done(self, view: CoreView) -> list[Effect]:
        return [Finish(self.nodes_finished()), RefreshBuckets(REFRESH_AFTER_BOOTSTRAP)]


@dataclass(slots=True, kw_only=True)
class BucketRefreshOp(LookupOp):
    """The lookup of a random ID in one bucket, to refill it."""

    INTERNAL: ClassVar[bool] = True
    bucket: int
    size_before: int
    """The bucket's size when the refresh started (did it grow?)."""

    def lookup_done(self, view: CoreView) -> list[Effect]:
        return [RefillEnded(self.bucket, self.size_before), Finish(self.nodes_finished())]


@dataclass(slots=True, kw_only=True)
class PublishOp(LookupOp):
    """Look up the key's closest peers, then STORE the record on up to ``replicas`` of them
    (``lookup_concurrency`` at a time); ends with
    :class:`~a2al_mcp.dht.events.PublishFinished`."""

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

    def advance(self, event: OpEvent, view: CoreView) -> list[Effect]:
        if not self.storing:
            return LookupOp.advance(self, event, view)
        match event:
            case Replied(sender=sender, body=dm.StoreResp() as resp):
                self.on_store_resp(sender, resp)
                return self._store_round(view)
            case Failed(expect=dm.MsgType.STORE_RESP):
                self.on_store_failed()
                return self._store_round(view)
        return []  # a late FIND_NODE timeout: the lookup has ended, nothing to ask any more

    def lookup_done(self, view: CoreView) -> list[Effect]:
        self.start_storing(list(self.closest()) or view.find_node_peers(self.key))
        return self._store_round(view)

    def _store_round(self, view: CoreView) -> list[Effect]:
        cfg = view.config
        want = cfg.replicas
        out: list[Effect] = [
            Send(self.store_request(), addr, aid.node_id, timeout_s=cfg.lookup_rpc_timeout_s)
            for aid, addr in self.next_stores(cfg.lookup_concurrency, want)
        ]
        if self.complete(want):
            out.append(Finish(self.finished()))
        return out

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
