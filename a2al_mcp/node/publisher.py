"""Publisher: the records a node publishes for its local identities, and their renewal.

Per local identity it keeps what was asked for — the endpoint record (``publish``), the
agent profile (``set_profile``), the topic registrations (``register_service``) — signs the
records, hands them to the DHT through one ``publish_record`` callable, and renews them all
every ``republish_interval_s`` (:meth:`Publisher.republish_loop`) until ``unpublish``; when
what the node knows of its address changes, :meth:`Publisher.republish_endpoints` renews the
endpoint records alone, at once. The newest topic record of each registration is kept for
stream-0 AgentInfo (:meth:`Publisher.agent_info`). It knows nothing of the node: identities,
endpoint URLs, NAT type and time come in as callables.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from .._clock import Clock
from ..dht import events as ev
from ..errors import RequestTimeout, UsageError
from ..identity.aid import Aid, NodeId
from ..identity.local import Identity
from ..protocol import limits
from ..protocol.payloads import AgentProfilePayload, EndpointPayload, TopicPayload, topic_key
from ..protocol.records import RecType, SignedRecord

__all__ = ["PublishRecord", "Publisher", "endpoint_urls"]

logger = logging.getLogger(__name__)

PublishRecord = Callable[[SignedRecord, NodeId], Awaitable[ev.PublishFinished]]
"""Store ``record`` under ``key`` on the DHT (e.g. :meth:`DhtService.publish`)."""


def endpoint_urls(local_addr: tuple[str, int], advertise_host: str = "") -> tuple[str, ...]:
    """The ``quic://`` URL to publish for a socket bound to ``local_addr``: at
    ``advertise_host`` when given, else at the bound host.

    Raises:
        UsageError: the host is a wildcard (``0.0.0.0``, ``::``) and none is advertised.
    """
    host, port = local_addr
    advertise = advertise_host or host
    if advertise in ("0.0.0.0", "::", ""):
        raise UsageError(
            "cannot determine an address to publish: set advertise_host (a2ald's fallback_host)"
        )
    if ":" in advertise:
        return (f"quic://[{advertise}]:{port}",)
    return (f"quic://{advertise}:{port}",)


class Publisher:
    """What the local identities publish: endpoint, profile and topic records."""

    def __init__(
        self,
        *,
        publish_record: PublishRecord,
        identity: Callable[[Aid | None], Identity],
        endpoint_urls: Callable[[], tuple[str, ...]],
        clock: Clock,
        republish_interval_s: float,
        nat_type: Callable[[], int] = lambda: 0,
        signal_hubs: Callable[[], tuple[str, ...]] = lambda: (),
    ) -> None:
        """
        Args:
            publish_record: stores one record under a key on the DHT.
            identity: the local identity for an AID (None: the node's own); raises
                ``UsageError`` for an AID that is not local.
            endpoint_urls: the ``quic://`` URLs to put in endpoint records now; raises
                ``UsageError`` when there is no address to publish.
            clock: wall time for record seqs and timestamps.
            republish_interval_s: how often :meth:`republish_loop` renews everything.
            nat_type: the NAT type to put in endpoint records now (§3.6: 0 unknown,
                1 full cone or public, 2 restricted, 3 port-restricted, 4 symmetric).
            signal_hubs: the live signalling hubs to name in endpoint records now, the
                preferred first (``signal``; all of them in ``signals``).
        """
        self._publish_record = publish_record
        self._identity = identity
        self._endpoint_urls = endpoint_urls
        self._clock = clock
        self._interval_s = republish_interval_s
        self._nat_type = nat_type
        self._signal_hubs = signal_hubs
        self._published: dict[Aid, int] = {}
        """Identities whose endpoint record is kept published, with its last seq."""
        self._ttl_s: dict[Aid, int] = {}
        self._services: dict[tuple[Aid, str], TopicPayload] = {}
        self._profiles: dict[Aid, AgentProfilePayload] = {}
        self._topic_records: dict[tuple[Aid, str], SignedRecord] = {}

    def published(self) -> tuple[Aid, ...]:
        """The identities whose endpoint record is kept published."""
        return tuple(self._published)

    async def publish(self, aid: Aid | None = None, *, ttl_s: int = 3600) -> SignedRecord:
        """Publish (and keep renewing) the endpoint record of a local identity, then its
        topic registrations and profile."""
        ident = self._identity(aid)
        record = await self._publish_endpoint(ident, ttl_s)
        for (owner, _topic), topic_payload in list(self._services.items()):
            if owner == ident.aid:
                await self._publish_topic(ident, topic_payload, ttl_s)
        if ident.aid in self._profiles:
            await self._publish_profile(ident, self._profiles[ident.aid], ttl_s)
        return record

    async def _publish_endpoint(self, ident: Identity, ttl_s: int) -> SignedRecord:
        # Newer than anything an earlier run of this identity published: replicas keep the
        # record with the higher seq, so a per-process counter would lose after a restart.
        seq = max(self._published.get(ident.aid, 0) + 1, math.floor(self._clock.wall() * 1e9))
        hubs = self._signal_hubs()
        payload = EndpointPayload(endpoints=self._endpoint_urls(), nat_type=self._nat_type(),
                                  signal=hubs[0] if hubs else "", signals=hubs)  # fmt: skip
        self._published[ident.aid] = seq
        self._ttl_s[ident.aid] = ttl_s
        record = SignedRecord.sign(ident, RecType.ENDPOINT, payload.to_bytes(), seq=seq,
                                   timestamp=int(self._clock.wall()), ttl=ttl_s)  # fmt: skip
        await self._publish_record(record, ident.aid.node_id)
        return record

    async def republish_endpoints(self) -> int:
        """Renew the endpoint record of every published identity now, with the URLs and NAT
        type known now (the address or NAT type changed); topics and profiles wait for the
        next renewal. A failure is logged and the others go on. Returns how many were
        stored."""
        done = 0
        for aid in list(self._published):
            try:
                await self._publish_endpoint(self._identity(aid), self._ttl_s.get(aid, 3600))
                done += 1
            except (RequestTimeout, UsageError) as exc:
                logger.warning("republish.endpoint_failed aid=%s reason=%s", aid.short(), exc)
        return done

    async def set_profile(
        self, profile: AgentProfilePayload, aid: Aid | None = None, *, ttl_s: int = 3600
    ) -> SignedRecord:
        """Publish the agent profile (rec_type 0x02) of a local identity now and with every
        renewal.

        Raises:
            LimitExceeded: the profile encodes to more than 700 bytes.
        """
        ident = self._identity(aid)
        profile.to_bytes()  # raises LimitExceeded early
        self._profiles[ident.aid] = profile
        return await self._publish_profile(ident, profile, ttl_s)

    async def _publish_profile(
        self, ident: Identity, profile: AgentProfilePayload, ttl_s: int
    ) -> SignedRecord:
        wall = self._clock.wall()
        record = SignedRecord.sign(ident, RecType.PROFILE, profile.to_bytes(),
                                   seq=math.floor(wall * 1e9), timestamp=int(wall),
                                   ttl=ttl_s)  # fmt: skip
        await self._publish_record(record, ident.aid.node_id)
        return record

    async def register_service(
        self,
        topic: str,
        *,
        name: str = "",
        brief: str = "",
        protocols: Sequence[str] = (),
        tags: Sequence[str] = (),
        meta: dict[str, Any] | None = None,
        ttl_s: int = 3600,
        aid: Aid | None = None,
    ) -> SignedRecord:
        """Register a local identity under ``topic`` (renewed with :meth:`publish`)."""
        if not topic:
            raise UsageError("topic must not be empty")
        ident = self._identity(aid)
        payload = TopicPayload(topic=topic, name=name, brief=brief, protocols=tuple(protocols),
                               tags=tuple(tags), meta=meta or {})  # fmt: skip
        payload.to_bytes()  # raises LimitExceeded early
        self._services[(ident.aid, topic)] = payload
        return await self._publish_topic(ident, payload, ttl_s)

    async def _publish_topic(
        self, ident: Identity, payload: TopicPayload, ttl_s: int
    ) -> SignedRecord:
        wall = self._clock.wall()
        ttl = min(ttl_s, limits.TOPIC_TTL_MAX_S)
        record = SignedRecord.sign(
            ident, RecType.TOPIC, payload.to_bytes(),
            seq=math.floor(wall * 1e9), timestamp=int(wall), ttl=ttl,
        )  # fmt: skip
        await self._publish_record(record, NodeId(topic_key(payload.topic)))
        self._topic_records[(ident.aid, payload.topic)] = record
        return record

    def unpublish(self, aid: Aid | None = None) -> list[str]:
        """Stop renewing the endpoint record, the profile and the service registrations of
        ``aid`` (default: the node). Returns the topics that were registered."""
        ident = self._identity(aid)
        self._published.pop(ident.aid, None)
        self._ttl_s.pop(ident.aid, None)
        self._profiles.pop(ident.aid, None)
        topics = [t for (owner, t) in self._services if owner == ident.aid]
        for t in topics:
            del self._services[(ident.aid, t)]
            self._topic_records.pop((ident.aid, t), None)
        return topics

    def agent_info(self, target: Aid, held_seq: int) -> list[bytes]:
        """Stream-0 AgentInfo: our topic records for ``target`` newer than the dialer's."""
        return [rec.to_bytes() for (aid, _t), rec in self._topic_records.items()
                if aid == target and rec.seq > held_seq]  # fmt: skip

    async def republish_loop(self) -> None:
        """Renew every published identity's records every ``republish_interval_s``."""
        while True:
            await anyio.sleep(self._interval_s)
            for aid in list(self._published):
                try:
                    await self.publish(aid)
                except (RequestTimeout, UsageError) as exc:
                    logger.warning("republish.failed aid=%s reason=%s", aid.short(), exc)
