"""DhtService alone: real DhtCores wired in memory, no socket, a virtual clock.

The wire plays the endpoint: ``flush`` carries every queued datagram to the core at its
destination address (or records it, for an address nobody serves) and hands every event of
the serviced core to ``DhtService.on_event``. With ``hold`` set, datagrams wait until
``release`` so several operations can be in flight at once.
"""

from __future__ import annotations

from collections import defaultdict

import anyio
import pytest

from a2al_mcp._random import SeededRng
from a2al_mcp.config import DhtConfig
from a2al_mcp.dht import events as ev
from a2al_mcp.dht.core import DhtCore
from a2al_mcp.dht.lookup import LookupKind
from a2al_mcp.dht.service import DhtService, operation_timeout
from a2al_mcp.errors import NodeClosed, RequestTimeout
from a2al_mcp.identity import Identity, NodeId
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol.payloads import EndpointPayload
from a2al_mcp.protocol.records import RecType, SignedRecord
from a2al_mcp.testing.clock import FakeClock

pytestmark = pytest.mark.anyio

_Addr = tuple[str, int]
RPC = DhtConfig().lookup_rpc_timeout_s
SHORT_S = 0.05
"""The service's operation timeout in the tests that let it expire (real seconds)."""


class Wire:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.cores: dict[_Addr, DhtCore] = {}
        self.services: dict[_Addr, DhtService] = {}
        self.silent: defaultdict[_Addr, list[dm.Message]] = defaultdict(list)
        """What reached addresses nobody serves."""
        self.hold = False
        self.in_flight: list[tuple[bytes, _Addr, _Addr]] = []

    def add(self, seed: int, *, timeout_s: float = 60.0) -> tuple[DhtCore, DhtService]:
        addr = (f"10.0.0.{seed}", 4121)
        core = DhtCore(Identity.generate(SeededRng(seed)), rng=SeededRng(seed + 1000),
                       wall_offset=self.clock.wall_offset)  # fmt: skip
        self.cores[addr] = core
        service = DhtService(core, clock=self.clock, flush=self.flush, timeout_s=timeout_s)
        self.services[addr] = service
        return core, service

    def addr_of(self, core: DhtCore) -> _Addr:
        return next(a for a, c in self.cores.items() if c is core)

    def _collect(self) -> None:
        now = self.clock.monotonic()
        for src, core in self.cores.items():
            for data, dst in core.datagrams_to_send(now):
                if dst in self.cores:
                    self.in_flight.append((data, src, dst))
                else:
                    self.silent[dst].append(dm.decode_message(data))
            while (event := core.next_event()) is not None:
                self.services[src].on_event(event)

    def flush(self) -> None:
        self._collect()
        if not self.hold:
            self.release()

    def release(self) -> None:
        self.hold = False
        while self.in_flight:
            batch, self.in_flight = self.in_flight, []
            for data, src, dst in batch:
                self.cores[dst].receive_datagram(data, src, self.clock.monotonic())
            self._collect()

    def tick(self, seconds: float) -> None:
        """Advance virtual time and fire every core's timer."""
        now = self.clock.advance(seconds)
        for core in self.cores.values():
            core.handle_timer(now)
        self.flush()


def silent_peers(wire: Wire, core: DhtCore, n: int) -> list[_Addr]:
    addrs = []
    for i in range(n):
        addr = (f"10.9.0.{i + 1}", 4121)
        core.routing.observe_direct(Identity.generate(SeededRng(500 + i)).aid, addr,
                                    wire.clock.monotonic())  # fmt: skip
        addrs.append(addr)
    return addrs


def find_values(wire: Wire, target: NodeId) -> int:
    return sum(1 for msgs in wire.silent.values() for m in msgs
               if isinstance(m.body, dm.FindValue) and m.body.target == target)  # fmt: skip


def endpoint_record(ident: Identity, clock: FakeClock) -> SignedRecord:
    payload = EndpointPayload(endpoints=("quic://10.0.0.9:4121",)).to_bytes()
    return SignedRecord.sign(ident, RecType.ENDPOINT, payload, seq=1,
                             timestamp=int(clock.wall()), ttl=3600)  # fmt: skip


def test_operation_timeout_is_the_rpc_budget_plus_16_lookup_deadlines() -> None:
    assert operation_timeout(DhtConfig(lookup_rpc_timeout_s=1.0)) == 15.0 + 16.0


async def test_concurrent_pings_each_get_their_own_answer() -> None:
    wire = Wire(FakeClock())
    a_core, a = wire.add(1)
    b_core, _ = wire.add(2)
    c_core, _ = wire.add(3)
    got: dict[str, ev.PingFinished] = {}

    async def ping(name: str, core: DhtCore) -> None:
        got[name] = await a.ping(wire.addr_of(core))

    wire.hold = True
    async with anyio.create_task_group() as tg:
        tg.start_soon(ping, "b", b_core)
        tg.start_soon(ping, "c", c_core)
        await anyio.wait_all_tasks_blocked()
        assert got == {}  # both in flight
        wire.release()
    assert got["b"].ok and got["b"].aid == b_core.aid
    assert got["c"].ok and got["c"].aid == c_core.aid
    assert got["b"].op_id != got["c"].op_id
    assert a_core.statistics().cancelled_ops == 0


