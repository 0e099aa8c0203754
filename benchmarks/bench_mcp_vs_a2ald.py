"""MCP over stdio: our ``a2al-mcp serve --stdio`` vs ``a2ald --mcp-stdio`` (0.3.5), one run.

    unshare -n sh -c 'ip link set lo up && python benchmarks/bench_mcp_vs_a2ald.py'

Topology: 3 a2ald peers on loopback (peer 0 the bootstrap); an a2ald agent on peer 1 is the
target (resolve), registered under a topic (discover) and the mailbox recipient. Both servers
are driven by the official mcp client over stdio (``mode="legacy"``, the initialize
handshake both speak):
- ours: a fresh ``a2al-mcp serve --stdio`` process joined through peer 0;
- a2ald: ``a2ald --mcp-stdio`` proxying to peer 2's daemon (its own agent is the sender).
Tool-call latency p50/p95 of resolve / discover / send_mailbox (a2ald: ``a2al_resolve``,
``a2al_discover``, ``a2al_mailbox_send``), and cold start to the first successful network
tool call (process spawn → initialize → ``resolve`` answered), each server with a fresh
data directory.
"""

from __future__ import annotations

import base64
import sys
import tempfile
import time
from typing import Any

import anyio
from _common import pct, thread
from mcp import Client, StdioServerParameters

from a2al_mcp.testing.a2ald import A2aldNetwork, A2aldPeer, check_sealed, find_a2ald, free_port

REPS = 20


def _agent(peer: A2aldPeer, topic: str | None = None) -> str:
    gen = peer.identity_generate()
    peer.register_agent(gen["operational_private_key_hex"], gen["delegation_proof_hex"])
    if topic:
        peer.register_services(gen["aid"], [topic], name="bench", protocols=["http"], ttl=600)
    peer.publish_agent(gen["aid"])
    return str(gen["aid"])


async def timed_calls(c: Any, name: str, args: dict[str, Any]) -> list[float]:
    out = []
    for _ in range(REPS):
        t = time.perf_counter()
        res = await c.call_tool(name, args)
        out.append((time.perf_counter() - t) * 1000)
        if res.is_error:
            raise RuntimeError(f"{name} failed: {res.content}")
    return out


async def first_success(params: StdioServerParameters, tool: str, args: dict[str, Any]) -> float:
    t = time.perf_counter()
    async with Client(params, mode="legacy") as c:
        for _ in range(400):
            res = await c.call_tool(tool, args)
            if not res.is_error:
                return (time.perf_counter() - t) * 1000
            await anyio.sleep(0.025)
    raise RuntimeError(f"{tool} never succeeded")


async def main() -> None:
    check_sealed()
    a2ald = find_a2ald()
    assert a2ald is not None
    print(f"# {time.strftime('%Y-%m-%d')}, {REPS} calls each")
    with A2aldNetwork(3) as net, tempfile.TemporaryDirectory() as tmp:
        p0, p1, p2 = net.peers
        topic = "bench.mcp"
        target = await thread(_agent, p1, topic)
        sender = await thread(_agent, p2)
        for _ in range(50):
            try:
                await thread(p2.resolve, target)
                break
            except Exception:
                await anyio.sleep(0.2)
        ours_params = StdioServerParameters(command=sys.executable, args=[
            "-m", "a2al_mcp", "serve", "--stdio", "--listen", "127.0.0.1:0",
            "--bootstrap", p0.listen_addr, "--data-dir", f"{tmp}/ours"])  # fmt: skip
        theirs_params = StdioServerParameters(command=str(a2ald), args=[
            "-mcp-stdio", "-api-addr", f"127.0.0.1:{p2.api_port}",
            "-data-dir", f"{tmp}/theirs-proxy"])  # fmt: skip
        rows = []
        async with (
            Client(ours_params, mode="legacy") as ours,
            Client(theirs_params, mode="legacy") as theirs,
        ):
            for _ in range(200):  # until our node has joined and can resolve
                if not (await ours.call_tool("resolve", {"aid": target})).is_error:
                    break
                await anyio.sleep(0.05)
            body = base64.b64encode(b"bench note").decode()
            pairs = [
                ("resolve", ("resolve", {"aid": target}), ("a2al_resolve", {"aid": target})),
                ("discover", ("discover", {"service": topic}),
                 ("a2al_discover", {"services": [topic]})),
                ("send_mailbox", ("send_mailbox", {"to": target, "text": "bench note"}),
                 ("a2al_mailbox_send", {"aid": sender, "recipient": target, "msg_type": 3,
                                        "body_base64": body})),
            ]  # fmt: skip
            for label, (on, oa), (tn, ta) in pairs:
                o = await timed_calls(ours, on, oa)
                t = await timed_calls(theirs, tn, ta)
                rows.append((label, o, t))
        print("| tool | ours p50 | ours p95 | a2ald p50 | a2ald p95 | ratio |")
        for label, o, t in rows:
            print(f"| {label} | {pct(o, 50):.2f} | {pct(o, 95):.2f} | {pct(t, 50):.2f} | "
                  f"{pct(t, 95):.2f} | {pct(o, 50) / pct(t, 50):.2f}× |")  # fmt: skip

        # cold start: fresh process and data directory, to the first successful resolve
        ours_cold, theirs_cold = [], []
        for i in range(3):
            params = StdioServerParameters(command=sys.executable, args=[
                "-m", "a2al_mcp", "serve", "--stdio", "--listen", "127.0.0.1:0",
                "--bootstrap", p0.listen_addr, "--data-dir", f"{tmp}/cold-ours-{i}"])  # fmt: skip
            ours_cold.append(await first_success(params, "resolve", {"aid": target}))
            params = StdioServerParameters(command=str(a2ald), args=[
                "-mcp-stdio", "-api-addr", f"127.0.0.1:{free_port(udp=False)}",
                "-data-dir", f"{tmp}/cold-theirs-{i}", "-bootstrap", p0.listen_addr,
                "-listen", f"127.0.0.1:{free_port(tcp=False)}", "-no-open-browser"])  # fmt: skip
            theirs_cold.append(await first_success(params, "a2al_resolve", {"aid": target}))
        print(f"cold start → first resolve ms: ours {[round(x) for x in ours_cold]} "
              f"(p50 {pct(ours_cold, 50):.0f}); a2ald {[round(x) for x in theirs_cold]} "
              f"(p50 {pct(theirs_cold, 50):.0f})")  # fmt: skip


if __name__ == "__main__":
    anyio.run(main)
