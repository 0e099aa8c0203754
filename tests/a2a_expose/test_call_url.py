"""call_agent(url=…): an a2a-sdk agent on plain HTTP (uvicorn on loopback) reached with the
official SDK client, with the same result shape as by AID."""

from __future__ import annotations

import socket

import anyio
import pytest

pytest.importorskip("a2a", reason="needs the a2a extra (a2a-sdk)")
pytest.importorskip("uvicorn")

from a2al_mcp import AgentCallError, Unreachable, agentcall, call_tool
from a2al_mcp.testing.clock import FakeClock
from a2al_mcp.toolspec import ToolFailure, check_arguments, tool
from tests.a2a_expose.http_agent import http_a2a_agent
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio


async def test_call_agent_by_url_reaches_a_plain_http_agent() -> None:
    with anyio.fail_after(60):
        async with http_a2a_agent() as (url, executor), network(1) as (node,):
            got = await call_tool(node, "call_agent", {"url": url, "text": "hi"})
            assert got["kind"] == "message" and got["text"] == "echo hi from None"
            assert got["agent"] == url and got["url"] == url
            task = await call_tool(node, "call_agent", {"url": url, "text": "task a b"})
            assert task["kind"] == "task" and task["task"]["state"] == "completed"
            assert task["text"].split() == ["a", "b"] and task["task"]["id"]
            assert executor.headers[0]["a2a-version"] == "1.0"


async def test_call_agent_by_url_errors_are_coded() -> None:
    with socket.socket() as free:  # a loopback port nobody listens on
        free.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{free.getsockname()[1]}"
    with anyio.fail_after(60):
        async with http_a2a_agent() as (url, _), network(1) as (node,):
            with pytest.raises(Unreachable, match="nothing answers at"):
                await agentcall.send_message_url(dead, "hi", timeout_s=5)
            with pytest.raises(AgentCallError, match="serves no A2A agent card"):
                await agentcall.send_message_url(url + "/nothing-here", "hi", timeout_s=5)
            with pytest.raises(ToolFailure) as info:
                await call_tool(node, "call_agent", {"url": dead, "text": "hi", "timeout_s": 5})
            assert str(info.value).startswith("UNREACHABLE: nothing answers at")


@pytest.mark.parametrize("args", [
    {"text": "x"},
    {"to": "a0" + "0" * 40, "url": "http://127.0.0.1:1", "text": "x"},
    {"skill": "s", "url": "http://127.0.0.1:1", "text": "x"},
    {"url": "ftp://127.0.0.1:1", "text": "x"},
    {"skill": "s", "task_id": "t", "text": "x"},
])  # fmt: skip
def test_exactly_one_of_to_skill_url(args: dict[str, str]) -> None:
    with pytest.raises(ToolFailure) as info:
        check_arguments(tool("call_agent"), args)
    assert info.value.code == "BAD_ARGUMENTS"


def test_url_with_a_task_to_continue_is_taken() -> None:
    args = {"url": "http://127.0.0.1:1", "text": "x", "task_id": "t", "context_id": "c"}
    assert check_arguments(tool("call_agent"), args).url == "http://127.0.0.1:1"  # type: ignore[attr-defined]


async def test_the_card_is_kept_as_long_as_its_max_age_says() -> None:
    clock = FakeClock()
    with anyio.fail_after(60):
        async with (
            http_a2a_agent(cache_control="public, max-age=60") as (cached, kept),
            http_a2a_agent() as (plain, asked),
        ):
            for _ in range(3):
                reply = await agentcall.send_message_url(cached, "hi", clock=clock)
                assert reply.text == "echo hi from None"
                await agentcall.send_message_url(plain, "hi", clock=clock)
            assert (kept.card_reads, asked.card_reads) == (1, 3)
            clock.advance(61)
            await agentcall.send_message_url(cached, "hi", clock=clock)
            assert kept.card_reads == 2 and len(kept.headers) == 4


@pytest.mark.parametrize(("header", "seconds"), [
    ("public, max-age=300", 300.0), ("max-age=10, public", 10.0), ("no-store, max-age=5", 0.0),
    ("no-cache", 0.0), ("private, max-age=5", 0.0), ("max-age=x", 0.0), ("", 0.0),
    ("max-age=99999", agentcall.CARD_KEEP_MAX_S),
])  # fmt: skip
def test_card_max_age(header: str, seconds: float) -> None:
    assert agentcall._max_age(header) == seconds
