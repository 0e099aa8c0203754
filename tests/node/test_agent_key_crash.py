"""Crash safety of the agent keys: a node killed with SIGKILL at a random moment while it creates
agents keeps every agent it reported created, and nothing a kill leaves half-written is ever
loaded or blocks the next start (issue 15). 50 rounds, a fresh process each; the data
directories are reused five rounds each, so restarts also load what earlier rounds made."""

from __future__ import annotations

import os
import random
import signal
import sys
from pathlib import Path

import anyio
import anyio.abc
import pytest

from a2al_mcp import NodeConfig, SystemRng
from a2al_mcp.node import Node, state
from a2al_mcp.node.home import DataHome

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL"),
]
ROUNDS = 50
PER_HOME = 5

# prints "ready" once imported, "node <aid>" once the node key is kept, then "agent <aid>"
# each time create_agent() (what the identity_create tool calls) has returned
CREATOR = """
import sys
from pathlib import Path
import anyio, anyio.lowlevel
from a2al_mcp import NodeConfig, SystemRng
from a2al_mcp.node import Node
from a2al_mcp.node.home import DataHome

async def main() -> None:
    print("ready", flush=True)
    with DataHome(Path(sys.argv[1])) as home:
        ident = home.identity(SystemRng())
        print("node", ident.aid, flush=True)
        cfg = NodeConfig(listen_addr="127.0.0.1:0", data_dir=home.path)
        async with Node(cfg, ident) as node:
            while True:
                made = node.create_agent()
                print("agent", made.identity.aid, flush=True)
                await anyio.lowlevel.checkpoint()

anyio.run(main)
"""


class _Lines:
    """Complete lines from a child's stdout (a line cut by the kill is not one)."""

    def __init__(self, proc: anyio.abc.Process) -> None:
        assert proc.stdout is not None
        self.stream = proc.stdout
        self.buf = b""

    async def next(self) -> str | None:
        while b"\n" not in self.buf:
            try:
                self.buf += await self.stream.receive()
            except anyio.EndOfStream:
                return None
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


async def _round(home: Path, rng: random.Random) -> tuple[str | None, list[str]]:
    """One child killed after a random number of agents (0-4) plus a random 0-20 ms."""
    after = rng.randrange(5)
    proc = await anyio.open_process([sys.executable, "-c", CREATOR, str(home)], stderr=None)
    lines, node, agents = _Lines(proc), None, []
    try:
        assert await lines.next() == "ready"
        while len(agents) < after:
            line = await lines.next()
            assert line is not None, "the child ended early"
            kind, aid = line.split()
            if kind == "node":
                node = aid
            else:
                agents.append(aid)
        await anyio.sleep(rng.random() * 0.02)  # the random moment of the kill
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    while (line := await lines.next()) is not None:  # reported before it died
        kind, aid = line.split()
        if kind == "node":
            node = aid
        else:
            agents.append(aid)
    await proc.aclose()
    return node, agents


async def test_kill_9_while_creating_agents_loses_no_reported_agent(tmp_path: Path) -> None:
    rng = random.Random()
    reported: dict[Path, set[str]] = {}
    node_of: dict[Path, str] = {}
    mid_write = 0
    with anyio.fail_after(240):
        for i in range(ROUNDS):
            home = tmp_path / f"home{i // PER_HOME}"
            node, agents = await _round(home, rng)
            if node is not None:
                assert node_of.setdefault(home, node) == node  # one node key, kept
            reported.setdefault(home, set()).update(agents)
            folder = home / "agents"
            left = [p for d in (home, folder) if d.is_dir() for p in d.iterdir()
                    if state.is_temp(p)]  # fmt: skip
            mid_write += bool(left)
            # restart on the same directory: nothing blocks, every reported agent is back
            with DataHome(home) as h:
                ident = h.identity(SystemRng())
                if home in node_of:
                    assert str(ident.aid) == node_of[home]
                node_of[home] = str(ident.aid)
                cfg = NodeConfig(listen_addr="127.0.0.1:0", data_dir=home)
                async with Node(cfg, ident) as n:
                    loaded = {str(x.aid) for x in n.identities() if x.is_delegated}
                files = sorted(folder.glob("*.json")) if folder.is_dir() else []
            assert reported[home] <= loaded, f"round {i}: reported agents were lost"
            assert {p.stem for p in files} == loaded  # every kept file loads: none skipped
            assert not any(state.is_temp(p) for d in (home, folder) if d.is_dir()
                           for p in d.iterdir())  # fmt: skip
    # not asserted (it depends on where the kills land): how often a temp file was left
    print(f"{ROUNDS} rounds, {mid_write} killed with a write in flight, "
          f"{sum(map(len, reported.values()))} agents reported")  # fmt: skip
