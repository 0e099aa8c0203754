"""QUIC data plane: our node vs a2ald 0.3.5, same sealed loopback topology, one run.

Run as root inside a sealed namespace (the launcher refuses otherwise):

    unshare -n sh -c 'ip link set lo up && python benchmarks/bench_quic_vs_a2ald.py'

Topology: 2 a2ald peers and 2 of our nodes (one process) on loopback, joined through a2ald
peer 0. Measured:
- first connect (cold: a new QUIC connection each time, TLS 1.3 mutual Ed25519 + stream 0):
  ours ``Node.connect`` to a fresh remote identity vs a2ald ``POST /connect/{aid}`` (REST,
  which also opens a local TCP listener) to a fresh a2ald agent each time;
- single-connection tunnel throughput: 64 MiB pushed through a local TCP tunnel to a TCP sink
  behind the remote agent (and, for the default stacks and a2ald, 64 MiB pulled the other
  way: the accepting side sends): ours→ours vs a2ald→a2ald, ours→a2ald; ceilings: loopback
  TCP and one-datagram-per-sendto UDP (1200-byte datagrams). Ours runs with each QUIC stack
  on each side (qh3, the default both ways, and aioquic);
- RSS per open connection (ours: 300 extra connections in one process, both ends).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from _common import pct, thread

from a2al_mcp import Aid, DelegatedIdentity, LimitsConfig, NodeConfig, SystemRng
from a2al_mcp.node import Node
from a2al_mcp.testing.a2ald import A2aldNetwork, check_sealed
from a2al_mcp.transport import peer

REPS = 20
CONNS = 300
"""Extra connections for the RSS measure (both ends in this process)."""
PUSH = 64 * 1024 * 1024
PULL = b"PULL"
"""Sent first through a tunnel: the sink answers with PUSH bytes (the serving side sends)."""


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def sink_server() -> tuple[anyio.abc.SocketListener, int, dict[str, Any]]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    return listener, port, {"bytes": 0, "done": anyio.Event()}


async def sink(state: dict[str, Any], client: anyio.abc.SocketStream) -> None:
    """Counts what it receives; a connection that starts with PULL gets PUSH bytes back."""
    async with client:
        try:
            data = await client.receive(1 << 20)
            if data == PULL:
                chunk = b"\x5a" * (256 * 1024)
                for _ in range(PUSH // len(chunk)):
                    await client.send(chunk)
                return
            while True:
                state["bytes"] += len(data)
                if state["bytes"] >= PUSH:
                    state["done"].set()
                data = await client.receive(1 << 20)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass


async def push_through(addr: tuple[str, int], state: dict[str, Any]) -> float:
    state["bytes"], state["done"] = 0, anyio.Event()
    chunk = b"\x5a" * (256 * 1024)
    t = time.perf_counter()
    async with await anyio.connect_tcp(*addr) as tcp:
        for _ in range(PUSH // len(chunk)):
            await tcp.send(chunk)
        with anyio.fail_after(300):
            await state["done"].wait()
    return PUSH / (time.perf_counter() - t) / 1e6


async def pull_through(addr: tuple[str, int]) -> float:
    """The other direction: the service behind the tunnel sends PUSH bytes."""
    got = 0
    t = time.perf_counter()
    async with await anyio.connect_tcp(*addr) as tcp:
        await tcp.send(PULL)
        with anyio.fail_after(300):
            while got < PUSH:
                got += len(await tcp.receive(1 << 20))
    return PUSH / (time.perf_counter() - t) / 1e6


def tcp_ceiling() -> float:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    import threading

    got = [0]

    def run() -> None:
        conn, _ = srv.accept()
        while got[0] < PUSH:
            data = conn.recv(1 << 20)
            if not data:
                break
            got[0] += len(data)
        conn.close()

    th = threading.Thread(target=run)
    th.start()
    c = socket.create_connection(("127.0.0.1", port))
    chunk = b"\x5a" * (256 * 1024)
    t = time.perf_counter()
    for _ in range(PUSH // len(chunk)):
        c.sendall(chunk)
    th.join()
    dt = time.perf_counter() - t
    c.close()
    srv.close()
    return PUSH / dt / 1e6


def udp_ceiling() -> float:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"\x5a" * 1200
    n = 20000
    import threading

    got = [0]

    def run() -> None:
        rx.settimeout(1.0)
        try:
            while got[0] < n:
                rx.recv(2048)
                got[0] += 1
        except TimeoutError:
            pass

    th = threading.Thread(target=run)
    th.start()
    t = time.perf_counter()
    for _ in range(n):
        tx.sendto(payload, rx.getsockname())
    th.join()
    dt = time.perf_counter() - t
    return got[0] * 1200 / dt / 1e6


SERVER = """
import sys, anyio
from a2al_mcp import NodeConfig
from a2al_mcp.node import Node

