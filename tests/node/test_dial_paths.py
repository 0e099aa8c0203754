"""The Connector's paths on loopback (a2al_mcp.node.connect with a2al_mcp.node.dial_strategy):
direct and a hub path started as planned, the first verified connection winning, the path
kept per connection and per peer, failures naming every path tried. The hub path here is a
stand-in that dials the real server (a punch that found its address) or fails; the real one
runs in the NAT testbed (tests/nat/test_node_dial.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio
import pytest

from a2al_mcp import SystemRng
from a2al_mcp._clock import SystemClock
from a2al_mcp.errors import RequestTimeout, Unreachable
from a2al_mcp.identity import Identity
from a2al_mcp.identity.aid import Aid
from a2al_mcp.node.connect import Connector, DialTarget
from a2al_mcp.node.dialer import Dialer, dial_target
from a2al_mcp.node.serving import Acceptor
from a2al_mcp.protocol.session_frames import MailboxFrame
from a2al_mcp.transport.certificates import LocalCertificate
from a2al_mcp.transport.peer import InboundHandlers, PeerConnection
from tests.node.quicpeer import QuicPeer, quic_peer
from tests.unit.ice.quic_over_link import MemoryLink, link_pair

pytestmark = pytest.mark.anyio

WAIT_S = 20.0
HUB = "ws://127.0.0.1:9"


@contextlib.contextmanager
def silent_udp() -> Iterator[str]:
    """A ``quic://`` URL where nothing ever answers (a socket that never reads)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield "quic://{}:{}".format(*s.getsockname())


class DialingHub:
    """A hub path whose punch "found" the server: it dials it from the client's socket."""

    def __init__(self, *, delay_s: float = 0.05, fail: bool = False) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.client: QuicPeer | None = None
        self.server: QuicPeer | None = None
        self.calls: list[tuple[Aid, tuple[str, ...]]] = []

    async def __call__(
        self, local: LocalCertificate, remote: Aid, hubs: tuple[str, ...]
    ) -> PeerConnection:
        self.calls.append((remote, hubs))
        await anyio.sleep(self.delay_s)
        if self.fail or self.client is None or self.server is None:
            raise Unreachable("hole punch failed: no punch-ack", operation="punch")
        pc = self.client.service.dial(local, remote, self.server.addr)
        await pc.wait_ready()
        return pc


@dataclasses.dataclass
class Setup:
    client: QuicPeer
    server: QuicPeer
    connector: Connector


@contextlib.asynccontextmanager
async def setup(hub: DialingHub, *, own_nat: int = 3) -> AsyncIterator[Setup]:
    me = Identity.generate(SystemRng())
    acceptor = Acceptor(identities={me.aid: me}, node_aid=me.aid)

    async def no_mail(local: Aid | None, frame: MailboxFrame) -> bool:
        return False

    handlers: InboundHandlers = acceptor.handlers(
        agent_info=lambda aid, seq: [], note_observed=lambda a: None,
        cache_record=lambda k, r: None, on_mailbox=no_mail,
    )  # fmt: skip
    async with quic_peer(handlers, identity=me) as server, quic_peer() as client:
        connector = Connector(client.service, now=SystemClock().monotonic, ipv6=False,
                              own_nat=lambda: own_nat, hub_path=hub)  # fmt: skip
        yield Setup(client, server, connector)


def _target(t: Setup, url: str, nat_type: int) -> Callable[[], Awaitable[DialTarget]]:
    async def get() -> DialTarget:
        return DialTarget((url,), nat_type, (HUB,))

    return get


