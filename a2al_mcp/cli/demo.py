"""``a2al-mcp demo``: a small A2AL network on loopback, in one process, walked step by step.

Nothing leaves the machine: four nodes bind 127.0.0.1 and join through the first one. The walk:
publish → discover → resolve → fetch over a verified QUIC connection → mailbox, to a live
agent and to one that is offline and comes back.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the node is imported when the demo runs, not when the CLI starts
    from ..node.http import HttpRequest, HttpResponse

__all__ = ["add_demo_parser"]

WORDS = {"hello": "bonjour", "world": "monde", "agent": "agent", "network": "réseau"}


def add_demo_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="run a small network on loopback and walk through it")
    p.add_argument("--nodes", type=int, default=4, help="how many nodes (at least 3)")
    p.set_defaults(func=_cmd_demo)


class _Steps:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.n = 0

    def step(self, text: str) -> None:
        self.n += 1
        print(f"\n[{self.n}] {text}", flush=True)

    def ok(self, text: str) -> None:
        print(f"    ✓ {text}  ({(time.perf_counter() - self.t0) * 1000:.0f} ms)", flush=True)


async def translate(req: HttpRequest) -> HttpResponse:
    from ..node.http import HttpResponse

    words = req.body.decode().split()
    out = " ".join(WORDS.get(w.lower(), w) for w in words)
    return HttpResponse(200, (("content-type", "text/plain"),), out.encode())


async def _demo(n: int) -> None:
    import anyio

    from .._random import SystemRng
    from ..config import NodeConfig
    from ..identity.local import Identity
    from ..node.node import Node

    s = _Steps()
    s.step(f"Starting {n} nodes on 127.0.0.1 (nothing leaves this machine)")
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
        seed = "{}:{}".format(*first.local_addr)
        nodes = [first]
        for _ in range(n - 1):
            cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,))
            nodes.append(await stack.enter_async_context(Node(cfg)))
        translator, alice = nodes[1], nodes[2]
        for i, node in enumerate(nodes):
            await node.publish()
            role = {1: " (translator)", 2: " (alice)"}.get(i, "")
            print(f"    node {i}{role}: {node.aid}  udp {node.local_addr[0]}:{node.local_addr[1]}")
        s.ok(f"{n} nodes joined; every node published its signed endpoint record")

        s.step("The translator registers the capability 'lang.translate' and serves HTTP")
        await translator.register_service("lang.translate", name="demo translator",
                                          brief="English to French, word by word",
                                          protocols=["http"], tags=["en", "fr"])  # fmt: skip
        translator.serve(http=translate)
        s.ok("topic record stored on the DHT replicas closest to the topic key")

        s.step("Alice discovers agents that offer 'lang.translate'")
        found = await alice.discover("lang.translate", tags=["fr"])
        for e in found:
            print(f"    found {e.aid}  {e.name!r}: {e.brief}  protocols={list(e.protocols)}")
        s.ok(f"{len(found)} agent(s) found by capability")

        s.step("Alice resolves the translator's AID to live endpoints")
        r = await alice.resolve(found[0].aid)
        s.ok(f"endpoints {list(r.endpoints)} (signed record, seq {r.seq})")

        s.step("Alice calls it over a mutually authenticated QUIC connection")
        resp = await alice.fetch(found[0].aid, "POST", "/translate", body=b"hello agent network")
        print(f"    HTTP {resp.status}: {resp.text!r}")
        s.ok("both ends verified each other's AID in the TLS handshake")

        s.step("Alice leaves the translator a mailbox note (it is online)")
        sent = await alice.send_mailbox(translator.aid, "merci pour la traduction !")
        await translator.check_mailbox()
        for note in await translator.read_mailbox():
            print(f"    translator got from {note.sender}: {note.text!r}")
        s.ok(f"delivered: {sent.delivered}; message id {sent.message_id[:16]}…")

        s.step("A note for an agent that is offline, picked up when it comes back")
        with tempfile.TemporaryDirectory() as tmp:
            bob = Identity.generate(SystemRng())
            bcfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,), data_dir=Path(tmp))
            async with Node(bcfg, bob) as b:
                await b.publish()
            print(f"    bob {bob.aid} published, then went offline")
            sent = await alice.send_mailbox(bob.aid, "call me when you are back")
            print(f"    alice's note: {sent.delivered} on {sent.replicas} replica(s)")
            async with Node(bcfg, bob) as b:
                for _ in range(200):
                    notes = await b.read_mailbox()
                    if notes:
                        break
                    await anyio.sleep(0.05)
                for note in notes:
                    print(f"    bob, back online, reads: {note.text!r} from {note.sender}")
        s.ok("offline delivery through the DHT")
    print("\nDone. Run `a2al-mcp serve` to give an assistant these verbs as MCP tools.")


def _cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    if args.nodes < 3:
        print("error: USAGE: the demo needs at least 3 nodes", file=sys.stderr)
        raise SystemExit(2)
    import anyio

    anyio.run(_demo, args.nodes)
    return {}
