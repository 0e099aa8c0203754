"""The operations a :class:`~a2al_mcp.dht.core.DhtCore` runs, one small state machine per
kind (as zikade's ``Query.Advance(event) -> state``).

Each operation owns only its own state: ``op.advance(event, view) -> list[Effect]`` takes a
:mod:`~a2al_mcp.dht.effects` input (its start, a response to one of its requests, a failed
request, a lookup answer) and returns what to do — requests to send with their deadlines, the
hand-offs to other work, its end with its event. The core routes each response or timeout to
the operation that owns its transaction and carries out the effects in order.

- :class:`PingOp` one PING;
- :class:`BootstrapOp` PINGs to the seeds (joined at the first PONG);
- :class:`~a2al_mcp.dht.lookup_ops.FindOp` a caller's iterative lookup (FIND_NODE or
  FIND_VALUE, with paging);
- :class:`~a2al_mcp.dht.lookup_ops.PublishOp` a lookup of the key's closest peers, then
  STOREs to them;
- :class:`~a2al_mcp.dht.lookup_ops.SelfLookupOp` the lookup of our own NodeID a bootstrap
  hands on;
- :class:`~a2al_mcp.dht.lookup_ops.BucketRefreshOp` the lookup of a random ID in one
  unhealthy bucket;
- :class:`PathCacheOp` a STORE of a found record one hop back on the path (a2al-wire §4.8),
  after a PING of a sovereign record's publisher.

The lookup-driven kinds live in :mod:`~a2al_mcp.dht.lookup_ops` and are re-exported here.
"""

from __future__ import annotations

import ipaddress
from typing import ClassVar, Final
from urllib.parse import urlsplit

from .._dataclass import dataclass
from .._types import Addr
from ..errors import DecodeError
from ..identity.aid import Aid, NodeId
from ..protocol import dht_messages as dm
from ..protocol.payloads import EndpointPayload
from ..protocol.records import Category, RecType, SignedRecord
from . import events as ev
from .effects import (
    AnchorSeed,
    CoreView,
    Effect,
    Failed,
    Finish,
    Op,
    OpEvent,
    Replied,
    Send,
    Start,
    StartSelfLookup,
)
from .lookup_ops import (
    MAX_PAGES,
    BucketRefreshOp,
    FindOp,
    LookupOp,
    PublishOp,
    SelfLookupOp,
)

__all__ = [
    "BOOTSTRAP_PING_ATTEMPTS",
    "MAX_PAGES",
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

BOOTSTRAP_PING_ATTEMPTS: Final = 2
"""A seed gets this many PINGs (each ``lookup_rpc_timeout_s``); every other RPC of the core
gets one attempt, as a2ald's lookups, replication STOREs and DHT_PUSHes do (§4.5)."""


def _ping(view: CoreView, addr: Addr, attempts: int = 1) -> Send:
    return Send(dm.Ping(address=view.aid), addr, None,
                timeout_s=view.config.lookup_rpc_timeout_s, attempts=attempts)  # fmt: skip


@dataclass(slots=True, kw_only=True)
class PingOp(Op):
    """One PING of ``addr``; ends with :class:`~a2al_mcp.dht.events.PingFinished`."""

    addr: Addr

    def advance(self, event: OpEvent, view: CoreView) -> list[Effect]:
        match event:
            case Start():
                return [_ping(view, self.addr)]
            case Replied(sender=sender, body=dm.Pong()):
                return [Finish(self.on_pong(sender))]
            case Failed():
                return [Finish(self.on_failure())]
        return []

    def on_pong(self, sender: Aid) -> ev.PingFinished:
        return ev.PingFinished(op_id=self.op_id, ok=True, aid=sender)

    def on_failure(self) -> ev.PingFinished:
        return ev.PingFinished(op_id=self.op_id, ok=False)


@dataclass(slots=True, kw_only=True)
class BootstrapOp(Op):
    """PING every seed (``BOOTSTRAP_PING_ATTEMPTS`` each); joined at the first PONG, which
    hands the self-lookup on; ends with :class:`~a2al_mcp.dht.events.BootstrapFinished`."""

    seeds_left: int
    seeds: tuple[Addr, ...] = ()
    seeds_answered: int = 0

    def advance(self, event: OpEvent, view: CoreView) -> list[Effect]:
        match event:
            case Start():
                out: list[Effect] = [_ping(view, a, BOOTSTRAP_PING_ATTEMPTS) for a in self.seeds]
                if not self.seeds:
                    out.append(Finish(self.finished(view.peer_count())))
                return out
            case Replied(sender=sender, addr=addr, body=dm.Pong()):
                out = [AnchorSeed(sender.node_id, addr)]  # a seed we were given
                if self.on_pong():
                    # a2ald's rule: joined at the first PONG; the self-lookup (and then the
                    # bucket refresh) go on in the background
                    out += [Finish(self.finished(view.peer_count())),
                            StartSelfLookup(((sender, addr),))]  # fmt: skip
                return out
            case Failed():
                return [Finish(self.finished(view.peer_count()))] if self.on_failure() else []
        return []

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


@dataclass(slots=True, kw_only=True)
class PathCacheOp(Op):
    """STORE a found record at the closest peer that answered without it; a sovereign
    record only once its publisher answered a PING (so a dead publisher's record is not
    spread further)."""

    INTERNAL: ClassVar[bool] = True
    key: NodeId
    record: SignedRecord
    cache_at: tuple[Aid, Addr]
    storing: bool = False

    def advance(self, event: OpEvent, view: CoreView) -> list[Effect]:
        match event:
            case Start():
                if self.record.category is not Category.SOVEREIGN:
                    return [self._store(view)]
                addr = self.publisher_addr()
                if addr is None:
                    return [Finish(self.ended(ok=False))]
                return [_ping(view, addr)]
            case Replied(sender=sender, body=body):
                if isinstance(body, dm.Pong) and self.on_pong_confirms(sender):
                    return [self._store(view)]
                return [Finish(self.ended(ok=True))]
            case Failed():
                return [Finish(self.ended(ok=False))]
        return []

    def _store(self, view: CoreView) -> Send:
        aid, addr = self.cache_at
        return Send(self.store_request(), addr, aid.node_id,
                    timeout_s=view.config.lookup_rpc_timeout_s)  # fmt: skip

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
