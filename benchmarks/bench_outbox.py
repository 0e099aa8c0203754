"""Delivery latency of a queued A2A message after its target comes back (issue 19; target
≤ 2 s). Real nodes on loopback, a real a2a-sdk agent, one run.

    unshare -n sh -c 'ip link set lo up && python benchmarks/bench_outbox.py'

Each round: a sender queues a ``SendMessage`` for an agent that is offline
(``agentcall.queue_message``), lets the outbox fail at least twice (so the next back-off try
is seconds away and only the endpoint-record watch can be quick), then the agent starts:
its node opens, serves the agent, and publishes its endpoint record. Measured from the moment
that publishing begins (the agent is back) to (a) its executor running the message and (b)
the sender's outbox marking it delivered. Two cases:

- ``never-seen``: the agent had never been online (no record anywhere);
- ``came-back``: it was online, went away (its old record still on the DHT, pointing at a
  dead port), and starts again on a new port.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Any

import anyio
from _common import pct
from a2a.helpers.proto_helpers import new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import AgentCapabilities, AgentCard, AgentSkill
from a2al_mcp.adapters.a2a import serve_a2a

from a2al_mcp import Identity, Node, NodeConfig, SystemRng, agentcall


class Stamp(AgentExecutor):
    def __init__(self) -> None:
        self.ran_at: float | None = None

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        if self.ran_at is None:
            self.ran_at = time.perf_counter()
        await event_queue.enqueue_event(new_text_message("got it"))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


CARD = AgentCard(name="stamp", description="stamps", version="1.0",
                 capabilities=AgentCapabilities(streaming=False),
                 default_input_modes=["text/plain"], default_output_modes=["text/plain"],
                 skills=[AgentSkill(id="bench.stamp", name="stamp", description="stamp",
                                    tags=["t"])])  # fmt: skip


async def start_agent(boot: str, ident: Identity) -> tuple[Node, Stamp, float]:
    """The agent's node open and serving, then its endpoint record published: returns when
    the publishing began (the moment it is back)."""
    node = Node(NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(boot,)), ident)
    await node.__aenter__()
    stamp = Stamp()
    handler = DefaultRequestHandler(stamp, InMemoryTaskStore(), CARD)
    await serve_a2a(node, handler, CARD, publish=False)
    back = time.perf_counter()
    await node.publish()
    return node, stamp, back


async def one(boot: str, sender: Node, case: str) -> dict[str, float]:
    ident = Identity.generate(SystemRng())
    if case == "came-back":
        old, _, _ = await start_agent(boot, ident)
        await old.aclose()  # its record stays, naming a port nobody answers on
    box = sender.outbox()
    before = box.statistics().retries
    queued = agentcall.queue_message(sender, ident.aid, "hello")
    while box.statistics().retries < before + 2:  # noqa: ASYNC110 (counters tell nobody)
        await anyio.sleep(0.05)
    delivered = anyio.Event()
    done_at: list[float] = []

    def ended(d: Any) -> None:
        if d.id == queued.id:
            done_at.append(time.perf_counter())
            delivered.set()

    stop = box.listen(ended)
    node, stamp, back = await start_agent(boot, ident)
    try:
        with anyio.fail_after(60):
            await delivered.wait()
    finally:
        stop()
        await node.aclose()
    assert box.get(queued.id).state == "delivered" and stamp.ran_at is not None
    return {"handler_s": stamp.ran_at - back, "delivered_s": done_at[0] - back}


async def main(n: int) -> None:
    async with Node(NodeConfig(listen_addr="127.0.0.1:0")) as seed:
        boot = "{}:{}".format(*seed.local_addr)
        async with contextlib.AsyncExitStack() as helpers:
            for _ in range(3):  # a few more DHT peers, so records live on more than one node
                cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(boot,))
                await helpers.enter_async_context(Node(cfg))
            async with Node(NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(boot,))) as sender:
                for case in ("never-seen", "came-back"):
                    rows = [await one(boot, sender, case) for _ in range(n)]
                    for what in ("handler_s", "delivered_s"):
                        xs = [r[what] for r in rows]
                        print(f"{case:11s} {what:12s} p50 {pct(xs, 50):5.2f} s  p95 "
                              f"{pct(xs, 95):5.2f} s  max {max(xs):5.2f} s  (n={n})")  # fmt: skip
                st = sender.outbox().statistics()
                print(f"outbox: attempts {st.attempts}, retries {st.retries}, watch wakeups "
                      f"{st.watch_wakeups}, errors {st.errors}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=10, help="rounds per case")
    anyio.run(main, parser.parse_args().n)
