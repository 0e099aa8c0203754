"""Publisher alone, over real DhtCores wired in memory (no socket, a virtual wall clock).

The wire plays the endpoint as in tests/unit/dht/test_service.py: ``flush`` carries every
queued datagram to the core at its destination and hands each core's events to its
DhtService, until nothing moves.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio
import pytest

from a2al_mcp._random import SeededRng
from a2al_mcp.dht import events as ev
from a2al_mcp.dht.core import DhtCore
from a2al_mcp.dht.lookup import LookupKind
from a2al_mcp.dht.service import DhtService
from a2al_mcp.errors import UsageError
from a2al_mcp.identity import Identity, NodeId
from a2al_mcp.identity.aid import Aid
from a2al_mcp.identity.local import DelegatedIdentity
from a2al_mcp.node.publisher import Publisher
from a2al_mcp.protocol.payloads import AgentProfilePayload, EndpointPayload, TopicPayload, topic_key
from a2al_mcp.protocol.records import RecType, SignedRecord
from a2al_mcp.testing.clock import FakeClock

pytestmark = pytest.mark.anyio

_Addr = tuple[str, int]
URLS = ("quic://10.0.0.1:4121",)


class Wire:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.cores: dict[_Addr, DhtCore] = {}
        self.services: dict[_Addr, DhtService] = {}

    def add(self, seed: int) -> tuple[_Addr, DhtCore, DhtService]:
        addr = (f"10.0.0.{seed}", 4121)
        core = DhtCore(Identity.generate(SeededRng(seed)), rng=SeededRng(seed + 1000),
                       wall_offset=self.clock.wall_offset)  # fmt: skip
        self.cores[addr] = core
        self.services[addr] = DhtService(core, clock=self.clock, flush=self.flush,
                                         timeout_s=60.0)  # fmt: skip
        return addr, core, self.services[addr]

    def flush(self) -> None:
        moved = True
        while moved:
            moved = False
            now = self.clock.monotonic()
            for src, core in self.cores.items():
                for data, dst in core.datagrams_to_send(now):
                    if dst in self.cores:
                        self.cores[dst].receive_datagram(data, src, now)
                        moved = True
                while (event := core.next_event()) is not None:
                    self.services[src].on_event(event)


class Net:
    """A publishing service ``a`` (its core's identity is the node's), a replica ``b`` and
    a looking-up service ``c``, all joined through ``b``."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.wire = Wire(self.clock)
        _, self.a_core, self.a = self.wire.add(1)
        self.b_addr, _, _ = self.wire.add(2)
        _, _, self.c = self.wire.add(3)
        self.agent = DelegatedIdentity.generate(SeededRng(9), issued_at=1_700_000_000).identity
        self.local = {self.a_core.aid: self.a_core.identity, self.agent.aid: self.agent}
        self.stored: list[tuple[SignedRecord, NodeId]] = []
        self.want = math.inf
        self.enough = anyio.Event()
        """Set once ``want`` records were stored."""

    async def join(self) -> None:
        for service in (self.a, self.c):
            assert (await service.bootstrap([self.b_addr])).ok

    def identity(self, aid: Aid | None) -> Identity:
        if aid is None:
            return self.a_core.identity
        if aid not in self.local:
            raise UsageError(f"{aid} is not a local identity")
        return self.local[aid]

    async def publish_record(self, record: SignedRecord, key: NodeId) -> ev.PublishFinished:
        self.stored.append((record, key))
        if len(self.stored) >= self.want:
            self.enough.set()
        return await self.a.publish(record, key)

    def publisher(
        self, *, interval_s: float = 1800.0, urls: Callable[[], tuple[str, ...]] = lambda: URLS
    ) -> Publisher:
        return Publisher(publish_record=self.publish_record, identity=self.identity,
                         endpoint_urls=urls, clock=self.clock,
                         republish_interval_s=interval_s)  # fmt: skip


