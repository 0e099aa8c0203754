"""Many real :class:`~a2al_mcp.dht.core.DhtCore` nodes on one :class:`SimNetwork`.

:class:`DhtSim` builds ``n`` nodes with seeded identities and gives blocking helpers that run
the virtual network until an operation ends: join everyone through one seed, publish, resolve,
aggregate, and the batched forms of publish and resolve, whose operations overlap in virtual
time as concurrent users of one network would. Everything is deterministic for a given seed.

Example::

    sim = DhtSim(50, seed=3)
    sim.bootstrap_all()
    sim.publish_many([(i, sim.endpoint_record(i), sim.core(i).aid.node_id) for i in range(50)])
    found = sim.resolve(7, sim.core(21).aid)
    assert found.records[0].address == sim.core(21).aid
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from .._random import SeededRng
from ..dht import events as ev
from ..dht.core import DhtCore
from ..dht.lookup import LookupKind
from ..identity import Aid, Identity, NodeId
from ..protocol.payloads import EndpointPayload
from ..protocol.records import SignedRecord
from .simnet import Link, SimNetwork, SimNode, SimulationError

__all__ = ["DhtSim"]

_E = TypeVar("_E")


class DhtSim:
    """A SimNetwork of DhtCores with blocking helpers that run the sim until an op ends."""

    def __init__(self, n: int, *, seed: int = 1, link: Link | None = None) -> None:
        self.net = SimNetwork(seed, default_link=link or Link(latency_s=0.01, jitter_s=0.005))
        rng = SeededRng(seed)
        self.nodes: list[SimNode[Any]] = []
        self._cores: list[DhtCore] = []
        self._finished: dict[tuple[int, int], ev.DhtEvent] = {}
        for _ in range(n):
            self.add_node(Identity.generate(rng))

    def add_node(self, identity: Identity) -> int:
        """Attach one more node; returns its index."""
        index = len(self.nodes)
        core = DhtCore(identity, rng=self.net.make_rng(), wall_offset=self.net.clock.wall_offset)
        self._cores.append(core)
        on_event = functools.partial(self._on_event, index)
        self.nodes.append(self.net.add_node(core, on_event=on_event, max_events=100))
        return index

    def core(self, i: int) -> DhtCore:
        """The core of node ``i``."""
        return self._cores[i]

    def wait(self, i: int, op_id: int, limit_s: float = 60.0) -> ev.DhtEvent:
        """Run the network until operation ``op_id`` of node ``i`` ends; its final event."""
        self.net.poke(self.nodes[i])
        key = (i, op_id)
        if key not in self._finished and not self.net.run_until(
            lambda: key in self._finished, limit_s
        ):
            raise SimulationError(
                f"op {op_id} on node {i} did not finish in {limit_s} virtual seconds\n"
                + self.net.format_trace(20)
            )
        return self._finished.pop(key)

    def _wait_as(self, i: int, op_id: int, kind: type[_E]) -> _E:
        e = self.wait(i, op_id)
        if not isinstance(e, kind):
            raise SimulationError(f"op {op_id} on node {i} ended with {e!r}")
        return e

    def _on_event(self, i: int, e: ev.DhtEvent) -> None:
        op_id = getattr(e, "op_id", None)
        if op_id is not None:
            self._finished[(i, op_id)] = e

    def bootstrap_all(
        self, seed_index: int = 0, *, strict: bool = True, settle_s: float = 30.0
    ) -> None:
        """Every node joins through node ``seed_index``, all at once; then the network runs
        ``settle_s`` virtual seconds so that routing maintenance can fill the tables (two
        rounds of 15 s make a young network converge)."""
        seed_addr = self.nodes[seed_index].addr
        ops = []
        for i in range(len(self.nodes)):
            if i != seed_index:
                ops.append((i, self.core(i).bootstrap([seed_addr], self.net.now)))
                self.net.poke(self.nodes[i])
        for i, op in ops:
            e = self.wait(i, op)
            if strict and not (isinstance(e, ev.BootstrapFinished) and e.ok):
                raise SimulationError(f"node {i} could not join: {e}")
        self.net.run_for(settle_s)

    def endpoint_record(self, i: int, seq: int = 1) -> SignedRecord:
        """Node ``i``'s endpoint record (rec_type 1) naming its virtual address."""
        core = self.core(i)
        host, port = self.nodes[i].addr
        payload = EndpointPayload(endpoints=(f"quic://{host}:{port}",)).to_bytes()
        return SignedRecord.sign(core.identity, 1, payload, seq=seq,
                                 timestamp=int(self.net.clock.wall()))  # fmt: skip

    def publish(self, i: int, record: SignedRecord, key: NodeId) -> ev.PublishFinished:
        """Node ``i`` publishes ``record`` at ``key``."""
        return self._wait_as(i, self.core(i).publish(record, key, self.net.now),
                             ev.PublishFinished)  # fmt: skip

    def publish_many(
        self, items: list[tuple[int, SignedRecord, NodeId]], batch: int = 64
    ) -> list[ev.PublishFinished]:
        """Publish many ``(node, record, key)`` items, ``batch`` at a time."""
        out: list[ev.PublishFinished] = []
        for start in range(0, len(items), batch):
            ops = []
            for i, record, key in items[start : start + batch]:
                ops.append((i, self.core(i).publish(record, key, self.net.now)))
                self.net.poke(self.nodes[i])
            out.extend(self._wait_as(i, op, ev.PublishFinished) for i, op in ops)
        return out

    def resolve(self, i: int, aid: Aid) -> ev.LookupFinished:
        """Node ``i`` resolves ``aid``'s endpoint record."""
        op = self.core(i).lookup(aid.node_id, LookupKind.FIRST, self.net.now, rec_type=1)
        return self._wait_as(i, op, ev.LookupFinished)

    def resolve_many(
        self, pairs: list[tuple[int, Aid]], batch: int = 64
    ) -> list[ev.LookupFinished]:
        """Resolve many ``(node, aid)`` pairs, ``batch`` lookups in flight at a time; results
        in the order of ``pairs``."""
        out: list[ev.LookupFinished] = []
        for start in range(0, len(pairs), batch):
            ops = []
            for i, aid in pairs[start : start + batch]:
                op = self.core(i).lookup(aid.node_id, LookupKind.FIRST, self.net.now, rec_type=1)
                self.net.poke(self.nodes[i])
                ops.append((i, op))
            out.extend(self._wait_as(i, op, ev.LookupFinished) for i, op in ops)
        return out

    def aggregate(self, i: int, key: NodeId, rec_type: int) -> ev.LookupFinished:
        """Node ``i`` collects every record of ``rec_type`` at ``key`` (discovery)."""
        op = self.core(i).lookup(key, LookupKind.ALL, self.net.now, rec_type=rec_type)
        return self._wait_as(i, op, ev.LookupFinished)