async def main() -> None:
    cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(sys.argv[1],))
    async with Node(cfg) as node:
        await node.publish()
        node.serve(service_tcp=f"127.0.0.1:{sys.argv[2]}")
        print(node.aid, node.local_addr[1], flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


def runs(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} (runs {', '.join(f'{x:.1f}' for x in xs)})"


async def separate_process(
    a: Node, seed: str, sink_port: int, state: dict[str, Any]
) -> tuple[list[float], list[float], list[float]]:
    """First connect (fresh local identities on A, so no pooling) and tunnel throughput to
    a serving node in another process."""
    async with await anyio.open_process([sys.executable, "-c", SERVER, seed, str(sink_port)],
                                        stderr=None) as proc:  # fmt: skip
        assert proc.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            line += await proc.stdout.receive()
        aid_text, port = line.decode().split()
        b_aid, url = Aid.from_str(aid_text), f"quic://127.0.0.1:{port}"
        gc.collect()  # as before the one-process connects: no full collection in the timing
        times = []
        for _ in range(REPS):
            agent = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity
            a.add_identity(agent)
            t = time.perf_counter()
            pc = await a.connect(b_aid, local=agent.aid, endpoints=[url])
            times.append((time.perf_counter() - t) * 1000)
            pc.close()
        tun = await a.tunnel(b_aid, endpoints=[url])
        mbs = [await push_through(tun.addr, state) for _ in range(3)]
        pulled = [await pull_through(tun.addr) for _ in range(3)]
        await tun.aclose()
        proc.terminate()
    return times, mbs, pulled


async def main() -> None:
    check_sealed()
    cpus = len(__import__("os").sched_getaffinity(0))
    print(f"# {time.strftime('%Y-%m-%d')} {cpus} CPUs, python {sys.version.split()[0]}")
    with A2aldNetwork(2) as net:
        p0, p1 = net.peers
        seed = p0.listen_addr
        listener, port, state = await sink_server()
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, functools.partial(sink, state))
            # every connection comes from 127.0.0.1: lift the per-source limits above the
            # CONNS connections the RSS measure opens (the defaults allow 32 per address)
            limits = LimitsConfig(connections_per_ip=2 * CONNS, half_open_per_ip=128)
            cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,), limits=limits)
            dialers: dict[str, Node] = {}
            acceptors: dict[str, Node] = {}
            async with contextlib.AsyncExitStack() as stack:
                for name in peer.QUIC_STACKS:  # one dialling and one accepting node per stack
                    peer.DEFAULT_OUTBOUND_STACK = peer.DEFAULT_INBOUND_STACK = name
                    dialers[name] = await stack.enter_async_context(Node(cfg))
                    acceptors[name] = await stack.enter_async_context(Node(cfg))
                    await acceptors[name].publish()
                    acceptors[name].serve(service_tcp=f"127.0.0.1:{port}")
                peer.DEFAULT_OUTBOUND_STACK = peer.DEFAULT_INBOUND_STACK = "qh3"
                a, b = dialers["qh3"], acceptors["qh3"]
                url = f"quic://127.0.0.1:{b.local_addr[1]}"

                # -- first connect, ours: fresh remote identities, so no pooling.
                # The process's first full (generation 2) collection, ~35 ms over the heap
                # the imports and four nodes leave, otherwise lands in these 20 connects and
                # is their p95; where depends on how much was allocated since start, so
                # collect it here rather than time it.
                gc.collect()
                ours: dict[str, list[float]] = {}
                for (name, dialer), (accepting, acceptor) in itertools.product(
                    dialers.items(), acceptors.items()
                ):
                    row = ours[f"{name} dials, {accepting} accepts"] = []
                    to = f"quic://127.0.0.1:{acceptor.local_addr[1]}"
                    for _ in range(REPS):
                        agent = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity
                        acceptor.add_identity(agent)
                        t = time.perf_counter()
                        pc = await dialer.connect(agent.aid, endpoints=[to])
                        row.append((time.perf_counter() - t) * 1000)
                        pc.close()
                # -- a2ald: fresh agents on p0, p1 connects once to each
                aids = []
                for _ in range(REPS):
                    gen = await thread(p0.identity_generate)
                    await thread(p0.register_agent, gen["operational_private_key_hex"],
                                 gen["delegation_proof_hex"], f"127.0.0.1:{port}")  # fmt: skip
                    await thread(p0.publish_agent, gen["aid"])
                    aids.append(gen["aid"])
                for aid in aids:  # make sure p1 can resolve them before timing
                    for _ in range(50):
                        try:
                            await thread(p1.resolve, aid)
                            break
                        except Exception:
                            await anyio.sleep(0.2)
                theirs: list[float] = []
                for aid in aids:
                    t = time.perf_counter()
                    await thread(p1.post, f"/connect/{aid}", {})
                    theirs.append((time.perf_counter() - t) * 1000)
                t50, t95 = pct(theirs, 50), pct(theirs, 95)
                print("| first connect ms | ours p50 | ours p95 | a2ald p50 | a2ald p95 | ratio |")
                for name, xs in ours.items():
                    o50, o95 = pct(xs, 50), pct(xs, 95)
                    print(f"| {name} | {o50:.2f} | {o95:.2f} | {t50:.2f} | {t95:.2f} "
                          f"| {o50 / t50:.2f}× |")  # fmt: skip

                # -- tunnel throughput: ours→ours per dialling stack, a2ald→a2ald, ours→a2ald
                for name, dialer in dialers.items():
                    for accepting, acceptor in acceptors.items():
                        to = f"quic://127.0.0.1:{acceptor.local_addr[1]}"
                        tun = await dialer.tunnel(acceptor.aid, endpoints=[to])
                        mbs = [await push_through(tun.addr, state) for _ in range(3)]
                        if name == accepting == "qh3":
                            pulled = [await pull_through(tun.addr) for _ in range(3)]
                            print(f"tunnel MB/s ours→ours, the acceptor sends: {runs(pulled)}")
                        await tun.aclose()
                        print(f"tunnel MB/s ours→ours, {name} dials, {accepting} accepts: "
                              f"{runs(mbs)}")  # fmt: skip
                t2 = await thread(p1.post, f"/tunnel/{aids[0]}", {})
                host, tport = t2["listen"].rsplit(":", 1)
                theirs_mbs = [await push_through((host, int(tport)), state) for _ in range(3)]
                print(f"tunnel MB/s a2ald→a2ald: {runs(theirs_mbs)}")
                theirs_pulled = [await pull_through((host, int(tport))) for _ in range(3)]
                print(f"tunnel MB/s a2ald→a2ald, the acceptor sends: {runs(theirs_pulled)}")
                for name, dialer in dialers.items():
                    tun = await dialer.tunnel(Aid.from_str(aids[0]),
                                              endpoints=[f"quic://{p0.listen_addr}"])  # fmt: skip
                    mbs = [await push_through(tun.addr, state) for _ in range(3)]
                    await tun.aclose()
                    print(f"tunnel MB/s ours→a2ald, {name} dials: {runs(mbs)}")
                print(f"ceilings: loopback TCP {tcp_ceiling():.0f} MB/s; UDP 1200-byte "
                      f"datagrams {udp_ceiling():.0f} MB/s")  # fmt: skip

                # -- the same two measures with the serving node in its own process
                for name, dialer in dialers.items():
                    sep_connect, sep_mbs, sep_pulled = await separate_process(
                        dialer, seed, port, state
                    )
                    print(f"ours, server in its own process, {name} dials: first connect p50 "
                          f"{pct(sep_connect, 50):.2f} ms p95 {pct(sep_connect, 95):.2f} ms "
                          f"({pct(sep_connect, 50) / t50:.2f}× a2ald); tunnel MB/s "
                          f"{runs(sep_mbs)}; the acceptor sends: {runs(sep_pulled)}")  # fmt: skip

                # -- RSS per open connection
                agents = [DelegatedIdentity.generate(SystemRng(), issued_at=0).identity
                          for _ in range(CONNS)]  # fmt: skip
                for agent in agents:
                    a.add_identity(agent)
                gc.collect()
                before = rss_kib()
                extra = [await a.connect(b.aid, local=agent.aid, endpoints=[url])
                         for agent in agents]  # fmt: skip
                gc.collect()
                after = rss_kib()
                live = sum(1 for pc in extra if pc.ready)
                print(f"RSS per open connection: {(after - before) / CONNS:.1f} KiB "
                      f"({live} live, both ends in one process)")  # fmt: skip
            tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main)
