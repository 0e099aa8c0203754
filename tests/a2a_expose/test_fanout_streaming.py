"""call_agents (fan-out: one message to several agents offering a skill, a partial result when
some fail) and call_agent's streamed progress (a streaming agent's updates reach a real MCP
client as progress notifications while it works) — real nodes on loopback, real a2a-sdk
agents (issue 19)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

pytest.importorskip("a2a", reason="needs the a2a extra (a2a-sdk)")

from a2al_mcp import NotFound, agentcall, call_tool
from a2al_mcp.mcp_server import build_server
from a2al_mcp.mcp_server._compat import MCP_MAJOR
from a2al_mcp.toolspec import ToolFailure
from tests.adapters.demo_agent import serve_demo
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio


async def test_three_agents_one_dead_two_replies_and_one_failure() -> None:
    with anyio.fail_after(90):
        async with network(4, publish=True) as (caller, a, b, dead):
            for node in (a, b, dead):
                await serve_demo(node, "fan.echo")
            await dead.aclose()  # its registration stays on the network: a dead candidate
            got = await call_tool(caller, "call_agents", {"skill": "fan.echo", "text": "hi",
                                                          "timeout_s": 20})  # fmt: skip
            assert got["count"] == 2
            assert {r["agent"] for r in got["replies"]} == {str(a.aid), str(b.aid)}
            assert all(r["text"] == f"echo hi from {caller.aid}" for r in got["replies"])
            assert [f["aid"] for f in got["failed"]] == [str(dead.aid)]
            assert got["failed"][0]["error"].startswith(("NOT_FOUND", "UNREACHABLE"))
            first = await agentcall.call_agents(caller, "fan.echo", "one", mode="first",
                                                timeout_s=20)  # fmt: skip
            assert len(first.replies) == 1 and first.replies[0].agent in (a.aid, b.aid)
            assert len(first.failed) == 2  # the dead one, and the one not waited for
            with pytest.raises(NotFound):
                await agentcall.call_agents(caller, "fan.nobody", "x")
            with pytest.raises(ToolFailure) as bad:
                await call_tool(caller, "call_agents", {"skill": "fan.echo", "text": "x",
                                                        "mode": "some"})  # fmt: skip
            assert bad.value.code == "BAD_ARGUMENTS"


@pytest.mark.skipif(MCP_MAJOR != 2, reason="the in-memory mcp 2.x client")
async def test_a_streaming_agents_updates_reach_the_mcp_client_as_progress() -> None:
    from mcp import Client

    with anyio.fail_after(90):
        async with network(2, publish=True) as (agent, me):
            executor = await serve_demo(agent)
            seen: list[tuple[float, float | None, str | None]] = []

            async def on_progress(p: float, total: float | None, message: str | None) -> None:
                seen.append((p, total, message))
                if message == "artifact: alpha":  # the agent waits for this after its first
                    executor.release.set()  # chunk: only a live notification lets it finish

            async with Client(build_server(me)) as client:
                res = await client.call_tool("call_agent", {
                    "to": str(agent.aid), "text": "task alpha beta gamma"},
                    progress_callback=on_progress)  # fmt: skip
            assert not res.is_error, res.content
            out: Any = res.structured_content or json.loads(res.content[0].text)  # type: ignore[union-attr]
            assert out["kind"] == "task" and out["task"]["state"] == "completed"
            assert out["text"].split() == ["alpha", "beta", "gamma"]  # one artifact, appended
            messages = [m for _, _, m in seen]
            assert "artifact: alpha" in messages and "artifact: beta" in messages
            assert any(m and m.startswith("status: working") for m in messages)
            values = [p for p, _, _ in seen]
            assert values == sorted(values) and len(set(values)) == len(values)  # increasing
            assert seen[-1][0] == 1 and seen[-1][2] == "done"


@pytest.mark.skipif(MCP_MAJOR != 2, reason="the in-memory mcp 2.x client")
async def test_an_agent_that_does_not_stream_is_sent_sendmessage() -> None:
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.tasks import InMemoryTaskStore
    from a2al_mcp.adapters.a2a import serve_a2a
    from mcp import Client

    from tests.adapters.demo_agent import DemoExecutor, card

    with anyio.fail_after(90):
        async with network(2, publish=True) as (agent, me):
            plain = card()
            plain.capabilities.streaming = False
            executor = DemoExecutor()
            await serve_a2a(agent, DefaultRequestHandler(executor, InMemoryTaskStore(), plain),
                            plain)  # fmt: skip
            seen: list[str | None] = []

            async def on_progress(p: float, total: float | None, message: str | None) -> None:
                seen.append(message)

            async with Client(build_server(me)) as client:
                res = await client.call_tool("call_agent", {"to": str(agent.aid), "text": "hi"},
                                             progress_callback=on_progress)  # fmt: skip
            out: Any = res.structured_content
            assert not res.is_error and out["text"] == f"echo hi from {me.aid}"
            assert executor.callers == [str(me.aid)]  # the refused stream never ran it
            assert seen[-1] == "done" and not [m for m in seen if m and ": " in m]
