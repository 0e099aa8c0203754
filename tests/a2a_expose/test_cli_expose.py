"""The real thing: ``a2al-mcp serve --expose a2a=http://127.0.0.1:PORT`` in its own process
puts a plain-HTTP a2a-sdk agent (uvicorn on loopback) on A2AL; an in-process node finds it by
its card's skill and reaches it with the a2a-sdk client by AID, the agent reading the caller's
verified AID in its header."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

pytest.importorskip("a2a", reason="needs the a2a extra (a2a-sdk)")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx2")

from a2a.helpers.proto_helpers import get_message_text, new_text_message
from a2a.types import Role, SendMessageRequest
from a2al_mcp.adapters.a2a import a2a_client

from a2al_mcp.remote_mcp import CALLER_HEADER
from a2al_mcp.testing.a2ald import free_port
from tests.a2a_expose.http_agent import http_a2a_agent
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio


async def test_serve_expose_a2a_puts_an_http_agent_on_a2al(tmp_path: Path) -> None:
    with anyio.fail_after(90):
        async with http_a2a_agent("http.cli") as (url, executor), network(2) as (seed, caller):
            addr = "{}:{}".format(*seed.local_addr)
            async with await anyio.open_process([
                sys.executable, "-m", "a2al_mcp", "serve",
                "--http", f"127.0.0.1:{free_port(udp=False)}", "--listen", "127.0.0.1:0",
                "--bootstrap", addr, "--data-dir", str(tmp_path / "home"),
                "--expose", f"a2a={url}"], stderr=None) as proc:  # fmt: skip
                try:
                    found = []
                    while not found:  # bounded by fail_after: the process starts, publishes
                        found = await caller.discover("http.cli", protocols=["a2a"])
                        if not found:
                            await anyio.sleep(0.2)
                    client = await a2a_client(caller, found[0].aid, streaming=False)
                    msg = new_text_message("over the cli", role=Role.ROLE_USER)
                    events = [e async for e in client.send_message(SendMessageRequest(message=msg))]
                    await client.close()
                finally:
                    proc.terminate()
            assert [get_message_text(e.message) for e in events] == ["echo over the cli from None"]
            assert executor.headers[-1][CALLER_HEADER] == str(caller.aid)