async def test_bootstrap_publish_lookup_end_to_end() -> None:
    wire = Wire(FakeClock())
    a_core, a = wire.add(1)
    b_core, _ = wire.add(2)
    _, c = wire.add(3)
    assert not a.ready
    boot = await a.bootstrap([wire.addr_of(b_core)])
    assert isinstance(boot, ev.BootstrapFinished) and boot.ok and boot.peers >= 1
    assert a.ready
    assert wire.addr_of(b_core) in a.peer_addrs()
    await c.bootstrap([wire.addr_of(b_core)])
    record = endpoint_record(a_core.identity, wire.clock)
    published = await a.publish(record, a_core.aid.node_id)
    assert b_core.aid in published.stored_at
    found = await c.lookup(a_core.aid.node_id, LookupKind.FIRST, rec_type=RecType.ENDPOINT)
    assert found.records == (record,)


async def test_a_timed_out_lookup_cancels_its_core_operation() -> None:
    wire = Wire(FakeClock())
    core, service = wire.add(1, timeout_s=SHORT_S)
    silent_peers(wire, core, 8)
    target = NodeId(bytes(32))
    with pytest.raises(RequestTimeout):
        await service.lookup(target, LookupKind.FIRST)
    assert core.statistics().cancelled_ops == 1
    first_round = find_values(wire, target)
    assert 0 < first_round < 8
    wire.tick(4 * RPC)  # past every deadline of the lookup's rounds
    assert find_values(wire, target) == first_round


async def test_a_cancelled_caller_cancels_its_core_operation() -> None:
    wire = Wire(FakeClock())
    core, service = wire.add(1)
    silent_peers(wire, core, 8)
    target = NodeId(bytes(32))
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.lookup, target, LookupKind.ALL)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert core.statistics().cancelled_ops == 1
    first_round = find_values(wire, target)
    wire.tick(4 * RPC)
    assert find_values(wire, target) == first_round


async def test_close_wakes_callers_with_node_closed_and_refuses_new_operations() -> None:
    wire = Wire(FakeClock())
    core, service = wire.add(1)
    silent_peers(wire, core, 3)
    cause = RuntimeError("crashed")
    service = DhtService(core, clock=wire.clock, flush=wire.flush, timeout_s=60.0,
                         closed_cause=lambda: cause)  # fmt: skip
    wire.services[wire.addr_of(core)] = service
    raised: list[BaseException] = []

    async def lookup() -> None:
        try:
            await service.lookup(NodeId(bytes(32)), LookupKind.FIRST)
        except NodeClosed as exc:
            raised.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(lookup)
        await anyio.wait_all_tasks_blocked()
        service.close()
    assert len(raised) == 1 and raised[0].__cause__ is cause
    assert core.statistics().cancelled_ops == 1
    with pytest.raises(NodeClosed):
        await service.ping(("10.9.0.1", 4121))


async def test_events_outside_operations_go_to_the_callbacks() -> None:
    wire = Wire(FakeClock())
    core, _ = wire.add(1)
    addrs: list[_Addr] = []
    mail: list[ev.MailboxStored | ev.RecordPushed] = []
    service = DhtService(core, clock=wire.clock, flush=wire.flush, timeout_s=60.0,
                         on_address=addrs.append, on_mailbox=mail.append)  # fmt: skip
    reporter = Identity.generate(SeededRng(7)).aid
    record = endpoint_record(Identity.generate(SeededRng(8)), wire.clock)
    service.on_event(ev.AddressObserved(reporter=reporter, addr=("192.0.2.1", 4121)))
    stored = ev.MailboxStored(key=NodeId(bytes(32)), record=record, source=("10.0.0.2", 4121))
    pushed = ev.RecordPushed(key=NodeId(bytes(32)), record=record, source=("10.0.0.2", 4121))
    service.on_event(stored)
    service.on_event(pushed)
    service.on_event(ev.PingFinished(op_id=999, ok=True))  # nobody waits: dropped
    assert addrs == [("192.0.2.1", 4121)]
    assert mail == [stored, pushed]


async def test_cache_record_keeps_a_record_a_lookup_then_finds_locally() -> None:
    wire = Wire(FakeClock())
    _, service = wire.add(1)
    ident = Identity.generate(SeededRng(9))
    record = endpoint_record(ident, wire.clock)
    service.cache_record(ident.aid.node_id, record)
    found = await service.lookup(ident.aid.node_id, LookupKind.FIRST, rec_type=RecType.ENDPOINT)
    assert found.records == (record,) and found.hops == 0
