"""DHT operations: our node vs a2ald 0.3.5, same sealed loopback topology, one run.

Run as root inside a sealed namespace (the launcher refuses otherwise):

    unshare -n sh -c 'ip link set lo up && python benchmarks/bench_dht_vs_a2ald.py'

Topology: 4 a2ald peers (peer 0 the bootstrap of the others) and our node joined through
peer 0. Measured:
- resolve: our ``Node.resolve`` vs a2ald ``POST /resolve/{aid}`` (REST, so a2ald's numbers
  include a local HTTP round trip, ~0.3 ms) for the same targets;
- discover: our ``Node.discover`` vs ``POST /discover`` for a topic with 3 registrants;
- start to first successful resolve with a reachable bootstrap (a fresh process each), and
  for ours where it went: imports, ``Node`` open (bind, join), the resolve itself;
- idle RSS of one node process.

Our fresh processes read compiled bytecode from a private cache filled by one untimed start
(``PYTHONPYCACHEPREFIX``), as an installed package would: without it, a checkout or worktree
with no current ``__pycache__`` (or ``PYTHONDONTWRITEBYTECODE`` set) compiles every module of
ours on every start, ~200 ms on the 2-vCPU VM, which is not start-up cost of the node.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from _common import pct, thread

from a2al_mcp import Aid, NodeConfig
from a2al_mcp.node import Node
from a2al_mcp.testing.a2ald import A2aldNetwork, A2aldPeer, check_sealed

REPS = 40


def fmt(name: str, ours: list[float], theirs: list[float]) -> str:
    o50, o95, t50, t95 = pct(ours, 50), pct(ours, 95), pct(theirs, 50), pct(theirs, 95)
    return (f"| {name} | {o50:.2f} | {o95:.2f} | {t50:.2f} | {t95:.2f} | "
            f"{o50 / t50:.2f}× |")  # fmt: skip


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    t = time.perf_counter()
    await fn()
    return (time.perf_counter() - t) * 1000


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


OUR_CHILD = r"""
import time
t_start = time.perf_counter()
import sys, anyio
from a2al_mcp import Aid, NodeConfig
from a2al_mcp.node import Node
t_imported = time.perf_counter()
async def main():
    t0 = time.perf_counter()
    async with Node(NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(sys.argv[1],))) as n:
        t1 = time.perf_counter()
        await n.resolve(Aid.from_str(sys.argv[2]))
        t2 = time.perf_counter()
        ms = [(t_imported - t_start) * 1000, (t1 - t0) * 1000, (t2 - t1) * 1000]
        print(" ".join(f"{x:.1f}" for x in ms), flush=True)
        await anyio.sleep(3)
        print("idle", flush=True)
        await anyio.sleep(30)
anyio.run(main)
"""


def child_env(pycache: Path) -> dict[str, str]:
    """Our children's environment: bytecode read from (and written to) ``pycache``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


async def our_cold_start(
    seed: str, target: str, env: dict[str, str]
) -> tuple[float, int, list[float]]:
    """Wall time from spawning a fresh process to its first resolve, its RSS after 3 s
    idle, and the child's own split: imports, Node open, resolve (ms)."""
    t = time.perf_counter()
    argv = [sys.executable, "-c", OUR_CHILD, seed, target]
    proc = await anyio.to_thread.run_sync(
        lambda: subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    )
    assert proc.stdout is not None
    first = await thread(proc.stdout.readline)
    wall = (time.perf_counter() - t) * 1000
    await thread(proc.stdout.readline)  # idle
    rss = rss_kib(proc.pid)
    proc.terminate()
    proc.wait()
    return wall, rss if first else 0, [float(x) for x in first.split()]


async def a2ald_cold_start(seed: str, target: str, base: Path, i: int) -> tuple[float, int]:
    t = time.perf_counter()
    peer = A2aldPeer(base / f"cold{i}", bootstrap=[seed])
    peer.start()
    try:
        while True:
            try:
                peer.resolve(target)
                break
            except Exception:
                await anyio.sleep(0.01)
        wall = (time.perf_counter() - t) * 1000
        await anyio.sleep(3)
        return wall, rss_kib(peer.pid or 0)
    finally:
        peer.stop()


async def main() -> None:
    check_sealed()
    base = Path(tempfile.mkdtemp(prefix="bench-dht-"))
    with A2aldNetwork(4, base_dir=base / "net") as net:
        p0, p1, p2, p3 = net.peers
        for p in (p1, p3):
            gen = p.identity_generate()
            p.register_agent(gen["operational_private_key_hex"], gen["delegation_proof_hex"])
            p.register_services(gen["aid"], ["bench.svc"], name="x", ttl=600)
            p.publish_agent(gen["aid"])
        async with Node(NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(p0.listen_addr,))) as node:
            await node.register_service("bench.svc", name="ours")
            await node.publish()
            targets = [p1.node_aid, p3.node_aid]
            await anyio.sleep(2)
            ours_r, theirs_r, ours_d, theirs_d = [], [], [], []
            for i in range(REPS):
                aid = targets[i % 2]
                ours_r.append(await timed(lambda a=aid: node.resolve(Aid.from_str(a))))
                theirs_r.append(await timed(lambda a=aid: thread(p2.resolve, a)))
                ours_d.append(await timed(lambda: node.discover("bench.svc")))
                theirs_d.append(await timed(lambda: thread(p2.discover, ["bench.svc"])))
            assert len(await node.discover("bench.svc")) == 3
        env = child_env(base / "pycache")
        await our_cold_start(p0.listen_addr, p1.node_aid, env)  # untimed: fills the cache
        cold_ours = [await our_cold_start(p0.listen_addr, p1.node_aid, env) for _ in range(5)]
        cold_theirs = [
            await a2ald_cold_start(p0.listen_addr, p1.node_aid, base, i) for i in range(5)
        ]
    print(f"machine: {os.cpu_count()} CPU, python {sys.version.split()[0]}, reps {REPS}")
    print("| operation | ours p50 ms | ours p95 ms | a2ald p50 ms | a2ald p95 ms | ours/a2ald |")
    print("|---|---|---|---|---|---|")
    print(fmt("resolve (warm node)", ours_r, theirs_r))
    print(fmt("discover, 3 registrants", ours_d, theirs_d))
    print(fmt("start → first resolve", [c[0] for c in cold_ours], [c[0] for c in cold_theirs]))
    split = [statistics.median(c[2][i] for c in cold_ours) for i in range(3)]
    print(
        f"ours, inside the fresh process (p50): imports {split[0]:.1f} ms, Node open"
        f" {split[1]:.1f} ms, first resolve {split[2]:.1f} ms"
    )
    print(f"idle RSS per node process: ours {statistics.median(c[1] for c in cold_ours) / 1024:.1f}"
          f" MiB, a2ald {statistics.median(c[1] for c in cold_theirs) / 1024:.1f} MiB")  # fmt: skip


if __name__ == "__main__":
    anyio.run(main)