async def test_a_target_behind_a_nat_is_punched_while_direct_is_still_silent() -> None:
    hub = DialingHub()
    with anyio.fail_after(WAIT_S), silent_udp() as dead:
        async with setup(hub) as t:
            hub.client, hub.server = t.client, t.server
            remote = t.server.identity.aid
            pc = await t.connector.connect(t.client.cert(), remote, _target(t, dead, 3))
            assert pc.ready and pc.peer_aid == remote
            assert hub.calls == [(remote, (HUB,))]
            used = t.connector.path(pc)
            assert used is not None and used.kind == "punched" and used.addr == t.server.addr
            print(f"punched in {used.took_s:.3f} s")
            tries = {x.kind: x for x in t.connector.last_tries[remote]}
            assert tries["punched"].outcome == "won" and tries["direct"].outcome == "lost"
            assert t.connector.punch_wins == 1 and t.connector.direct_wins == 0
            # the next cold dial remembers the punch: the hub is rung at once, even for a
            # record that now says "public"
            pc.close()
            again = await t.connector.connect(t.client.cert(), remote, _target(t, dead, 1))
            assert again is not pc and len(hub.calls) == 2
            assert t.connector.path(pc) is None  # closed: forgotten


async def test_a_public_target_rings_its_hub_beside_direct_until_direct_has_worked() -> None:
    """A record's nat_type 1 may be a2ald's port-restricted NAT (testbed D5): with nothing
    cached the hub is rung at once beside direct; once direct worked, the next cold dial
    gives direct its head start and the hub is not rung."""
    hub = DialingHub(delay_s=2.0)  # the punch "finds" its path well after direct answered
    with anyio.fail_after(WAIT_S):
        async with setup(hub, own_nat=1) as t:  # we are public
            hub.client, hub.server = t.client, t.server
            remote = t.server.identity.aid
            pc = await t.connector.connect(t.client.cert(), remote,
                                           _target(t, t.server.url, 1))  # fmt: skip
            used = t.connector.path(pc)
            assert used is not None and used.kind == "direct" and used.addr == t.server.addr
            assert len(hub.calls) == 1  # rung at once, lost to direct
            assert sorted((x.kind, x.outcome) for x in t.connector.last_tries[remote]) == [
                ("direct", "won"), ("punched", "lost")
            ]  # fmt: skip
            held = t.connector.paths.get(remote, SystemClock().monotonic())
            assert held == used
            pc.close()
            again = await t.connector.connect(t.client.cert(), remote,
                                              _target(t, t.server.url, 1))  # fmt: skip
            assert again is not pc and len(hub.calls) == 1  # direct within its head start
            assert [(x.kind, x.outcome) for x in t.connector.last_tries[remote]] == [
                ("direct", "won")
            ]


async def test_a_failed_dial_names_every_path_it_tried_and_how_long_each_took() -> None:
    hub = DialingHub(fail=True)
    with anyio.fail_after(WAIT_S), silent_udp() as dead:
        async with setup(hub) as t:
            remote = t.server.identity.aid
            with pytest.raises(RequestTimeout) as rt:
                await t.connector.connect(t.client.cert(), remote, _target(t, dead, 3),
                                          timeout_s=0.5)  # fmt: skip
            text = str(rt.value)
            print(text)
            assert rt.value.aid == remote and "within 0.5 s" in text
            assert "direct (+0.00 s" in text and "no answer" in text
            # (when the hub path started is not asserted: the first dial loads the QUIC
            # stacks, which holds the event loop for a moment on a loaded machine)
            assert "punched (+" in text and "hole punch failed: no punch-ack" in text
            assert isinstance(rt.value.__cause__, Unreachable)  # the hub path's failure
            assert t.connector.paths.get(remote, SystemClock().monotonic()) is None


