"""Publisher.republish_endpoints: when the node's address or NAT type changes, every
published identity's endpoint record is renewed at once with what is known now (no wait for
the 30-min renewal), and a looking-up node reads the new one back from the DHT."""

from __future__ import annotations

import dataclasses

import pytest

from a2al_mcp.dht.lookup import LookupKind
from a2al_mcp.errors import UsageError
from a2al_mcp.node.publisher import Publisher
from a2al_mcp.protocol.payloads import EndpointPayload
from a2al_mcp.protocol.records import RecType
from tests.node.test_publisher import Net

pytestmark = pytest.mark.anyio


@dataclasses.dataclass
class View:
    urls: tuple[str, ...]
    nat_type: int


async def test_a_view_change_renews_every_published_endpoint_record_at_once() -> None:
    net = Net()
    await net.join()
    view = View(("quic://192.0.2.7:4121",), 0)
    pub = Publisher(publish_record=net.publish_record, identity=net.identity,
                    endpoint_urls=lambda: view.urls, nat_type=lambda: view.nat_type,
                    clock=net.clock, republish_interval_s=1800.0)  # fmt: skip
    node, agent = net.a_core.aid, net.agent.aid
    first = await pub.publish(ttl_s=600)
    await pub.publish(agent)
    await pub.register_service("weather", aid=agent)
    assert EndpointPayload.from_bytes(first.payload).nat_type == 0

    view.urls, view.nat_type = ("quic://198.51.100.9:40000",), 3
    net.stored.clear()
    assert await pub.republish_endpoints() == 2
    kinds = {(rec.rec_type, rec.address) for rec, _ in net.stored}
    assert len(net.stored) == 2 and kinds == {(RecType.ENDPOINT, node), (RecType.ENDPOINT, agent)}
    for rec, _ in net.stored:
        payload = EndpointPayload.from_bytes(rec.payload)
        assert payload.endpoints == ("quic://198.51.100.9:40000",) and payload.nat_type == 3
    renewed = {rec.address: rec for rec, _ in net.stored}
    assert renewed[node].ttl == 600 and renewed[node].seq > first.seq
    found = await net.c.lookup(node.node_id, LookupKind.FIRST, rec_type=RecType.ENDPOINT)
    assert found.records == (renewed[node],)


async def test_nothing_published_nothing_renewed_and_a_failure_is_logged_not_raised() -> None:
    net = Net()
    await net.join()
    urls: list[tuple[str, ...]] = [("quic://192.0.2.7:4121",)]

    def endpoint_urls() -> tuple[str, ...]:
        if not urls:
            raise UsageError("cannot determine an address to publish")
        return urls[0]

    pub = net.publisher(urls=endpoint_urls)
    assert await pub.republish_endpoints() == 0 and net.stored == []
    await pub.publish()
    urls.clear()
    net.stored.clear()
    assert await pub.republish_endpoints() == 0
    assert net.stored == [] and pub.published() == (net.a_core.aid,)


async def test_a_first_publish_without_an_address_leaves_nothing_published() -> None:
    net = Net()
    await net.join()

    def no_address() -> tuple[str, ...]:
        raise UsageError("cannot determine an address to publish")

    pub = net.publisher(urls=no_address)
    with pytest.raises(UsageError, match="address"):
        await pub.publish()
    assert pub.published() == () and net.stored == []
