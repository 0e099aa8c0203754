"""A deterministic discrete-event network of datagram cores (ARCHITECTURE.md §B7.3).

:class:`SimNetwork` runs any number of sans-I/O cores that follow the
:class:`a2al_mcp._types.DatagramCore` contract on one virtual timeline. There is no asyncio, no
thread and no socket: a heap of ``(time, seq, action)`` entries is the whole scheduler, ``seq``
breaks ties in insertion order, and one ``random.Random(seed)`` draws every loss, duplicate and
jitter decision. The same seed and the same calls therefore give the same trace, bit for bit
(libsimulator's single-timeline rule; trio ``FakeNet``'s router hook, typed).

Addresses are *virtual*: ``10.0.x.y:4121`` by default. They are dictionary keys, never bound to
a real socket. Every core sees ``now`` from the network's :class:`FakeClock`.

After every interaction with a core (a delivered datagram, a fired timer, :meth:`SimNetwork.poke`)
the network *flushes* that node: it drains ``next_event()`` into :attr:`SimNode.events` (and the
node's optional callback), schedules each of ``datagrams_to_send(now)`` over the link, and
re-reads ``get_timer()``. A test that calls a command on a core directly must call
:meth:`SimNetwork.poke` on that node afterwards, exactly as a real driver would transmit after a
command.

Example::

    net = SimNetwork(seed=7, default_link=Link(latency_s=0.02, loss=0.01))
    a = net.add_node(PingCore())
    b = net.add_node(PingCore())
    a.core.ping(b.addr, net.now)
    net.poke(a)
    assert net.run_until(lambda: len(a.events) > 0, limit_s=5.0)
    log.debug("%s", net.format_trace())

This module is the driver; links are :mod:`.simnet_links`, a node's bookkeeping
:mod:`.simnet_nodes`, the trace and counters :mod:`.simnet_stats`.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from typing import Any, Final, TypeAlias, TypeVar

from a2al_mcp._random import SeededRng
from a2al_mcp._types import Addr, DatagramCore
from a2al_mcp.testing.clock import FakeClock

from .simnet_links import Link, Router, transit
from .simnet_nodes import DEFAULT_PORT, NetState, NodeStats, SimNode, fmt_addr, virtual_addr
from .simnet_stats import SimRecorder, SimStats, TraceEntry, Verdict

__all__ = [
    "DEFAULT_PORT",
    "Link",
    "NetState",
    "NodeStats",
    "Router",
    "SimNetwork",
    "SimNode",
    "SimStats",
    "SimulationError",
    "TraceEntry",
    "Verdict",
]

E = TypeVar("E")

_DEFAULT_LINK: Final = Link(latency_s=0.01)


class SimulationError(RuntimeError):
    """The simulation cannot go on: a core livelocks at one instant or returns a bad deadline."""


class _Delivery:
    __slots__ = ("data", "dst", "dup", "src")

    def __init__(self, src: SimNode[Any], dst: Addr, data: bytes, dup: bool) -> None:
        self.src = src
        self.dst = dst
        self.data = data
        self.dup = dup


class _TimerFire:
    __slots__ = ("gen", "node")

    def __init__(self, node: SimNode[Any], gen: int) -> None:
        self.node = node
        self.gen = gen


_Entry: TypeAlias = tuple[float, int, _Delivery | _TimerFire]


class SimNetwork:
    """A deterministic discrete-event network of :class:`DatagramCore` nodes.

    Args:
        seed: Seeds the one ``random.Random`` behind every random decision of the network and
            behind :meth:`make_rng`.
        default_link: The link used between any two nodes without a :meth:`link` override.
        clock: The virtual clock; the network moves it forward as it runs. Default: a new
            :class:`FakeClock` (monotonic 1000.0). Advancing it by hand acts as a stall: actions
            that fell due meanwhile run late, at the new time.
        trace_size: How many of the latest datagram verdicts the trace keeps.
        max_steps_per_instant: Raise :class:`SimulationError` if this many actions run without
            virtual time moving (a core that re-arms a timer in the past, or a zero-latency
            ping-pong loop).
    """

    def __init__(
        self,
        seed: int,
        *,
        default_link: Link = _DEFAULT_LINK,
        clock: FakeClock | None = None,
        trace_size: int = 10_000,
        max_steps_per_instant: int = 1_000_000,
    ) -> None:
        if trace_size < 1:
            raise ValueError("trace_size must be >= 1")
        if max_steps_per_instant < 1:
            raise ValueError("max_steps_per_instant must be >= 1")
        self._seed = seed
        self._random = random.Random(seed)
        self._clock = clock if clock is not None else FakeClock()
        self._default_link = default_link
        self._links: dict[tuple[Addr, Addr], Link] = {}
        self._router: Router | None = None
        self._nodes: dict[Addr, SimNode[Any]] = {}
        self._next_host = 0
        self._heap: list[_Entry] = []
        self._seq = 0
        self._rec = SimRecorder(trace_size)
        self._max_instant = max_steps_per_instant
        self._instant_steps = 0

    # ------------------------------------------------------------------ properties

    @property
    def seed(self) -> int:
        """The seed this network was built with (print it when a test fails)."""
        return self._seed

    @property
    def clock(self) -> FakeClock:
        """The virtual clock. Its ``wall_offset`` is what cores want as their wall offset."""
        return self._clock

    @property
    def now(self) -> float:
        """Current virtual monotonic time, in seconds."""
        return self._clock.monotonic()

    @property
    def nodes(self) -> tuple[SimNode[Any], ...]:
        """Nodes currently in the network (killed ones included), in insertion order."""
        return tuple(self._nodes.values())

    def next_time(self) -> float | None:
        """When the next pending action runs, or None if nothing is pending."""
        entry = self._peek()
        return None if entry is None else entry[0]

    @property
    def trace(self) -> tuple[TraceEntry, ...]:
        """The last ``trace_size`` datagram verdicts, oldest first."""
        return tuple(self._rec.trace)

    # ------------------------------------------------------------------ topology

    def make_rng(self) -> SeededRng:
        """A new :class:`SeededRng` for a core, seeded from this network's random stream."""
        return SeededRng(self._random.getrandbits(64))

    def add_node(
        self,
        core: DatagramCore[E],
        addr: Addr | None = None,
        *,
        on_event: Callable[[E], None] | None = None,
        max_events: int = 10_000,
    ) -> SimNode[E]:
        """Attach a core and flush it once (it may have queued datagrams or a timer).

        Args:
            core: The core to run.
            addr: Its virtual address; by default the next free ``10.0.x.y:4121``.
            on_event: Called with each event the core emits.
            max_events: Capacity of :attr:`SimNode.events`.

        Returns:
            The new node.

        Raises:
            ValueError: If ``addr`` is taken or malformed.
        """
        if addr is None:
            addr = self._auto_addr()
        else:
            if not (
                isinstance(addr, tuple)
                and len(addr) == 2
                and isinstance(addr[0], str)
                and isinstance(addr[1], int)
            ):
                raise ValueError(f"addr must be a (host, port) tuple, got {addr!r}")
            if addr in self._nodes:
                raise ValueError(f"address {fmt_addr(addr)} is already in use")
        node = SimNode(core, addr, max_events, on_event)
        self._nodes[addr] = node
        self._flush(node)
        return node

    def node_at(self, addr: Addr) -> SimNode[Any] | None:
        """The node holding ``addr``, or None."""
        return self._nodes.get(addr)

    def kill(self, node: SimNode[Any]) -> None:
        """Crash a node: nothing is delivered to or from it any more, in flight or later.

        Its timer is cancelled and its core is never called again, until :meth:`revive`.
        """
        node.net.alive = False
        node.net.timer_gen += 1
        node.net.timer_at = None

    def revive(self, node: SimNode[Any]) -> None:
        """Bring a killed node back with its core as it was, and flush it.

        Raises:
            ValueError: If the node was removed.
        """
        if self._nodes.get(node.addr) is not node:
            raise ValueError(f"{node!r} is not in this network")
        node.net.alive = True
        self._flush(node)

    def remove_node(self, node: SimNode[Any]) -> None:
        """Kill a node and free its address; datagrams to the address become unroutable."""
        self.kill(node)
        if self._nodes.get(node.addr) is node:
            del self._nodes[node.addr]

    def link(
        self,
        a: SimNode[Any] | Addr,
        b: SimNode[Any] | Addr,
        link: Link | None,
        *,
        both_ways: bool = True,
    ) -> None:
        """Override the link from ``a`` to ``b`` (and back, unless ``both_ways`` is False).

        ``None`` restores the default link. Addresses may name nodes not added yet.
        """
        pa = a.addr if isinstance(a, SimNode) else a
        pb = b.addr if isinstance(b, SimNode) else b
        pairs = [(pa, pb), (pb, pa)] if both_ways else [(pa, pb)]
        for pair in pairs:
            if link is None:
                self._links.pop(pair, None)
            else:
                self._links[pair] = link

    def link_between(self, a: SimNode[Any] | Addr, b: SimNode[Any] | Addr) -> Link:
        """The link datagrams from ``a`` to ``b`` take."""
        pa = a.addr if isinstance(a, SimNode) else a
        pb = b.addr if isinstance(b, SimNode) else b
        return self._links.get((pa, pb), self._default_link)

    def set_router(self, fn: Router | None) -> None:
        """Install (or with None remove) the router hook, consulted for every datagram sent
        to a live node, before link loss is drawn."""
        self._router = fn

    # ------------------------------------------------------------------ running

    def poke(self, *nodes: SimNode[Any]) -> None:
        """Flush nodes after the test called commands on their cores directly.

        Drains events, sends queued datagrams and re-reads the timer, all at :attr:`now`.
        Dead nodes are skipped.
        """
        for node in nodes:
            self._flush(node)

    def step(self) -> bool:
        """Run the next pending action (one delivery or one timer), moving time to it.

        Returns:
            False if nothing was pending.
        """
        entry = self._peek()
        if entry is None:
            return False
        self._run(heapq.heappop(self._heap))
        return True

    def run_for(self, seconds: float) -> None:
        """Run every action due within ``seconds``, then set the time to ``now + seconds``."""
        deadline = self._deadline(seconds)
        heap = self._heap
        while (entry := self._peek()) is not None and entry[0] <= deadline:
            self._run(heapq.heappop(heap))
        self._advance_to(deadline)

    def run_until(self, predicate: Callable[[], bool], limit_s: float) -> bool:
        """Run until ``predicate()`` holds, checking it first and after every action.

        Returns:
            True as soon as the predicate holds (time stays at that action). False if it still
            does not hold after ``limit_s`` virtual seconds; time is then ``now + limit_s``.
        """
        deadline = self._deadline(limit_s)
        if predicate():
            return True
        heap = self._heap
        while (entry := self._peek()) is not None and entry[0] <= deadline:
            self._run(heapq.heappop(heap))
            if predicate():
                return True
        self._advance_to(deadline)
        return predicate()

    def run_until_idle(self, limit_s: float) -> bool:
        """Run until nothing is pending: no datagram in flight, no timer armed.

        Returns:
            True if the network went idle (time stays at the last action); False if actions
            were still pending after ``limit_s`` virtual seconds (time is then ``now + limit_s``).
        """
        deadline = self._deadline(limit_s)
        heap = self._heap
        while (entry := self._peek()) is not None:
            if entry[0] > deadline:
                self._advance_to(deadline)
                return False
            self._run(heapq.heappop(heap))
        return True

    # ------------------------------------------------------------------ reporting

    def stats(self) -> SimStats:
        """A snapshot of all counters."""
        return self._rec.snapshot(self.now, self._nodes)

    def format_trace(self, last: int = 50) -> str:
        """The seed and the last ``last`` trace entries, one per line, for failure messages."""
        return self._rec.format_trace(self._seed, self.now, last)

    # ------------------------------------------------------------------ internals

    def _auto_addr(self) -> Addr:
        while True:
            addr = virtual_addr(self._next_host)
            self._next_host += 1
            if addr not in self._nodes:
                return addr

    def _deadline(self, seconds: float) -> float:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a time limit must be a finite number >= 0, got {seconds!r}")
        return self.now + seconds

    def _push(self, t: float, action: _Delivery | _TimerFire) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, action))

    def _peek(self) -> _Entry | None:
        """The next live entry, discarding stale timer entries on the way."""
        heap = self._heap
        while heap:
            entry = heap[0]
            action = entry[2]
            if isinstance(action, _TimerFire) and (
                action.gen != action.node.net.timer_gen or not action.node.net.alive
            ):
                heapq.heappop(heap)
                continue
            return entry
        return None

    def _advance_to(self, t: float) -> None:
        if t > self._clock.monotonic():
            self._clock.set(t)
            self._instant_steps = 0

    def _run(self, entry: _Entry) -> None:
        t, _, action = entry
        if t > self._clock.monotonic():
            self._clock.set(t)
            self._instant_steps = 0
        else:
            self._instant_steps += 1
            if self._instant_steps > self._max_instant:
                raise SimulationError(
                    f"{self._instant_steps} actions at t={self.now!r} without time moving "
                    f"(livelock?)\n{self.format_trace(20)}"
                )
        if isinstance(action, _Delivery):
            self._deliver(action)
        else:
            self._fire_timer(action.node)

    def _deliver(self, d: _Delivery) -> None:
        now = self._clock.monotonic()
        src = d.src
        dst = self._nodes.get(d.dst)
        if dst is None:
            self._drop(now, src, None, d.dst, len(d.data), "unroutable")
            return
        if not (src.net.alive and dst.net.alive):
            self._drop(now, src, dst, d.dst, len(d.data), "killed")
            return
        dst.net.received += 1
        self._rec.delivered += 1
        self._rec.record(now, src.addr, d.dst, len(d.data), "duplicate" if d.dup else "delivered")
        dst.core.receive_datagram(d.data, src.addr, now)
        self._flush(dst)

    def _fire_timer(self, node: SimNode[Any]) -> None:
        node.net.timer_at = None
        node.net.timers_fired += 1
        self._rec.timers_fired += 1
        node.core.handle_timer(self._clock.monotonic())
        self._flush(node)

    def _flush(self, node: SimNode[Any]) -> None:
        if not node.net.alive:
            return
        core = node.core
        now = self._clock.monotonic()
        self._drain(node)
        while node.net.alive and (datagrams := core.datagrams_to_send(now)):
            for data, dst in datagrams:
                self._send(node, data, dst)
            if not self._drain(node):
                break
        if node.net.alive:
            self._sync_timer(node)

    def _drain(self, node: SimNode[Any]) -> bool:
        core = node.core
        got = False
        while (event := core.next_event()) is not None:
            got = True
            node.events.append(event)
            node.net.events += 1
            self._rec.events += 1
            if node.on_event is not None:
                node.on_event(event)
        return got

    def _sync_timer(self, node: SimNode[Any]) -> None:
        deadline = node.core.get_timer()
        if deadline == node.net.timer_at:
            return
        if deadline is not None and math.isnan(deadline):
            raise SimulationError(f"{node!r} returned a NaN timer deadline")
        node.net.timer_gen += 1
        node.net.timer_at = deadline
        if deadline is not None and deadline != math.inf:
            self._push(max(deadline, self._clock.monotonic()), _TimerFire(node, node.net.timer_gen))

    def _send(self, src: SimNode[Any], data: bytes, dst_addr: Addr) -> None:
        now = self._clock.monotonic()
        src.net.sent += 1
        self._rec.sent += 1
        size = len(data)
        dst = self._nodes.get(dst_addr)
        if dst is None:
            self._drop(now, src, None, dst_addr, size, "unroutable")
            return
        if not (src.net.alive and dst.net.alive):
            self._drop(now, src, dst, dst_addr, size, "killed")
            return
        link = self._links.get((src.addr, dst_addr), self._default_link)
        fate = transit(link, self._router, src.addr, dst_addr, data, self._random)
        if isinstance(fate, str):
            self._drop(now, src, dst, dst_addr, size, fate)
            return
        self._push(now + fate[0], _Delivery(src, dst_addr, data, False))
        if len(fate) > 1:
            self._rec.duplicated += 1
            self._push(now + fate[1], _Delivery(src, dst_addr, data, True))

    def _drop(
        self,
        now: float,
        src: SimNode[Any],
        dst: SimNode[Any] | None,
        dst_addr: Addr,
        size: int,
        verdict: Verdict,
    ) -> None:
        self._rec.drops[verdict] += 1
        src.net.dropped_out += 1
        if dst is not None:
            dst.net.dropped_in += 1
        self._rec.record(now, src.addr, dst_addr, size, verdict)
