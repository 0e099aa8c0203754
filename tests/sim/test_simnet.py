"""SimNetwork and FakeClock, driven by small fake cores written here."""

from __future__ import annotations

import random
import time
from collections import deque
from typing import NamedTuple

import pytest

from a2al_mcp._types import Addr, Datagram
from a2al_mcp.testing.clock import FakeClock
from a2al_mcp.testing.simnet import (
    DEFAULT_PORT,
    Link,
    SimNetwork,
    SimNode,
    SimulationError,
    TraceEntry,
)

# Dyadic latencies keep virtual timestamps exact: 1000.0 + 0.125 + 0.125 == 1000.25.
LAT = 0.125


class Rx(NamedTuple):
    now: float
    addr: Addr
    data: bytes


class Fired(NamedTuple):
    now: float
    deadline: float


Event = Rx | Fired


class PingCore:
    """Answers ``ping<x>`` with ``pong<x>``; emits :class:`Rx` for every datagram received."""

    def __init__(self) -> None:
        self._out: list[Datagram] = []
        self._events: deque[Event] = deque()

    def send(self, data: bytes, addr: Addr) -> None:
        """Command: queue a datagram (the test pokes the node afterwards)."""
        self._out.append((data, addr))

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self._events.append(Rx(now, addr, data))
        if data.startswith(b"ping"):
            self._out.append((b"pong" + data[4:], addr))

    def handle_timer(self, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return None

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None


class TimerCore(PingCore):
    """One deadline; fires emit :class:`Fired`; optionally re-arms ``repeats`` times."""

    def __init__(self, period: float = 0.0, repeats: int = 0) -> None:
        super().__init__()
        self.deadline: float | None = None
        self._period = period
        self._repeats = repeats

    def handle_timer(self, now: float) -> None:
        if self.deadline is None or self.deadline > now:
            return
        self._events.append(Fired(now, self.deadline))
        if self._repeats > 0:
            self._repeats -= 1
            self.deadline += self._period
        else:
            self.deadline = None

    def get_timer(self) -> float | None:
        return self.deadline


class DelayedEchoCore(PingCore):
    """Echoes every datagram back ``delay`` seconds after it arrived, through its timer."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self._delay = delay
        self._queue: deque[tuple[float, Datagram]] = deque()

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self._events.append(Rx(now, addr, data))
        self._queue.append((now + self._delay, (data, addr)))

    def handle_timer(self, now: float) -> None:
        while self._queue and self._queue[0][0] <= now:
            self._out.append(self._queue.popleft()[1])

    def get_timer(self) -> float | None:
        return self._queue[0][0] if self._queue else None


class StuckTimerCore(PingCore):
    """A buggy core whose deadline never moves."""

    def handle_timer(self, now: float) -> None:
        pass

    def get_timer(self) -> float | None:
        return 0.0


class Learned(NamedTuple):
    now: float
    rumor: bytes


class GossipCore:
    """Floods 8-byte rumors: new ones are batched for ``batch_s`` and sent to every neighbour."""

    def __init__(self, batch_s: float) -> None:
        self.neighbours: list[Addr] = []
        self.known: set[bytes] = set()
        self._batch_s = batch_s
        self._pending: list[bytes] = []
        self._deadline: float | None = None
        self._out: list[Datagram] = []
        self._events: deque[Learned] = deque()

    def originate(self, rumor: bytes, now: float) -> None:
        """Command: start a rumor here."""
        self._learn(rumor, now)

    def _learn(self, rumor: bytes, now: float) -> None:
        if rumor in self.known:
            return
        self.known.add(rumor)
        self._events.append(Learned(now, rumor))
        self._pending.append(rumor)
        if self._deadline is None:
            self._deadline = now + self._batch_s

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        for i in range(0, len(data) - len(data) % 8, 8):
            self._learn(data[i : i + 8], now)

    def handle_timer(self, now: float) -> None:
        if self._deadline is None or self._deadline > now:
            return
        self._deadline = None
        batch = b"".join(self._pending)
        self._pending.clear()
        self._out.extend((batch, n) for n in self.neighbours)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return self._deadline

    def next_event(self) -> Learned | None:
        return self._events.popleft() if self._events else None


def rx(node: SimNode[Event]) -> list[Rx]:
    return [e for e in node.events if isinstance(e, Rx)]


def fired(node: SimNode[Event]) -> list[Fired]:
    return [e for e in node.events if isinstance(e, Fired)]


def pair(net: SimNetwork) -> tuple[SimNode[Event], SimNode[Event], PingCore, PingCore]:
    ca, cb = PingCore(), PingCore()
    return net.add_node(ca), net.add_node(cb), ca, cb


# ---------------------------------------------------------------------------- clock


def test_fake_clock() -> None:
    clock = FakeClock()
    assert clock.monotonic() == 1000.0
    assert clock.wall() == 1_700_001_000.0
    assert clock.wall_offset == 1_700_000_000.0
    assert clock.advance(2.5) == 1002.5
    assert clock.wall() - clock.monotonic() == 1_700_000_000.0
    clock.set(1010.0)
    assert clock.monotonic() == 1010.0
    clock.set(1010.0)  # staying put is fine
    with pytest.raises(ValueError):
        clock.set(1009.0)
    with pytest.raises(ValueError):
        clock.advance(-0.1)
    with pytest.raises(ValueError):
        clock.advance(float("nan"))
    assert FakeClock(start_monotonic=0.0, wall_offset=5.0).wall() == 5.0


# ---------------------------------------------------------------------------- topology


def test_link_validation() -> None:
    for bad in (
        {"latency_s": -0.1},
        {"latency_s": float("inf")},
        {"latency_s": 0.1, "jitter_s": -1.0},
        {"latency_s": 0.1, "loss": 1.5},
        {"latency_s": 0.1, "duplicate": -0.5},
        {"latency_s": float("nan")},
    ):
        with pytest.raises(ValueError):
            Link(**bad)
    assert Link(latency_s=0.0, loss=1.0, duplicate=1.0).loss == 1.0


def test_virtual_addresses() -> None:
    net = SimNetwork(seed=1)
    nodes = [net.add_node(PingCore()) for _ in range(256)]
    assert nodes[0].addr == ("10.0.0.1", DEFAULT_PORT)
    assert nodes[1].addr == ("10.0.0.2", 4121)
    assert nodes[253].addr == ("10.0.0.254", 4121)
    assert nodes[254].addr == ("10.0.1.1", 4121)
    assert len({n.addr for n in nodes}) == 256
    given: SimNode[Event] = net.add_node(PingCore(), ("192.0.2.7", 9000))
    assert given.addr == ("192.0.2.7", 9000)
    assert net.node_at(("192.0.2.7", 9000)) is given
    with pytest.raises(ValueError):
        net.add_node(PingCore(), ("192.0.2.7", 9000))
    # a given address that an auto-assigned one would take is skipped
    net2 = SimNetwork(seed=1)
    net2.add_node(PingCore(), ("10.0.0.1", 4121))
    assert net2.add_node(PingCore()).addr == ("10.0.0.2", 4121)


# ---------------------------------------------------------------------------- delivery


def test_delivery_latency_exact_timestamps() -> None:
    net = SimNetwork(seed=1, default_link=Link(latency_s=LAT))
    a, b, ca, _ = pair(net)
    t0 = net.now
    assert t0 == 1000.0

    ca.send(b"ping1", b.addr)
    assert net.next_time() is None  # nothing happens until the node is poked
    net.poke(a)
    assert net.next_time() == t0 + LAT

    assert net.run_until_idle(limit_s=10.0)
    assert net.now == t0 + 2 * LAT
    assert rx(b) == [Rx(t0 + LAT, a.addr, b"ping1")]
    assert rx(a) == [Rx(t0 + 2 * LAT, b.addr, b"pong1")]
    assert net.trace == (
        TraceEntry(t0 + LAT, a.addr, b.addr, 5, "delivered"),
        TraceEntry(t0 + 2 * LAT, b.addr, a.addr, 5, "delivered"),
    )
    st = net.stats()
    assert (st.sent, st.delivered, st.dropped, st.duplicated, st.events) == (2, 2, 0, 0, 2)
    assert st.nodes[a.addr].sent == 1
    assert st.nodes[a.addr].received == 1
    assert st.nodes[b.addr].events == 1


def test_fifo_without_jitter_and_per_pair_links() -> None:
    net = SimNetwork(seed=1, default_link=Link(latency_s=LAT))
    a, b, ca, _ = pair(net)
    c: SimNode[Event] = net.add_node(PingCore())
    net.link(a, c, Link(latency_s=0.5), both_ways=False)
    assert net.link_between(a, c) == Link(latency_s=0.5)
    assert net.link_between(c, a) == Link(latency_s=LAT)
    t0 = net.now
    for i in range(20):
        ca.send(b"x%d" % i, b.addr)
    ca.send(b"slow", c.addr)
    net.poke(a)
    net.run_for(1.0)
    assert [e.data for e in rx(b)] == [b"x%d" % i for i in range(20)]  # ties keep send order
    assert {e.now for e in rx(b)} == {t0 + LAT}
    assert rx(c) == [Rx(t0 + 0.5, a.addr, b"slow")]
    net.link(a, c, None)
    assert net.link_between(a, c) == Link(latency_s=LAT)


def test_loss_is_deterministic_per_seed() -> None:
    def run(seed: int) -> int:
        net = SimNetwork(seed=seed, default_link=Link(latency_s=LAT, loss=0.3))
        a, b, ca, _ = pair(net)
        for i in range(1000):
            ca.send(b"d%d" % i, b.addr)
        net.poke(a)
        net.run_until_idle(limit_s=10.0)
        st = net.stats()
        assert st.delivered + st.dropped_loss == 1000 == st.sent
        assert st.nodes[a.addr].dropped_out == st.dropped_loss == st.nodes[b.addr].dropped_in
        assert sum(e.verdict == "lost" for e in net.trace) == st.dropped_loss
        return st.delivered

    assert run(42) == run(42) == 705  # pinned: random.Random's stream is stable across Pythons
    assert 640 < run(7) < 760
    assert run(7) != run(42)


def test_duplication() -> None:
    net = SimNetwork(seed=3, default_link=Link(latency_s=LAT, duplicate=1.0))
    a, b, ca, _ = pair(net)
    ca.send(b"hello", b.addr)
    net.poke(a)
    net.run_for(LAT)
    t0 = net.now - LAT
    assert rx(b) == [Rx(t0 + LAT, a.addr, b"hello")] * 2
    assert [e.verdict for e in net.trace] == ["delivered", "duplicate"]
    st = net.stats()
    assert (st.sent, st.delivered, st.duplicated) == (1, 2, 1)

    net2 = SimNetwork(seed=3, default_link=Link(latency_s=LAT, duplicate=0.25))
    a2, b2, ca2, _ = pair(net2)
    for i in range(400):
        ca2.send(b"n%d" % i, b2.addr)
    net2.poke(a2)
    net2.run_until_idle(limit_s=1.0)
    st2 = net2.stats()
    assert 60 < st2.duplicated < 140
    assert st2.delivered == 400 + st2.duplicated
    assert len(rx(b2)) == st2.delivered


def test_jitter_reorders_within_bounds() -> None:
    net = SimNetwork(seed=5, default_link=Link(latency_s=0.1, jitter_s=0.05))
    a, b, ca, _ = pair(net)
    t0 = net.now
    for i in range(50):
        ca.send(b"%03d" % i, b.addr)
        net.poke(a)
        net.run_for(0.005)
    net.run_until_idle(limit_s=1.0)
    got = rx(b)
    assert len(got) == 50
    times = [e.now for e in got]
    assert times == sorted(times)  # delivered in virtual-time order
    for e in got:
        sent_at = t0 + int(e.data) * 0.005
        assert sent_at + 0.1 - 1e-9 <= e.now <= sent_at + 0.15 + 1e-9
    order = [int(e.data) for e in got]
    assert order != sorted(order)  # jitter larger than the send gap reorders
    assert sorted(order) == list(range(50))


# ---------------------------------------------------------------------------- churn


def test_kill_drops_both_ways_and_in_flight() -> None:
    net = SimNetwork(seed=1, default_link=Link(latency_s=LAT))
    a, b, ca, cb = pair(net)
    ca.send(b"ping-in-flight", b.addr)
    net.poke(a)
    net.run_for(LAT / 2)
    net.kill(b)
    assert not b.alive
    ca.send(b"ping-to-dead", b.addr)
    net.poke(a)
    cb.send(b"from-dead", a.addr)
    net.poke(b)  # poking a dead node does nothing
    assert net.run_until_idle(limit_s=1.0)
    assert rx(b) == []
    assert rx(a) == []
    assert [e.verdict for e in net.trace] == ["killed", "killed"]
    assert net.stats().dropped_killed == 2

    net.revive(b)  # b's queued datagram goes out now
    assert net.run_until_idle(limit_s=1.0)
    assert [e.data for e in rx(a)] == [b"from-dead"]

    # a datagram from a node killed while it is in flight is dropped too
    cb.send(b"late", a.addr)
    net.poke(b)
    net.run_for(LAT / 2)
    net.kill(b)
    net.run_until_idle(limit_s=1.0)
    assert [e.data for e in rx(a)] == [b"from-dead"]
    assert net.trace[-1].verdict == "killed"


def test_remove_node_frees_address() -> None:
    net = SimNetwork(seed=1, default_link=Link(latency_s=LAT))
    a, b, ca, _ = pair(net)
    addr = b.addr
    net.remove_node(b)
    assert net.node_at(addr) is None
    assert b not in net.nodes
    ca.send(b"?", addr)
    net.poke(a)
    assert net.trace[-1] == TraceEntry(net.now, a.addr, addr, 1, "unroutable")
    with pytest.raises(ValueError):
        net.revive(b)
    b2: SimNode[Event] = net.add_node(PingCore(), addr)
    ca.send(b"!", addr)
    net.poke(a)
    net.run_until_idle(limit_s=1.0)
    assert [e.data for e in rx(b2)] == [b"!"]
    st = net.stats()
    assert st.dropped_unroutable == 1
    assert addr in st.nodes


def test_kill_cancels_timer_and_revive_rearms() -> None:
    net = SimNetwork(seed=1)
    core = TimerCore()
    node: SimNode[Event] = net.add_node(core)
    t0 = net.now
    core.deadline = t0 + 1.0
    net.poke(node)
    assert node.timer() == t0 + 1.0
    net.kill(node)
    assert node.timer() is None
    assert net.run_until_idle(limit_s=5.0)
    assert fired(node) == []
    net.run_for(5.0)
    net.revive(node)  # the deadline has passed: it fires at once
    net.run_until_idle(limit_s=1.0)
    assert fired(node) == [Fired(t0 + 5.0, t0 + 1.0)]


# ---------------------------------------------------------------------------- router


def test_router_drop_and_delay() -> None:
    net = SimNetwork(seed=1, default_link=Link(latency_s=LAT))
    a, b, ca, _ = pair(net)
    seen: list[tuple[Addr, Addr, bytes]] = []

    def router(src: Addr, dst: Addr, data: bytes) -> bool | float:
        seen.append((src, dst, data))
        if b"drop" in data:
            return False
        if dst == b.addr:
            return 0.5
        return True

    net.set_router(router)
    t0 = net.now
    ca.send(b"please drop", b.addr)
    ca.send(b"ping", b.addr)
    net.poke(a)
    assert net.run_until_idle(limit_s=5.0)
    assert rx(b) == [Rx(t0 + LAT + 0.5, a.addr, b"ping")]
    assert rx(a) == [Rx(t0 + 2 * LAT + 0.5, b.addr, b"pong")]
    assert seen == [
        (a.addr, b.addr, b"please drop"),
        (a.addr, b.addr, b"ping"),
        (b.addr, a.addr, b"pong"),
    ]
    assert net.trace[0] == TraceEntry(t0, a.addr, b.addr, 11, "router")
    assert net.stats().dropped_router == 1

    net.set_router(lambda s, d, data: -1.0)
    ca.send(b"x", b.addr)
    with pytest.raises(ValueError):
        net.poke(a)
    net.set_router(None)


def test_router_runs_before_loss() -> None:
    net = SimNetwork(seed=1, default_link=Link(latency_s=LAT, loss=1.0))
    a, b, ca, _ = pair(net)
    net.set_router(lambda s, d, data: data != b"r")
    ca.send(b"r", b.addr)
    ca.send(b"l", b.addr)
    net.poke(a)
    assert [e.verdict for e in net.trace] == ["router", "lost"]


# ---------------------------------------------------------------------------- timers


def test_timer_fires_at_exact_times_and_rearms() -> None:
    net = SimNetwork(seed=1)
    core = TimerCore(period=0.25, repeats=3)
    node: SimNode[Event] = net.add_node(core)
    t0 = net.now
    core.deadline = t0 + 1.0
    net.poke(node)
    assert net.run_until_idle(limit_s=10.0)
    assert fired(node) == [
        Fired(t0 + 1.0, t0 + 1.0),
        Fired(t0 + 1.25, t0 + 1.25),
        Fired(t0 + 1.5, t0 + 1.5),
        Fired(t0 + 1.75, t0 + 1.75),
    ]
    assert net.now == t0 + 1.75
    assert net.stats().timers_fired == 4
    assert node.stats().timers_fired == 4


def test_timer_moves_and_cancels() -> None:
    net = SimNetwork(seed=1)
    core = TimerCore()
    node: SimNode[Event] = net.add_node(core)
    t0 = net.now

    core.deadline = t0 + 1.0
    net.poke(node)
    core.deadline = t0 + 2.0  # later: the stale t0+1 entry must not fire
    net.poke(node)
    assert net.next_time() == t0 + 2.0
    net.run_for(3.0)
    assert fired(node) == [Fired(t0 + 2.0, t0 + 2.0)]
    assert net.stats().timers_fired == 1

    t1 = net.now
    core.deadline = t1 + 5.0
    net.poke(node)
    core.deadline = t1 + 0.5  # earlier
    net.poke(node)
    net.run_for(10.0)
    assert fired(node)[1:] == [Fired(t1 + 0.5, t1 + 0.5)]
    assert net.stats().timers_fired == 2

    core.deadline = net.now + 1.0
    net.poke(node)
    core.deadline = None  # cancelled
    net.poke(node)
    assert net.next_time() is None
    t2 = net.now
    assert net.run_until_idle(limit_s=10.0)
    assert net.now == t2
    assert net.stats().timers_fired == 2


def test_timer_reread_after_receive() -> None:
    net = SimNetwork(seed=1, default_link=Link(latency_s=LAT))
    ca = PingCore()
    a: SimNode[Event] = net.add_node(ca)
    b: SimNode[Event] = net.add_node(DelayedEchoCore(delay=0.3))
    t0 = net.now
    ca.send(b"echo", b.addr)
    ca.send(b"echo2", b.addr)
    net.poke(a)
    assert net.run_until_idle(limit_s=5.0)
    assert rx(a) == [
        Rx(t0 + LAT + 0.3 + LAT, b.addr, b"echo"),
        Rx(t0 + LAT + 0.3 + LAT, b.addr, b"echo2"),
    ]
    assert b.stats().timers_fired == 1  # both were due at the same deadline


def test_livelock_is_reported() -> None:
    net = SimNetwork(seed=1, max_steps_per_instant=100)
    with pytest.raises(SimulationError, match="livelock"):
        net.add_node(StuckTimerCore())
        net.run_for(1.0)


# ---------------------------------------------------------------------------- running


def test_run_until_predicate_and_limit() -> None:
    net = SimNetwork(seed=1, default_link=Link(latency_s=LAT))
    a, b, ca, _ = pair(net)
    t0 = net.now
    assert net.run_until(lambda: True, limit_s=1.0)
    assert net.now == t0  # checked before running anything

    ca.send(b"ping", b.addr)
    net.poke(a)
    assert net.run_until(lambda: len(b.events) > 0, limit_s=1.0)
    assert net.now == t0 + LAT  # stops at the action that made it true
    assert rx(a) == []

    assert not net.run_until(lambda: False, limit_s=2.0)
    assert net.now == t0 + LAT + 2.0
    assert len(rx(a)) == 1

    # time-based predicates see the limit
    t1 = net.now
    assert net.run_until(lambda: net.now >= t1 + 3.0, limit_s=3.0)


def test_run_until_idle_limit_and_step() -> None:
    net = SimNetwork(seed=1)
    assert not net.step()
    core = TimerCore(period=1.0, repeats=1_000_000)
    node: SimNode[Event] = net.add_node(core)
    t0 = net.now
    core.deadline = t0 + 1.0
    net.poke(node)
    assert not net.run_until_idle(limit_s=10.0)
    assert net.now == t0 + 10.0
    assert len(fired(node)) == 10
    assert net.step()
    assert net.now == t0 + 11.0
    with pytest.raises(ValueError):
        net.run_for(-1.0)


def test_events_bounded_and_callback() -> None:
    net = SimNetwork(seed=1, default_link=Link(latency_s=LAT))
    seen: list[Event] = []
    ca, cb = PingCore(), PingCore()
    a: SimNode[Event] = net.add_node(ca)
    b: SimNode[Event] = net.add_node(cb, max_events=3, on_event=seen.append)
    for i in range(10):
        ca.send(b"%d" % i, b.addr)
    net.poke(a)
    net.run_until_idle(limit_s=1.0)
    assert [e.data for e in rx(b)] == [b"7", b"8", b"9"]
    assert len(seen) == 10
    assert b.stats().events == 10


def test_callback_can_drive_its_core() -> None:
    """A callback may issue commands on its own core; the flush picks them up."""
    net = SimNetwork(seed=1, default_link=Link(latency_s=LAT))
    ca, cb = PingCore(), PingCore()
    a: SimNode[Event] = net.add_node(ca)

    def reply_twice(e: Event) -> None:
        if isinstance(e, Rx) and e.data == b"hi":
            cb.send(b"one", e.addr)
            cb.send(b"two", e.addr)

    b: SimNode[Event] = net.add_node(cb, on_event=reply_twice)
    ca.send(b"hi", b.addr)
    net.poke(a)
    net.run_until_idle(limit_s=1.0)
    assert [e.data for e in rx(a)] == [b"one", b"two"]


def test_make_rng_and_format_trace() -> None:
    assert SimNetwork(seed=9).make_rng().bytes(16) == SimNetwork(seed=9).make_rng().bytes(16)
    assert SimNetwork(seed=9).make_rng().bytes(16) != SimNetwork(seed=10).make_rng().bytes(16)
    net = SimNetwork(seed=9, default_link=Link(latency_s=LAT), trace_size=3)
    a, b, ca, _ = pair(net)
    for _ in range(4):
        ca.send(b"ping", b.addr)
    net.poke(a)
    net.run_until_idle(limit_s=1.0)
    assert len(net.trace) == 3
    text = net.format_trace(last=2)
    lines = text.splitlines()
    assert lines[0].startswith("# SimNetwork seed=9 ")
    assert "last 2 of 8" in lines[0]
    assert len(lines) == 3
    assert "10.0.0.2:4121 -> 10.0.0.1:4121" in lines[-1]
    assert lines[-1].endswith("4 B  delivered")


# ---------------------------------------------------------------------------- determinism


def gossip_scenario(seed: int, n: int, *, loss: float = 0.05) -> SimNetwork:
    """``n`` gossip nodes on a ring plus random chords, over a lossy, jittery, duplicating net."""
    net = SimNetwork(
        seed=seed,
        default_link=Link(latency_s=0.02, jitter_s=0.03, loss=loss, duplicate=0.01),
    )
    topo = random.Random(seed)
    cores = [GossipCore(batch_s=0.05) for _ in range(n)]
    nodes = [net.add_node(c) for c in cores]
    for i, core in enumerate(cores):
        peers = {(i + 1) % n, (i - 1) % n, *topo.sample(range(n), 6)} - {i}
        core.neighbours = [nodes[j].addr for j in sorted(peers)]
    for k in range(5):
        origin = (k * 37) % n
        cores[origin].originate(b"rumor-%02d" % k, net.now)
        net.poke(nodes[origin])
        net.run_for(0.1)
    return net


def test_same_seed_same_trace_different_seed_differs() -> None:
    def run(seed: int) -> tuple[tuple[TraceEntry, ...], object]:
        net = gossip_scenario(seed, 40)
        net.run_until_idle(limit_s=30.0)
        return net.trace, net.stats()

    trace1, stats1 = run(11)
    trace2, stats2 = run(11)
    assert len(trace1) > 1000
    assert trace1 == trace2
    assert stats1 == stats2
    trace3, stats3 = run(12)
    assert trace3 != trace1
    assert stats3 != stats1


def test_flood_300_nodes() -> None:
    started = time.perf_counter()
    net = gossip_scenario(2024, 300, loss=0.01)
    cores = [n.core for n in net.nodes]
    assert all(isinstance(c, GossipCore) for c in cores)
    done = net.run_until(
        lambda: all(len(c.known) == 5 for c in cores if isinstance(c, GossipCore)),
        limit_s=30.0,
    )
    elapsed = time.perf_counter() - started
    st = net.stats()
    print(
        f"\n300-node flood: coverage at t+{net.now - 1000.0:.3f} s virtual, "
        f"{elapsed:.3f} s wall, {st.sent} sent, {st.delivered} delivered, "
        f"{st.dropped} dropped, {st.timers_fired} timers"
    )
    assert done, net.format_trace()
    assert net.run_until_idle(limit_s=30.0)
    assert all(len(n.events) == 5 for n in net.nodes)
    assert elapsed < 10.0
