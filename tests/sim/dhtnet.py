"""Helpers to run many real DhtCores on a SimNetwork."""

from __future__ import annotations

import functools
from typing import Any

from a2al_mcp._random import SeededRng
from a2al_mcp.dht import events as ev
from a2al_mcp.dht.core import DhtCore
from a2al_mcp.dht.lookup import LookupKind
from a2al_mcp.identity import Aid, Identity, NodeId
from a2al_mcp.protocol.payloads import EndpointPayload
from a2al_mcp.protocol.records import SignedRecord
from a2al_mcp.testing.simnet import Link, SimNetwork, SimNode


class DhtSim:
    """A SimNetwork of DhtCores with blocking helpers that run the sim until an op ends."""

    def __init__(self, n: int, *, seed: int = 1, link: Link | None = None) -> None:
        self.net = SimNetwork(seed, default_link=link or Link(latency_s=0.01, jitter_s=0.005))
        rng = SeededRng(seed)
        self.nodes: list[SimNode[Any]] = []
        self._finished: dict[tuple[int, int], ev.DhtEvent] = {}
        self._cores: list[DhtCore] = []
        for _ in range(n):
            ident = Identity.generate(rng)
            core = DhtCore(ident, rng=self.net.make_rng(), wall_offset=self.net.clock.wall_offset)
            self._cores.append(core)
            on_event = functools.partial(self._on_event, len(self.nodes))
            self.nodes.append(self.net.add_node(core, on_event=on_event))

    def core(self, i: int) -> DhtCore:
        return self._cores[i]

    def wait(self, i: int, op_id: int, limit_s: float = 60.0) -> ev.DhtEvent:
        node = self.nodes[i]
        self.net.poke(node)
        key = (i, op_id)
        if key not in self._finished:
            ok = self.net.run_until(lambda: key in self._finished, limit_s)
            assert ok, f"op {op_id} on node {i} did not finish"
        return self._finished.pop(key)

    def _on_event(self, i: int, e: ev.DhtEvent) -> None:
        op_id = getattr(e, "op_id", None)
        if op_id is not None:
            self._finished[(i, op_id)] = e

    def bootstrap_all(
        self, seed_index: int = 0, *, strict: bool = True, settle_s: float = 30.0
    ) -> None:
        seed_addr = self.nodes[seed_index].addr
        ops = []
        for i in range(len(self.nodes)):
            if i != seed_index:
                ops.append((i, self.core(i).bootstrap([seed_addr], self.net.now)))
                self.net.poke(self.nodes[i])
        for i, op in ops:
            e = self.wait(i, op)
            assert isinstance(e, ev.BootstrapFinished) and (e.ok or not strict)
        self.net.run_for(settle_s)  # joining ends at the first PONG; self-lookups go on

    def endpoint_record(self, i: int, seq: int = 1) -> SignedRecord:
        core = self.core(i)
        host, port = self.nodes[i].addr
        payload = EndpointPayload(endpoints=(f"quic://{host}:{port}",)).to_bytes()
        return SignedRecord.sign(core.identity, 1, payload, seq=seq,
                                 timestamp=int(self.net.clock.wall()))  # fmt: skip

    def publish(self, i: int, record: SignedRecord, key: NodeId) -> ev.PublishFinished:
        e = self.wait(i, self.core(i).publish(record, key, self.net.now))
        assert isinstance(e, ev.PublishFinished)
        return e

    def resolve(self, i: int, aid: Aid) -> ev.LookupFinished:
        op = self.core(i).lookup(aid.node_id, LookupKind.FIRST, self.net.now, rec_type=1)
        e = self.wait(i, op)
        assert isinstance(e, ev.LookupFinished)
        return e

    def resolve_many(
        self, pairs: list[tuple[int, Aid]], batch: int = 64
    ) -> list[ev.LookupFinished]:
        """Resolve many ``(node, aid)`` pairs, ``batch`` lookups in flight at a time (in
        virtual time they overlap, as concurrent users of one network would)."""
        out: list[ev.LookupFinished] = []
        for start in range(0, len(pairs), batch):
            ops = []
            for i, aid in pairs[start : start + batch]:
                op = self.core(i).lookup(aid.node_id, LookupKind.FIRST, self.net.now, rec_type=1)
                self.net.poke(self.nodes[i])
                ops.append((i, op))
            for i, op in ops:
                e = self.wait(i, op)
                assert isinstance(e, ev.LookupFinished)
                out.append(e)
        return out

    def aggregate(self, i: int, key: NodeId, rec_type: int) -> ev.LookupFinished:
        op = self.core(i).lookup(key, LookupKind.ALL, self.net.now, rec_type=rec_type)
        e = self.wait(i, op)
        assert isinstance(e, ev.LookupFinished)
        return e
