"""Helpers to run many real DhtCores on a SimNetwork."""

from __future__ import annotations

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
        for _ in range(n):
            ident = Identity.generate(rng)
            core = DhtCore(ident, rng=self.net.make_rng(), wall_offset=self.net.clock.wall_offset)
            self.nodes.append(self.net.add_node(core))

    def core(self, i: int) -> DhtCore:
        c: DhtCore = self.nodes[i].core
        return c

    def wait(self, i: int, op_id: int, limit_s: float = 60.0) -> ev.DhtEvent:
        node = self.nodes[i]
        self.net.poke(node)

        def done() -> bool:
            return any(getattr(e, "op_id", None) == op_id for e in node.events)

        assert self.net.run_until(done, limit_s), f"op {op_id} on node {i} did not finish"
        for e in node.events:
            if getattr(e, "op_id", None) == op_id:
                node.events.remove(e)
                return e  # type: ignore[no-any-return]
        raise AssertionError("unreachable")

    def bootstrap_all(
        self, seed_index: int = 0, *, strict: bool = True, settle_s: float = 5.0
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

    def aggregate(self, i: int, key: NodeId, rec_type: int) -> ev.LookupFinished:
        op = self.core(i).lookup(key, LookupKind.ALL, self.net.now, rec_type=rec_type)
        e = self.wait(i, op)
        assert isinstance(e, ev.LookupFinished)
        return e
