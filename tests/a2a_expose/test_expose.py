"""--expose a2a=URL (and its TOML table and library call): an existing plain-HTTP a2a-sdk agent
(uvicorn on loopback) put on A2AL under an AID, reached by an A2A client by AID and by skill,
the verified caller AID in a header the agent reads, allow/deny by AID."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import anyio
import pytest

pytest.importorskip("a2a", reason="needs the a2a extra (a2a-sdk)")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx2")

from a2a.helpers.proto_helpers import get_message_text, new_text_message
from a2a.types import Role, SendMessageRequest
from a2al_mcp.adapters.a2a import a2a_client, send_to_skill

from a2al_mcp import AccessDenied, agentcall, call_tool
from a2al_mcp.cli.serve import config_from_args
from a2al_mcp.config import ExposeConfig, load_config
from a2al_mcp.errors import ConfigError, UsageError
from a2al_mcp.remote_mcp import CALLER_HEADER, ExposeSpec
from a2al_mcp.remote_mcp.expose import expose_a2a, expose_configs
from tests.a2a_expose.http_agent import http_a2a_agent
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio


def _request(text: str) -> SendMessageRequest:
    return SendMessageRequest(message=new_text_message(text, role=Role.ROLE_USER))


async def test_exposed_agent_is_reached_by_aid_and_skill_with_the_caller_header() -> None:
    with anyio.fail_after(60):
        async with (
            http_a2a_agent("http.echo") as (url, executor),
            network(3, publish=True) as (_seed, a, b),
        ):
            exposed = await expose_a2a(a, ExposeSpec(url=url))
            assert exposed.topics == ("http.echo",)
            client = await a2a_client(b, a.aid, streaming=False)
            events = [e async for e in client.send_message(_request("hi"))]
            await client.close()
            assert [get_message_text(e.message) for e in events] == ["echo hi from None"]
            assert executor.headers[-1][CALLER_HEADER] == str(b.aid)
            who, events = await send_to_skill(b, "http.echo", _request("by skill"))
            assert who == a.aid
            assert [get_message_text(e.message) for e in events] == ["echo by skill from None"]
            assert executor.headers[-1][CALLER_HEADER] == str(b.aid)
            # the SDK-free client (the MCP tools) too, and the card is checked and cacheable
            reply, _ = await agentcall.call_skill(_seed, "http.echo", "task x y")
            assert (reply.agent, reply.state, reply.text.split()) == (a.aid, "completed",
                                                                      ["x", "y"])  # fmt: skip
            assert executor.headers[-1][CALLER_HEADER] == str(_seed.aid)
            card = await call_tool(b, "get_agent_card", {"aid": str(a.aid)})
            assert card["checked"] and card["card"]["name"] == "demo"
            assert card["card"]["supportedInterfaces"][0]["url"] == f"a2al://{a.aid}"
            raw = await b.fetch(a.aid, "GET", agentcall.CARD_PATH)
            assert "max-age=" in dict(raw.headers)["cache-control"]
            profile = await b.profile(a.aid)
            assert profile.protocols == ("a2a",) and profile.skills == ("http.echo",)


async def test_a_forged_caller_header_never_reaches_the_agent() -> None:
    with anyio.fail_after(60):
        async with http_a2a_agent() as (url, executor), network(3, publish=True) as (victim, a, b):
            await expose_a2a(a, ExposeSpec(url=url))
            body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
                "messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}}  # fmt: skip
            headers = [("content-type", "application/json"), ("a2a-version", "1.0"),
                       (CALLER_HEADER, str(victim.aid))]  # fmt: skip
            resp = await b.fetch(a.aid, "POST", "/", headers=headers,
                                 body=json.dumps(body).encode())  # fmt: skip
            assert resp.status == 200
            assert executor.headers[-1][CALLER_HEADER] == str(b.aid)


async def test_allow_and_deny_by_aid() -> None:
    with anyio.fail_after(60):
        async with http_a2a_agent() as (url, executor), network(3, publish=True) as (seed, a, b):
            await expose_a2a(a, ExposeSpec(url=url, deny=(b.aid,)), publish=False)
            with pytest.raises(AccessDenied, match="denied"):
                await agentcall.send_message(b, a.aid, "hi")
            assert (await agentcall.send_message(seed, a.aid, "hi")).text == "echo hi from None"
            await expose_a2a(a, ExposeSpec(url=url, allow=(seed.aid,)), publish=False)
            with pytest.raises(AccessDenied, match="denied"):
                await agentcall.send_message(b, a.aid, "again")
            assert [h[CALLER_HEADER] for h in executor.headers] == [str(seed.aid)]


async def test_the_toml_table_and_the_cli_option(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with (
            http_a2a_agent("http.toml") as (url, executor),
            network(2, publish=True) as (a, b),
        ):
            toml = tmp_path / "node.toml"
            toml.write_text(f'[[expose]]\nprotocol = "a2a"\nurl = "{url}"\n'
                            f'topics = ["toml.topic"]\n')  # fmt: skip
            cfg = load_config(toml)
            assert cfg.expose == (ExposeConfig(protocol="a2a", url=url, topics=("toml.topic",)),)
            await expose_configs(a, cfg.expose)
            reply, _ = await agentcall.call_skill(b, "toml.topic", "hi")
            assert reply.agent == a.aid and executor.headers[-1][CALLER_HEADER] == str(b.aid)
    args = argparse.Namespace(listen=None, bootstrap=None, advertise=None, data_dir=tmp_path,
                              config=None, expose=["a2a=http://127.0.0.1:9"],
                              expose_topic=["x.y"])  # fmt: skip
    got = config_from_args(args).expose
    assert got == (ExposeConfig(protocol="a2a", url="http://127.0.0.1:9", topics=("x.y",)),)
    with pytest.raises(ConfigError, match="takes the agent's URL"):
        config_from_args(argparse.Namespace(**{**vars(args), "expose": ["a2a=python x.py"]}))
    with pytest.raises(ConfigError, match="not a command"):
        ExposeConfig(protocol="a2a", command=("python",))


async def test_an_agent_without_a_card_is_refused() -> None:
    with anyio.fail_after(60):
        async with http_a2a_agent() as (url, _), network(1) as (a,):
            with pytest.raises(Exception, match="serves no A2A agent card"):
                await expose_a2a(a, ExposeSpec(url=url + "/nowhere"), publish=False)
            with pytest.raises(UsageError, match="by its URL"):
                await expose_a2a(a, ExposeSpec(command=("python",)), publish=False)


async def test_a_streaming_reply_flows_through_the_exposed_agent() -> None:
    with anyio.fail_after(60):
        async with http_a2a_agent("http.stream") as (url, _), network(2, publish=True) as (a, b):
            await expose_a2a(a, ExposeSpec(url=url), publish=False)
            client = await a2a_client(b, a.aid, streaming=True)
            events = [e async for e in client.send_message(_request("task one two three"))]
            await client.close()
            chunks = [p.text for e in events if e.HasField("artifact_update")
                      for p in e.artifact_update.artifact.parts]  # fmt: skip
            assert chunks == ["one", "two", "three"]
            assert events[-1].HasField("status_update") or events[-1].HasField("task")
