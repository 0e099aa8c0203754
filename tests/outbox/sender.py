"""A sender node in its own process, for the crash test: ``queue <seed> <dir> <bootstrap>
<target>`` queues one message for ``target`` and prints ``queued <id>``, then ``tried`` once
the outbox has tried (and failed) to deliver it, then waits; ``resume <seed> <dir>
<bootstrap> <id>`` prints ``delivered`` once that delivery is delivered, and exits."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from a2al_mcp import Aid, Identity, NodeConfig, SigningKey, agentcall
from a2al_mcp.node import Node


async def main(mode: str, seed: str, data_dir: str, bootstrap: str, arg: str) -> None:
    ident = Identity.from_key(SigningKey(bytes.fromhex(seed)))
    cfg = NodeConfig(listen_addr="127.0.0.1:0", data_dir=Path(data_dir), bootstrap=(bootstrap,))
    async with Node(cfg, ident) as node:
        box = node.outbox()
        if mode == "queue":
            queued = agentcall.queue_message(node, Aid.from_str(arg), "hello from the outbox")
            print("queued", queued.id, flush=True)
            while box.statistics().retries < 1:  # noqa: ASYNC110  (counters tell nobody)
                await anyio.sleep(0.05)
            print("tried", flush=True)
            await anyio.sleep_forever()
        ended = anyio.Event()
        box.listen(lambda d: ended.set() if d.id == arg else None)
        if box.get(arg).state == "queued":
            await ended.wait()
        print(box.get(arg).state, flush=True)


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:6])
