"""Mailbox: send → arrival latency with the recipient online, ours vs a2ald 0.3.5, and the
offline → online pickup time. Same sealed loopback topology, one run.

    unshare -n sh -c 'ip link set lo up && python benchmarks/bench_mailbox_vs_a2ald.py'

Topology: 3 a2ald peers (peer 0 the bootstrap) and our nodes joined through peer 0.
- ours: node A ``send_mailbox`` to node B (published, online) until B's ``on_mail`` callback
  fires (one process);
- a2ald: agent on peer 1 ``POST /agents/{aid}/mailbox/send`` to an agent on peer 2 until the
  ``mailbox.received`` server-sent event of ``GET /agents/{aid}/events`` arrives (the REST
  call and the SSE read are part of a2ald's figure);
- pickup: B publishes, stops; A sends; B starts again (same identity and data directory):
  time from ``Node.__aenter__`` to the note in the inbox.
"""

from __future__ import annotations

import base64
import json
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import anyio
from _common import pct, thread

from a2al_mcp import Identity, NodeConfig, SystemRng
from a2al_mcp.node import Node
from a2al_mcp.testing.a2ald import A2aldNetwork, A2aldPeer, check_sealed

REPS = 20


class Sse(threading.Thread):
    """Arrival times of ``mailbox.received`` events of one a2ald agent."""

    def __init__(self, peer: A2aldPeer, aid: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{peer.api_url}/agents/{aid}/events?types=mailbox.received"
        self.times: list[float] = []
        self.ready = threading.Event()

    def run(self) -> None:
        with urllib.request.urlopen(self.url, timeout=3600) as r:
            self.ready.set()
            for raw in r:
                if raw.startswith(b"data:"):
                    self.times.append(time.perf_counter())


def _agent(peer: A2aldPeer) -> str:
    gen = peer.identity_generate()
    peer.register_agent(gen["operational_private_key_hex"], gen["delegation_proof_hex"])
    peer.publish_agent(gen["aid"])
    return str(gen["aid"])


async def main() -> None:
    check_sealed()
    print(f"# {time.strftime('%Y-%m-%d')}")
    with A2aldNetwork(3) as net:
        p0, p1, p2 = net.peers
        seed = p0.listen_addr
        cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,))
        async with Node(cfg) as a, Node(cfg) as b:
            await a.publish()
            await b.publish()
            arrivals: list[float] = []
            b.on_mail(lambda note: arrivals.append(time.perf_counter()))
            ours = []
            for i in range(REPS):
                n = len(arrivals)
                t = time.perf_counter()
                await a.send_mailbox(b.aid, f"bench {i}")  # returns once the STORE is done too
                for _ in range(10_000):  # the callback records the arrival time itself
                    if len(arrivals) > n:
                        break
                    await anyio.sleep(0.001)
                ours.append((arrivals[n] - t) * 1000)
        sender, recipient = await thread(_agent, p1), await thread(_agent, p2)
        for _ in range(50):
            try:
                await thread(p1.resolve, recipient)
                break
            except Exception:
                await anyio.sleep(0.2)
        sse = Sse(p2, recipient)
        sse.start()
        sse.ready.wait(5)
        await anyio.sleep(0.3)
        theirs = []
        for i in range(REPS):
            n = len(sse.times)
            body = base64.b64encode(f"bench {i}".encode()).decode()
            t = time.perf_counter()
            await thread(p1.post, f"/agents/{sender}/mailbox/send",
                         {"recipient": recipient, "msg_type": 3, "body_base64": body})  # fmt: skip
            for _ in range(10_000):  # the reader thread records the arrival time itself
                if len(sse.times) > n:
                    break
                await anyio.sleep(0.001)
            if len(sse.times) > n:
                theirs.append((sse.times[n] - t) * 1000)
        print(f"a2ald events seen: {len(theirs)}/{REPS}")
        if not theirs:
            return
        print("| send → arrival ms | ours p50 | ours p95 | a2ald p50 | a2ald p95 | ratio |")
        o50, o95, t50, t95 = pct(ours, 50), pct(ours, 95), pct(theirs, 50), pct(theirs, 95)
        print(f"| | {o50:.2f} | {o95:.2f} | {t50:.2f} | {t95:.2f} | {o50 / t50:.2f}× |")

        # offline → online pickup
        pickups = []
        with tempfile.TemporaryDirectory() as tmp:
            async with Node(cfg) as a:
                await a.publish()
                for i in range(5):
                    ident = Identity.generate(SystemRng())
                    bcfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,),
                                      data_dir=Path(tmp) / str(i))  # fmt: skip
                    async with Node(bcfg, ident) as b:
                        await b.publish()
                    await a.send_mailbox(ident.aid, "while you were out")
                    t = time.perf_counter()
                    async with Node(bcfg, ident) as b:
                        arrived = anyio.Event()
                        b.on_mail(lambda note, ev=arrived: ev.set())
                        if not await b.read_mailbox(peek=True):
                            with anyio.fail_after(30):
                                await arrived.wait()
                        pickups.append((time.perf_counter() - t) * 1000)
        print(json.dumps({"pickup_ms": [round(x, 1) for x in pickups],
                          "pickup_p50_ms": round(pct(pickups, 50), 1)}))  # fmt: skip


if __name__ == "__main__":
    anyio.run(main)
