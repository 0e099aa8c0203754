"""Transport budget under attack, by hand (not in CI). Loopback only.

    python benchmarks/hostile/transport.py [memory|flood|tunnel ...]

Scenarios (plain async functions returning dicts of figures, so bench_hostile.py can call
them):

* :func:`memory` — a peer pushes 1 GB at a handler that never reads: RSS of the process
  and the serving node's buffered bytes (``status().quic.buffered_bytes``) while it tries,
  how much got through before the sender was flow-controlled, then the time to drain it all
  once the handler reads;
* :func:`flood` — honest connect latency (a new connection each time) p50/p95 without a
  flood, then while 10,000 garbage 1200-byte INITIALs arrive from 127.x.y.z sources (Linux:
  any 127/8 source works without setup);
* :func:`tunnel` — ours↔ours, one process: one stream pushing 64 MiB to a reading handler
  (MB/s) and connect latency p50/p95: the price of the limits (run it on the code before
  them too: it only uses the public Node API).

Both nodes run in this one process, so RSS covers both ends.
"""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from anyio import EndOfStream

from a2al_mcp import NodeConfig, SystemRng
from a2al_mcp.node import Node
from a2al_mcp.transport.peer import PeerStream

GB = 1 << 30


def rss_mib() -> float:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # peak, KiB (bytes on macOS)
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def _buffered(node: Node) -> int | None:
    quic = getattr(node.status(), "quic", None)
    return None if quic is None else int(quic.buffered_bytes)


def _url(node: Node) -> str:
    host, port = node.local_addr
    return f"quic://{host}:{port}"


@contextlib.asynccontextmanager
async def _pair() -> Any:
    async with Node(NodeConfig()) as a, Node(NodeConfig()) as b:
        yield a, b