async def test_a_dial_timeout_through_fetch_keeps_its_own_message() -> None:
    """Before: a dial that gave up after its 10 s reported "took over 30 s"."""
    hub = DialingHub(fail=True)
    with anyio.fail_after(WAIT_S), silent_udp() as dead:
        async with setup(hub) as t:
            remote = t.server.identity.aid

            @dataclasses.dataclass
            class Found:
                endpoints: tuple[str, ...]
                nat_type: int = 3

            async def resolve(aid: Aid) -> Found:
                return Found((dead,))

            dialer = Dialer(t.connector, identity=lambda aid: t.client.identity,
                            resolve=resolve, task_group=t.client.task_group,
                            handshake_timeout_s=0.4)  # fmt: skip
            with pytest.raises(RequestTimeout) as rt:
                await dialer.fetch(remote, timeout_s=5.0)
            assert "took over" not in str(rt.value) and "within 0.4 s" in str(rt.value)
            assert [x.kind for x in dialer.tried(remote)] == ["direct"]  # no hub in the record


def test_the_dial_target_reads_nat_type_and_hubs_from_the_record() -> None:
    @dataclasses.dataclass
    class Bare:
        endpoints: tuple[str, ...]

    assert dial_target(Bare(("quic://1.2.3.4:5",))) == DialTarget(("quic://1.2.3.4:5",))


class RelayThenDirect:
    """A hub path whose first call comes up through a "TURN relay" (an in-memory datagram
    link labelled ``relay``), and an upgrade path (no relay) that dials the server directly,
    as a punch that found its address would."""

    def __init__(self, t: Setup, links: tuple[MemoryLink, MemoryLink]) -> None:
        self.t = t
        self.links = links
        self.upgrade_calls = 0

    async def relay(self, local: LocalCertificate, remote: Aid,
                    hubs: tuple[str, ...]) -> PeerConnection:  # fmt: skip
        ours, theirs = self.links
        self.t.server.service.accept_path(theirs, remote=self.t.client.addr, label="relay")
        pc = self.t.client.service.dial(local, remote, ("203.0.113.3", 49152), path=ours,
                                        path_label="relay", on_path_close=ours.aclose)  # fmt: skip
        await pc.wait_ready()
        return pc

    async def direct(self, local: LocalCertificate, remote: Aid,
                     hubs: tuple[str, ...]) -> PeerConnection:  # fmt: skip
        self.upgrade_calls += 1
        pc = self.t.client.service.dial(local, remote, self.t.server.addr)
        await pc.wait_ready()
        return pc


async def test_a_relay_connection_is_upgraded_to_a_direct_path_and_the_relay_retired() -> None:
    """DCUtR style: the relay came up first; the hubs are called again without the relay,
    the pool moves to the new connection and the relay's is closed once it has no stream."""
    with anyio.fail_after(WAIT_S), silent_udp() as dead, link_pair() as links:
        async with setup(DialingHub()) as t:
            paths = RelayThenDirect(t, links)
            connector = Connector(t.client.service, now=SystemClock().monotonic, ipv6=False,
                                  own_nat=lambda: 4, hub_path=paths.relay,
                                  upgrade_path=paths.direct)  # fmt: skip
            connector.upgrade_first_s = 0.0
            remote = t.server.identity.aid
            relayed = await connector.connect(t.client.cert(), remote, _target(t, dead, 4))
            used = connector.path(relayed)
            assert used is not None and used.kind == "relay" and relayed.path is not None
            async with anyio.create_task_group() as tg:
                tg.start_soon(connector.maintain)
                while connector.upgrades == 0:  # noqa: ASYNC110 (the connector has no event)
                    await anyio.sleep(0.05)
                upgraded = connector.pooled_connection(t.client.identity.aid, remote)
                assert upgraded is not None and upgraded is not relayed
                assert upgraded.path is None  # the main socket: no relay
                now_used = connector.path(upgraded)
                assert now_used is not None and now_used.kind == "punched"
                assert now_used.addr == t.server.addr
                assert connector.paths.get(remote, SystemClock().monotonic()) == now_used
                again = await connector.connect(t.client.cert(), remote, _target(t, dead, 4))
                assert again is upgraded  # new streams use it
                while not relayed.closed:  # noqa: ASYNC110 (retired once without streams)
                    await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
            assert paths.upgrade_calls == 1 and connector.upgrade_tries == 1
