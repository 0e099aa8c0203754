"""The human commands against a loopback network: status, resolve, discover, send, inbox."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from a2al_mcp import Aid
from a2al_mcp.node.home import DataHome
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio


async def cli(*args: str, home: Path, seed: str) -> tuple[int, Any, str]:
    res = await anyio.run_process(
        [sys.executable, "-m", "a2al_mcp", *args, "--listen", "127.0.0.1:0",
         "--bootstrap", seed, "--data-dir", str(home)], check=False)  # fmt: skip
    out = json.loads(res.stdout) if res.stdout.strip() else None
    return res.returncode, out, res.stderr.decode(errors="replace")  # cp1252 when simulated


async def test_human_commands(tmp_path: Path) -> None:
    with anyio.fail_after(90):
        async with network(2, publish=True) as (a, b):
            seed = "{}:{}".format(*a.local_addr)
            await b.register_service("human.demo", name="b")
            code, st, _ = await cli("status", home=tmp_path, seed=seed)
            assert code == 0 and st["ready"]
            me = Aid.from_str(st["aid"])
            code, res, _ = await cli("resolve", str(b.aid), home=tmp_path, seed=seed)
            assert code == 0 and res["endpoints"] == [f"quic://127.0.0.1:{b.local_addr[1]}"]
            code, found, _ = await cli("discover", "human.demo", home=tmp_path, seed=seed)
            assert [x["aid"] for x in found["agents"]] == [str(b.aid)]
            code, sent, _ = await cli("send", str(b.aid), "from the cli", home=tmp_path, seed=seed)
            assert code == 0 and sent["message_id"]
            assert [n.text for n in await b.read_mailbox()] == ["from the cli"]
            # a note for the CLI's node while it is offline, collected by `inbox`
            await _publish_cli_record(tmp_path, seed)
            await b.send_mailbox(me, "for the cli")
            code, inbox, _ = await cli("inbox", home=tmp_path, seed=seed)
            assert code == 0 and [m["text"] for m in inbox["messages"]] == ["for the cli"]
            code, _, err = await cli("resolve", "nope", home=tmp_path, seed=seed)
            assert code != 0 and "BAD_AID" in err and "Traceback" not in err
            with DataHome(tmp_path):  # another process holds the directory
                code, _, err = await cli("status", home=tmp_path, seed=seed)
                assert code == 2 and "in use by process" in err


async def _publish_cli_record(home: Path, seed: str) -> None:
    """Publish the CLI node's endpoint record (the MCP `publish` tool would do it)."""
    script = (
        "import anyio\nfrom pathlib import Path\nfrom a2al_mcp import NodeConfig, SystemRng\n"
        "from a2al_mcp.node import Node\nfrom a2al_mcp.node.home import DataHome\n"
        "async def m():\n"
        f"    with DataHome(Path({str(home)!r})) as h:\n"
        f"        cfg = NodeConfig(listen_addr='127.0.0.1:0', bootstrap=({seed!r},))\n"
        "        async with Node(cfg, h.identity(SystemRng())) as n:\n"
        "            await n.publish()\n"
        "anyio.run(m)\n"
    )
    await anyio.run_process([sys.executable, "-c", script])