async def memory(total: int = GB, watch_s: float = 10.0, drain: bool = True) -> dict[str, Any]:
    """1 GB pushed at a handler that does not read for ``watch_s``, then reads."""
    chunk = b"\xa5" * 65536
    release, done = anyio.Event(), anyio.Event()
    got = [0]
    sent = [0]

    async def hoarder(stream: PeerStream) -> None:
        await release.wait()
        with contextlib.suppress(EndOfStream):
            while True:
                got[0] += len(await stream.receive())
        done.set()

    out: dict[str, Any] = {"pushed_total_bytes": total}
    async with _pair() as (a, b):
        b.serve(handler=hoarder)
        rss0 = rss_mib()
        s = await a.open_stream(b.aid, endpoints=[_url(b)])

        async def push() -> None:
            for _ in range(total // len(chunk)):
                await s.send(chunk)
                sent[0] += len(chunk)
            await s.send_eof()

        async with anyio.create_task_group() as tg:
            tg.start_soon(push)
            rss_max, buf_max = rss0, 0
            end = time.monotonic() + watch_s
            while time.monotonic() < end:
                await anyio.sleep(0.1)
                rss_max = max(rss_max, rss_mib())
                buf_max = max(buf_max, _buffered(b) or 0)
            out.update(
                rss_before_mib=round(rss0, 1),
                rss_max_while_not_reading_mib=round(rss_max, 1),
                buffered_max_bytes=buf_max,
                pushed_while_not_reading_bytes=sent[0],
            )
            release.set()
            if not drain:
                tg.cancel_scope.cancel()
                return out
            t0 = time.monotonic()
            await done.wait()
            secs = time.monotonic() - t0
        out.update(
            drained_bytes=got[0],
            drain_s=round(secs, 2),
            drain_mb_s=round(got[0] / secs / 1e6, 1),
            rss_after_mib=round(rss_mib(), 1),
        )
    return out


def _garbage_initial() -> bytes:
    head = b"\xc3" + (1).to_bytes(4, "big") + b"\x08" + os.urandom(8) + b"\x08"
    head += os.urandom(8) + b"\x00"
    length = 1200 - len(head) - 2
    return head + (0x4000 | length).to_bytes(2, "big") + os.urandom(length)


async def _flood(target: tuple[str, int], count: int, stop: anyio.Event | None = None) -> int:
    sent = 0
    per_source = 10
    for i in range(count // per_source):
        if stop is not None and stop.is_set():
            break
        host = f"127.{1 + i // 250 % 200}.{i % 250 + 1}.{1 + i // 50000}"
        async with await anyio.create_udp_socket(local_host=host, local_port=0) as sock:
            for _ in range(per_source):
                await sock.sendto(_garbage_initial(), *target)
                sent += 1
        await anyio.sleep(0.002)  # ~5,000 datagrams/s
    return sent


async def _connect_times(a: Node, b: Node, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        pc = await a.connect(b.aid, endpoints=[_url(b)], timeout_s=15)
        times.append((time.perf_counter() - t0) * 1000)
        pc.close()
        await anyio.sleep(0.01)
    return times


async def flood(initials: int = 10_000, reps: int = 20) -> dict[str, Any]:
    """Honest connect latency without and during a flood of garbage INITIALs."""
    out: dict[str, Any] = {}
    async with _pair() as (a, b):
        await _connect_times(a, b, 2)  # warm-up
        quiet = await _connect_times(a, b, reps)
        out.update(quiet_p50_ms=round(pct(quiet, 50), 2), quiet_p95_ms=round(pct(quiet, 95), 2))
        loud: list[float] = []
        failed = 0
        sent = [0]

        async def run_flood() -> None:
            sent[0] = await _flood(b.local_addr, initials)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_flood)
            await anyio.sleep(0.3)  # the flood is under way
            for _ in range(reps):
                try:
                    loud += await _connect_times(a, b, 1)
                except Exception:
                    failed += 1
        quic = getattr(b.status(), "quic", None)
        out.update(
            flood_initials=sent[0],
            flood_p50_ms=round(pct(loud, 50), 2) if loud else None,
            flood_p95_ms=round(pct(loud, 95), 2) if loud else None,
            flood_failed_connects=failed,
        )
        if quic is not None:
            c = quic.counters
            out.update(
                retries_sent=c.retries_sent,
                handshake_timeouts=c.handshake_timeouts,
                refused_half_open=c.refused_half_open,
                half_open_now=quic.half_open,
            )
    return out


async def tunnel(size: int = 64 << 20, reps: int = 20, runs: int = 3) -> dict[str, Any]:
    """Ours↔ours in one process: stream throughput to a reading handler, connect latency."""
    chunk = b"\x5a" * 65536
    rates: list[float] = []
    async with _pair() as (a, b):
        done = [anyio.Event()]

        async def sink(stream: PeerStream) -> None:
            n = 0
            with contextlib.suppress(EndOfStream):
                while True:
                    n += len(await stream.receive())
            done[0].set()

        b.serve(handler=sink)
        for _ in range(runs):
            done[0] = anyio.Event()
            s = await a.open_stream(b.aid, endpoints=[_url(b)])
            t0 = time.perf_counter()
            for _ in range(size // len(chunk)):
                await s.send(chunk)
            await s.send_eof()
            await done[0].wait()
            rates.append(size / (time.perf_counter() - t0) / 1e6)
            await s.aclose()
        times = await _connect_times(a, b, reps)
    return {
        "stream_mb_s_runs": [round(r, 1) for r in rates],
        "stream_mb_s_median": round(statistics.median(rates), 1),
        "connect_p50_ms": round(pct(times, 50), 2),
        "connect_p95_ms": round(pct(times, 95), 2),
    }


SCENARIOS = {"memory": memory, "flood": flood, "tunnel": tunnel}


async def main(names: list[str]) -> None:
    for name in names or list(SCENARIOS):
        figures = await SCENARIOS[name]()
        print(name, figures, flush=True)


if __name__ == "__main__":
    _ = SystemRng  # the nodes draw their own randomness
    anyio.run(main, sys.argv[1:])
