"""A2A over A2AL: real a2a-sdk AgentExecutors on one node, the a2a-sdk client (and the
SDK-free JSON-RPC client behind the MCP tools) on another, over verified QUIC streams — no HTTP
server, no open TCP port."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

pytest.importorskip("a2a", reason="needs the a2a extra (a2a-sdk)")

from a2a.helpers.proto_helpers import get_message_text, new_text_message
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Role,
    SendMessageRequest,
    TaskState,
)
from a2al_mcp.adapters.a2a import (
    a2a_client,
    fetch_card,
    send_to_skill,
    serve_a2a,
)

from a2al_mcp import (
    AgentCallError,
    Aid,
    Identity,
    Node,
    NodeConfig,
    NotFound,
    SeededRng,
    SigningKey,
    Unreachable,
    agentcall,
    call_tool,
)
from a2al_mcp.toolspec import ToolFailure
from tests.adapters.demo_agent import serve_demo
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio


async def test_send_message_with_the_verified_caller_and_the_card() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (agent_node, caller_node):
            executor = await serve_demo(agent_node)
            got = await fetch_card(caller_node, agent_node.aid)
            assert got.name == "demo"
            assert got.supported_interfaces[0].url == f"a2al://{agent_node.aid}"
            client = await a2a_client(caller_node, agent_node.aid, streaming=False)
            msg = new_text_message("hello", role=Role.ROLE_USER)
            replies = [
                event async for event in client.send_message(SendMessageRequest(message=msg))
            ]
            await client.close()
            texts = [get_message_text(r.message) for r in replies if r.HasField("message")]
            assert texts == [f"echo hello from {caller_node.aid}"]
            assert executor.callers == [str(caller_node.aid)]


async def test_the_caller_aid_cannot_be_spoofed_with_headers() -> None:
    with anyio.fail_after(60):
        async with network(3, publish=True) as (agent_node, caller_node, victim):
            executor = await serve_demo(agent_node)
            body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
                "messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}}  # fmt: skip
            forged = [("content-type", "application/json"), ("a2a-version", "1.0"),
                      ("x-a2al-caller", str(victim.aid)), ("x-a2al-caller-aid", str(victim.aid)),
                      ("x-caller-aid", str(victim.aid))]  # fmt: skip
            resp = await caller_node.fetch(agent_node.aid, "POST", "/", headers=forged,
                                           body=json.dumps(body).encode())  # fmt: skip
            answer = json.loads(resp.body)
            text = answer["result"]["message"]["parts"][0]["text"]
            assert text == f"echo hi from {caller_node.aid}"
            assert executor.callers == [str(caller_node.aid)]


async def test_streaming_delivers_events_as_the_agent_sends_them() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (agent_node, caller_node):
            executor = await serve_demo(agent_node)
            client = await a2a_client(caller_node, agent_node.aid, streaming=True)
            msg = new_text_message("task one two three", role=Role.ROLE_USER)
            events: list[Any] = []
            async for event in client.send_message(SendMessageRequest(message=msg)):
                events.append(event)
                if event.HasField("artifact_update"):
                    # the agent holds the rest back until we have seen the first chunk
                    executor.release.set()
            await client.close()
            kinds = [e.WhichOneof("payload") for e in events]
            assert kinds[0] == "task" and kinds[-1] == "status_update"
            chunks = [e.artifact_update.artifact.parts[0].text for e in events
                      if e.HasField("artifact_update")]  # fmt: skip
            assert chunks == ["one", "two", "three"]
            assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED


async def test_get_and_cancel_a_task_with_the_sdk_client_and_the_json_rpc_client() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (agent_node, caller_node):
            await serve_demo(agent_node)
            started = await agentcall.send_message(caller_node, agent_node.aid, "wait",
                                                   return_immediately=True)  # fmt: skip
            assert started.kind == "task" and started.state in ("submitted", "working")
            client = await a2a_client(caller_node, agent_node.aid)
            task = await client.get_task(GetTaskRequest(id=started.task_id))
            assert task.id == started.task_id
            assert task.status.state in (TaskState.TASK_STATE_SUBMITTED,
                                         TaskState.TASK_STATE_WORKING)  # fmt: skip
            canceled = await client.cancel_task(CancelTaskRequest(id=started.task_id))
            assert canceled.status.state == TaskState.TASK_STATE_CANCELED
            await client.close()
            again = await agentcall.get_task(caller_node, agent_node.aid, started.task_id)
            assert again.state == "canceled" and again.task_id == started.task_id
            # a second task, cancelled through the JSON-RPC client
            other = await agentcall.send_message(caller_node, agent_node.aid, "wait",
                                                 return_immediately=True)  # fmt: skip
            gone = await agentcall.cancel_task(caller_node, agent_node.aid, other.task_id)
            assert gone.state == "canceled"
            with pytest.raises(AgentCallError, match="GetTask") as info:
                await agentcall.get_task(caller_node, agent_node.aid, "no-such-task")
            assert info.value.rpc_code is not None


async def test_completed_task_reply_carries_the_artifact_text() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (agent_node, caller_node):
            executor = await serve_demo(agent_node)
            executor.release.set()
            reply = await agentcall.send_message(caller_node, agent_node.aid, "task a b")
            assert (reply.kind, reply.state) == ("task", "completed")
            assert reply.text.split() == ["a", "b"]


async def test_profile_record_has_the_card_hash_and_skills_are_discoverable() -> None:
    with anyio.fail_after(60):
        async with network(3, publish=True) as (agent_node, caller_node, _):
            await serve_demo(agent_node, "demo.translate")
            raw = await caller_node.fetch(agent_node.aid, "GET", agentcall.CARD_PATH)
            profile = await caller_node.profile(agent_node.aid)
            assert profile.card_hash == hashlib.sha256(raw.body).digest()
            assert profile.protocols == ("a2a",) and profile.skills == ("demo.translate",)
            assert profile.name == "demo"
            found = await caller_node.discover("demo.translate", protocols=["a2a"])
            assert [e.aid for e in found] == [agent_node.aid]
            assert found[0].protocols == ("a2a",)


@contextlib.asynccontextmanager
async def lone_node(seed: Node) -> AsyncIterator[Node]:
    cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=("{}:{}".format(*seed.local_addr),))
    async with Node(cfg) as node:
        yield node


async def test_errors_unknown_aid_and_offline_agent_suggest_the_mailbox() -> None:
    with anyio.fail_after(90):
        async with network(3, publish=True) as (seed, caller_node, _):
            stranger = Identity.from_key(SigningKey.generate(SeededRng(7))).aid
            with pytest.raises(NotFound, match="send_mailbox"):
                await agentcall.send_message(caller_node, stranger, "hi")
            async with lone_node(seed) as gone:
                await serve_demo(gone)
                gone_aid = gone.aid
            with pytest.raises(Unreachable, match="send_mailbox"):
                await agentcall.send_message(caller_node, gone_aid, "hi", connect_timeout_s=2)
            with pytest.raises(ToolFailure) as info:
                await call_tool(caller_node, "call_agent", {"to": str(stranger), "text": "x"})
            assert info.value.code == "NOT_FOUND" and "send_mailbox" in info.value.message
            # a plain HTTP service is not an A2A agent: a clear error, not a crash
            seed.serve(http=_plain)
            with pytest.raises(AgentCallError, match="not an A2A agent"):
                await agentcall.send_message(caller_node, seed.aid, "hi")


async def _plain(request: Any) -> Any:
    from a2al_mcp.node.http import HttpResponse

    return HttpResponse(200, (("content-type", "text/plain"),), b"hello")


async def test_skill_anycast_skips_an_offline_agent() -> None:
    with anyio.fail_after(120):
        async with network(3, publish=True) as (seed, caller_node, live):
            await serve_demo(live, "demo.anycast")
            async with lone_node(seed) as gone:
                await serve_demo(gone, "demo.anycast")  # registered last: the freshest
                gone_aid = gone.aid
            order: list[Aid] = []
            for _ in range(50):  # precondition: both registrations are on the network
                order = [e.aid for e in await agentcall.candidates(caller_node, "demo.anycast")]
                if len(order) == 2:
                    break
                await anyio.sleep(0.2)
            assert order == [gone_aid, live.aid]
            reply, failed = await agentcall.call_skill(caller_node, "demo.anycast", "ping",
                                                       connect_timeout_s=2)  # fmt: skip
            assert reply.agent == live.aid and reply.text == f"echo ping from {caller_node.aid}"
            assert [f.aid for f in failed] == [gone_aid]
            # now live holds a connection from us: it goes first
            order = [e.aid for e in await agentcall.candidates(caller_node, "demo.anycast")]
            assert order[0] == live.aid
            # the same through the SDK client
            msg = new_text_message("sdk", role=Role.ROLE_USER)
            aid, events = await send_to_skill(caller_node, "demo.anycast",
                                              SendMessageRequest(message=msg))  # fmt: skip
            assert aid == live.aid
            assert [get_message_text(e.message) for e in events] == [
                f"echo sdk from {caller_node.aid}"]  # fmt: skip
            # and through the MCP tool
            out = await call_tool(caller_node, "call_agent", {"skill": "demo.anycast",
                                                              "text": "tool"})  # fmt: skip
            assert out["agent"] == str(live.aid) and out["text"] == (
                f"echo tool from {caller_node.aid}")  # fmt: skip


async def test_call_agent_tools() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (agent_node, caller_node):
            await serve_demo(agent_node)
            out = await call_tool(caller_node, "call_agent", {"to": str(agent_node.aid),
                                                              "text": "hey"})  # fmt: skip
            assert out == {"agent": str(agent_node.aid), "kind": "message", "unread_mail": 0,
                           "text": f"echo hey from {caller_node.aid}"}  # fmt: skip
            started = await call_tool(caller_node, "call_agent", {
                "to": str(agent_node.aid), "text": "wait", "wait": False})  # fmt: skip
            task_id = started["task"]["id"]
            assert started["kind"] == "task"
            assert started["task"]["state"] in ("submitted", "working")
            got = await call_tool(caller_node, "get_agent_task", {"aid": str(agent_node.aid),
                                                                  "task_id": task_id})  # fmt: skip
            assert got["task"]["id"] == task_id
            done = await call_tool(caller_node, "cancel_agent_task", {
                "aid": str(agent_node.aid), "task_id": task_id})  # fmt: skip
            assert done["task"]["state"] == "canceled"
            for bad in ({"text": "x"}, {"to": str(agent_node.aid), "skill": "s", "text": "x"},
                        {"skill": "s", "text": "x", "task_id": "t"}):  # fmt: skip
                with pytest.raises(ToolFailure) as info:
                    await call_tool(caller_node, "call_agent", bad)
                assert info.value.code == "BAD_ARGUMENTS"
            with pytest.raises(ToolFailure) as info:
                await call_tool(caller_node, "get_agent_task", {"aid": str(agent_node.aid),
                                                                "task_id": "nope"})  # fmt: skip
            assert info.value.code == "AGENT_ERROR"


async def test_an_asgi_app_that_speaks_a2a_is_served_as_is() -> None:
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore
    from starlette.applications import Starlette

    from tests.adapters.demo_agent import DemoExecutor, card

    with anyio.fail_after(60):
        async with network(2, publish=True) as (agent_node, caller_node):
            handler = DefaultRequestHandler(DemoExecutor(), InMemoryTaskStore(), card("asgi.x"))
            app = Starlette(routes=create_jsonrpc_routes(handler, rpc_url="/"))
            served = await serve_a2a(agent_node, app, card("asgi.x"))
            assert served.topics == ("asgi.x",)
            got = await fetch_card(caller_node, agent_node.aid)  # ours, in front of the app
            assert got.supported_interfaces[0].url == f"a2al://{agent_node.aid}"
            reply, _ = await agentcall.call_skill(caller_node, "asgi.x", "plain")
            assert reply.agent == agent_node.aid and reply.text.startswith("echo plain from")


async def test_get_agent_card_is_checked_against_the_profile_card_hash() -> None:
    from a2al_mcp import AgentProfilePayload, VerificationError

    with anyio.fail_after(60):
        async with network(2, publish=True) as (agent_node, caller_node):
            await serve_demo(agent_node, "demo.card")
            raw = await caller_node.fetch(agent_node.aid, "GET", agentcall.CARD_PATH)
            got = await call_tool(caller_node, "get_agent_card", {"aid": str(agent_node.aid)})
            assert got["checked"] and got["card"]["name"] == "demo"
            assert got["card_hash"] == hashlib.sha256(raw.body).hexdigest()
            # the agent now publishes a profile naming another card: the served one is refused
            forged = AgentProfilePayload(name="demo", protocols=("a2a",), card_hash=b"\1" * 32)
            await agent_node.set_profile(forged)
            with pytest.raises(VerificationError, match="does not match the card hash"):
                await agentcall.get_checked_card(caller_node, agent_node.aid)
            with pytest.raises(ToolFailure) as info:
                await call_tool(caller_node, "get_agent_card", {"aid": str(agent_node.aid)})
            assert info.value.code == "VERIFY"
            assert str(info.value).startswith("VERIFY: the card ")


async def test_the_card_is_cacheable_and_lists_every_binding_served() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (agent_node, caller_node):
            await serve_demo(agent_node, "demo.bindings")
            resp = await caller_node.fetch(agent_node.aid, "GET", agentcall.CARD_PATH)
            headers = {k.lower(): v for k, v in resp.headers}
            assert "max-age=300" in headers["cache-control"]
            etag = [("if-none-match", headers["etag"])]
            again = await caller_node.fetch(agent_node.aid, "GET", agentcall.CARD_PATH,
                                            headers=etag)  # fmt: skip
            assert again.status == 304
            assert "max-age=300" in dict(again.headers)["cache-control"]
            ifaces = json.loads(resp.body)["supportedInterfaces"]
            assert sorted(i["protocolBinding"] for i in ifaces) == ["HTTP+JSON", "JSONRPC"]
            assert {i["url"] for i in ifaces} == {f"a2al://{agent_node.aid}"}
            # both bindings answer: HTTP+JSON's message:send beside JSON-RPC at /
            body = {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "x"}]}}
            rest = await caller_node.fetch(agent_node.aid, "POST", "/message:send",
                                           headers=[("content-type", "application/json"),
                                                    ("a2a-version", "1.0")],
                                           body=json.dumps(body).encode())  # fmt: skip
            assert rest.status == 200, rest.body
            sent = json.loads(rest.body)["message"]["parts"][0]["text"]
            assert sent == f"echo x from {caller_node.aid}"
            rpc = await agentcall.send_message(caller_node, agent_node.aid, "y")
            assert rpc.text == f"echo y from {caller_node.aid}"


def test_card_for_names_one_interface_per_binding() -> None:
    from a2al_mcp.adapters.a2a import card_for

    from tests.adapters.demo_agent import card

    aid = Identity.from_key(SigningKey.generate(SeededRng(11))).aid
    one = card_for(card(), aid)
    assert [i.protocol_binding for i in one.supported_interfaces] == ["JSONRPC"]
    two = card_for(card(), aid, ("JSONRPC", "HTTP+JSON"))
    assert [i.protocol_binding for i in two.supported_interfaces] == ["JSONRPC", "HTTP+JSON"]
    with pytest.raises(ValueError, match="bindings must be"):
        card_for(card(), aid, ("GRPC",))