async def test_publish_stores_the_endpoint_record_another_node_resolves() -> None:
    net = Net()
    await net.join()
    pub = net.publisher()
    record = await pub.publish(ttl_s=600)
    aid = net.a_core.aid
    assert record.address == aid and record.rec_type == RecType.ENDPOINT and record.ttl == 600
    assert record.seq == math.floor(net.clock.wall() * 1e9)
    assert record.timestamp == int(net.clock.wall())
    assert EndpointPayload.from_bytes(record.payload).endpoints == URLS
    assert pub.published() == (aid,)
    found = await net.c.lookup(aid.node_id, LookupKind.FIRST, rec_type=RecType.ENDPOINT)
    assert found.records == (record,)
    again = await pub.publish()  # same wall time: the seq still grows
    assert again.seq == record.seq + 1


async def test_services_and_profile_are_published_and_renewed_with_the_endpoint() -> None:
    net = Net()
    await net.join()
    pub = net.publisher()
    agent = net.agent.aid
    topic = await pub.register_service("lang.translate", name="t", protocols=("mcp",),
                                       ttl_s=99_999, aid=agent)  # fmt: skip
    assert topic.ttl == 7200  # capped at the topic TTL maximum
    assert TopicPayload.from_bytes(topic.payload).protocols == ("mcp",)
    profile = await pub.set_profile(AgentProfilePayload(name="agent"), agent)
    found = await net.c.lookup(NodeId(topic_key("lang.translate")), LookupKind.ALL,
                               rec_type=RecType.TOPIC)  # fmt: skip
    assert found.records == (topic,)
    got = await net.c.lookup(agent.node_id, LookupKind.FIRST, rec_type=RecType.PROFILE)
    assert got.records == (profile,)
    assert pub.agent_info(agent, 0) == [topic.to_bytes()]
    assert pub.agent_info(agent, topic.seq) == []
    assert pub.agent_info(net.a_core.aid, 0) == []

    net.stored.clear()
    net.clock.advance(5.0)
    await pub.publish(agent)
    kinds = [(rec.rec_type, rec.address, key) for rec, key in net.stored]
    assert kinds == [(RecType.ENDPOINT, agent, agent.node_id),
                     (RecType.TOPIC, agent, NodeId(topic_key("lang.translate"))),
                     (RecType.PROFILE, agent, agent.node_id)]  # fmt: skip
    assert pub.agent_info(agent, topic.seq) == [net.stored[1][0].to_bytes()]


async def test_checks_come_before_anything_is_published() -> None:
    net = Net()
    pub = net.publisher()
    stranger = Identity.generate(SeededRng(77)).aid
    with pytest.raises(UsageError, match="topic"):
        await pub.register_service("")
    with pytest.raises(UsageError, match="not a local identity"):
        await pub.publish(stranger)
    with pytest.raises(UsageError, match="not a local identity"):
        pub.unpublish(stranger)
    assert net.stored == [] and pub.published() == ()


async def test_unpublish_stops_the_renewals_of_that_identity_only() -> None:
    net = Net()
    await net.join()
    pub = net.publisher(interval_s=0.001)
    agent, node = net.agent.aid, net.a_core.aid
    await pub.publish()
    await pub.publish(agent)
    await pub.register_service("weather", aid=agent)
    assert pub.unpublish(agent) == ["weather"]
    assert pub.published() == (node,)
    assert pub.agent_info(agent, 0) == []
    net.stored.clear()

    async with anyio.create_task_group() as tg:
        tg.start_soon(pub.republish_loop)
        net.want = 3  # three renewals of the node's endpoint record
        await net.enough.wait()
        tg.cancel_scope.cancel()
    assert {(rec.rec_type, rec.address) for rec, _ in net.stored} == {(RecType.ENDPOINT, node)}


async def test_a_failed_renewal_is_logged_and_the_loop_goes_on() -> None:
    net = Net()
    await net.join()
    calls: list[int] = []

    def urls() -> tuple[str, ...]:
        calls.append(1)
        if len(calls) == 2:
            raise UsageError("cannot determine an address to publish")
        return URLS

    pub = net.publisher(interval_s=0.001, urls=urls)
    await pub.publish()
    async with anyio.create_task_group() as tg:
        tg.start_soon(pub.republish_loop)
        net.want = 2  # the first renewal failed, the next one went out
        await net.enough.wait()
        tg.cancel_scope.cancel()
    assert len(calls) >= 3 and pub.published() == (net.a_core.aid,)
