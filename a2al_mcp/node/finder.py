"""Finder: what the node looks up on the DHT and how it reads the records it finds.

An AID's newest valid endpoint record (:meth:`Finder.resolve`) and agent profile
(:meth:`Finder.profile`), the registrations under one or more topics
(:meth:`Finder.discover`), and every record of a type at a key (:meth:`Finder.aggregate`,
the mailbox's polls). The DHT comes in as one ``lookup`` callable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Protocol

from ..dht import events as ev
from ..dht.lookup import LookupKind
from ..errors import DecodeError, NotFound, UsageError
from ..identity.aid import Aid, NodeId
from ..protocol.payloads import AgentProfilePayload, EndpointPayload, TopicPayload, topic_key
from ..protocol.records import RecType, SignedRecord
from .status import ResolvedEndpoint, ServiceEntry

__all__ = ["Finder", "Lookup"]


class Lookup(Protocol):
    """One DHT lookup of ``target`` (e.g. :meth:`DhtService.lookup`)."""

    def __call__(
        self, target: NodeId, kind: LookupKind, *, rec_type: int = ..., subscribe: bool = ...
    ) -> Awaitable[ev.LookupFinished]: ...


class Finder:
    """Resolve, profile, discover and aggregate over one ``lookup``."""

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup

    async def resolve(self, aid: Aid) -> ResolvedEndpoint:
        """The newest valid endpoint record of ``aid``.

        Raises:
            NotFound: nobody holds a valid record.
        """
        event = await self._lookup(aid.node_id, LookupKind.FIRST, rec_type=RecType.ENDPOINT)
        if not event.records:
            raise NotFound(f"no endpoint record for {aid}", aid=aid, operation="resolve")
        rec = event.records[0]
        ep = EndpointPayload.from_bytes(rec.payload)
        return ResolvedEndpoint(aid=rec.address, endpoints=ep.endpoints, nat_type=ep.nat_type,
                                seq=rec.seq, timestamp=rec.timestamp, ttl=rec.ttl,
                                record=rec)  # fmt: skip

    async def profile(self, aid: Aid) -> AgentProfilePayload:
        """The newest valid agent profile (rec_type 0x02) that ``aid`` published.

        Raises:
            NotFound: nobody holds a valid profile for it.
        """
        event = await self._lookup(aid.node_id, LookupKind.FIRST, rec_type=RecType.PROFILE)
        for rec in event.records:
            try:
                return AgentProfilePayload.from_bytes(rec.payload)
            except DecodeError:
                continue
        raise NotFound(f"no agent profile for {aid}", aid=aid, operation="profile")

    async def discover(
        self, topics: str | Sequence[str], *, protocols: Sequence[str] = (),
        tags: Sequence[str] = (),
    ) -> list[ServiceEntry]:  # fmt: skip
        """Registrations under every topic (AIDs present in all), filtered by protocols
        (any) and tags (all), newest first."""
        topic_list = [topics] if isinstance(topics, str) else list(topics)
        if not topic_list:
            raise UsageError("give at least one topic")
        per_topic = [await self._registrations(topic) for topic in topic_list]
        common = set(per_topic[0]).intersection(*per_topic[1:])
        out = [per_topic[0][a] for a in common]
        if protocols:
            out = [e for e in out if set(protocols) & set(e.protocols)]
        if tags:
            out = [e for e in out if set(tags) <= set(e.tags)]
        out.sort(key=lambda e: -e.timestamp)
        return out

    async def _registrations(self, topic: str) -> dict[Aid, ServiceEntry]:
        """The newest registration of each AID under ``topic``."""
        event = await self._lookup(NodeId(topic_key(topic)), LookupKind.ALL,
                                   rec_type=RecType.TOPIC)  # fmt: skip
        found: dict[Aid, ServiceEntry] = {}
        for rec in event.records:
            try:
                tp = TopicPayload.from_bytes(rec.payload)
            except DecodeError:
                continue
            if tp.topic != topic:
                continue
            entry = ServiceEntry(aid=rec.address, service=topic, name=tp.name,
                                 brief=tp.brief, protocols=tp.protocols, tags=tp.tags,
                                 meta=dict(tp.meta), seq=rec.seq, timestamp=rec.timestamp,
                                 ttl=rec.ttl)  # fmt: skip
            old = found.get(rec.address)
            if old is None or entry.seq > old.seq:
                found[rec.address] = entry
        return found

    async def aggregate(
        self, key: NodeId, rec_type: int, *, subscribe: bool = False
    ) -> tuple[SignedRecord, ...]:
        """Every record of ``rec_type`` at ``key`` (optionally subscribing to it there)."""
        event = await self._lookup(key, LookupKind.ALL, rec_type=rec_type, subscribe=subscribe)
        return event.records
