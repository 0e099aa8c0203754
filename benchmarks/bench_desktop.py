"""The MCP server as a desktop app meets it (issue 16), one run, loopback only:

    unshare -n sh -c 'ip link set lo up && python benchmarks/bench_desktop.py'

- spawn → ``initialize`` answered and spawn → first tool result, p50/p95 of 7, with a fresh
  data directory and again on it after its node stopped (the proxy starts the shared node):
  with a seed that answers, and with one that never does;
- a second client on a running node: spawn → ``initialize`` answered → first tool result;
- idle RSS of the node process serving MCP and of each stdio proxy (two clients attached);
- round trip through stdio (proxy → node → proxy) of a JSON-RPC ``ping`` and of a local tool
  call (``tunnel_list``), p50/p95 of 300.

The clients are raw JSON-RPC over pipes (no SDK in the client), so the figures are the
server's. The seed is an in-process node on 127.0.0.1. resolve/discover/send_mailbox against
a2ald's ``--mcp-stdio`` are in bench_mcp_vs_a2ald.py (which now goes through the proxy too).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from _common import pct

from a2al_mcp import NodeConfig
from a2al_mcp.node import Node

INIT = {"protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "bench", "version": "1"}}  # fmt: skip
COLD = 7
CALLS = 300


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Raw:
    """One ``a2al-mcp serve --stdio`` process driven with raw JSON-RPC lines."""

    def __init__(self, home: Path, seed: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "a2al_mcp", "serve", "--stdio", "--grace", "2",
             "--listen", "127.0.0.1:0", "--bootstrap", seed, "--data-dir", str(home)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        self.next = 0

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.next += 1
        msg = {"jsonrpc": "2.0", "id": self.next, "method": method}
        if params is not None:
            msg["params"] = params
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        self.proc.stdin.flush()
        while True:
            got: dict[str, Any] = json.loads(self.proc.stdout.readline())
            if got.get("id") == self.next:
                return got

    def initialize(self) -> None:
        assert "result" in self.request("initialize", INIT)
        assert self.proc.stdin is not None
        self.proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        self.proc.stdin.flush()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


def stop_node(home: Path) -> None:
    subprocess.run([sys.executable, "-m", "a2al_mcp", "node", "stop", "--data-dir", str(home)],
                   capture_output=True, timeout=30, check=False)  # fmt: skip


def node_pid(home: Path) -> int:
    pid: int = json.loads((home / "mcp.channel").read_text())["pid"]
    return pid


def cold_starts(tmp: Path, seed: str, label: str) -> dict[str, list[float]]:
    """spawn → initialize and spawn → first tool result (``status``, local: it waits for the
    node, not the join) with a fresh data directory, then again on the same directory after
    the node stopped (the app launched again)."""
    times: dict[str, list[float]] = {"fresh": [], "fresh tool": [], "used": [], "used tool": []}
    for i in range(COLD):
        home = tmp / f"{label}-{i}"
        for run in ("fresh", "used"):
            t = time.perf_counter()
            c = Raw(home, seed)
            c.initialize()
            times[run].append((time.perf_counter() - t) * 1000)
            assert "result" in c.request("tools/call", {"name": "status", "arguments": {}})
            times[f"{run} tool"].append((time.perf_counter() - t) * 1000)
            c.close()
            stop_node(home)
    return times


def p50_95(values: list[float]) -> str:
    return f"{pct(values, 50):.0f}/{pct(values, 95):.0f} ms"


def main_sync(seed: str, silent: str) -> None:
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for label, at in (("seed answers", seed), ("seed silent", silent)):
            t = cold_starts(tmp, at, label.split()[1])
            print(
                f"spawn → initialize, no node running, {label}, p50/p95 of {COLD}: fresh data "
                f"dir {p50_95(t['fresh'])}, data dir used before {p50_95(t['used'])}  "
                f"{[round(x) for x in t['fresh']]} / {[round(x) for x in t['used']]}"
            )
            print(
                f"spawn → first tool result (status), {label}: fresh data dir "
                f"{p50_95(t['fresh tool'])}, data dir used before {p50_95(t['used tool'])}"
            )
        home = tmp / "shared"
        first = Raw(home, seed)
        first.initialize()
        first.request("tools/call", {"name": "status", "arguments": {}})
        t = time.perf_counter()
        second = Raw(home, seed)
        second.initialize()
        t_init = (time.perf_counter() - t) * 1000
        res = second.request("tools/call", {"name": "status", "arguments": {}})
        t_tool = (time.perf_counter() - t) * 1000
        assert "result" in res
        print(
            f"second client on a running node: initialize {t_init:.0f} ms, first tool "
            f"result {t_tool:.0f} ms"
        )
        time.sleep(1.0)  # idle
        print(
            f"idle RSS: node {rss_mib(node_pid(home)):.1f} MiB, proxies "
            f"{rss_mib(first.proc.pid):.1f} and {rss_mib(second.proc.pid):.1f} MiB"
        )
        for label, method, params in (
            ("ping", "ping", None),
            ("tools/call tunnel_list", "tools/call", {"name": "tunnel_list", "arguments": {}}),
        ):
            times = []
            for _ in range(CALLS):
                t = time.perf_counter()
                first.request(method, params)
                times.append((time.perf_counter() - t) * 1000)
            print(f"round trip {label}: p50 {pct(times, 50):.2f} ms, p95 {pct(times, 95):.2f} ms")
        first.close()
        second.close()
        stop_node(home)


async def main() -> None:
    async with (
        Node(NodeConfig(listen_addr="127.0.0.1:0")) as seed,
        await anyio.create_udp_socket(local_host="127.0.0.1") as silent,
    ):
        s_host, s_port = silent.extra(anyio.abc.SocketAttribute.local_address)[:2]
        await anyio.to_thread.run_sync(
            main_sync, "{}:{}".format(*seed.local_addr), f"{s_host}:{s_port}"
        )


if __name__ == "__main__":
    anyio.run(main)
