"""The durable outbox (issue 19): a message for an A2A agent that is offline is kept and
delivered when it comes back — real nodes on loopback, a real a2a-sdk agent, the sender
restarted in between (and killed with SIGKILL in its retry loop, in its own process); TTL
expiry, the per-target and total caps, cancel, and the receiver dropping a repeated
``messageId``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

pytest.importorskip("a2a", reason="needs the a2a extra (a2a-sdk)")

from a2al_mcp import (
    Aid,
    Identity,
    LimitExceeded,
    NodeConfig,
    SigningKey,
    SystemClock,
    SystemRng,
    agentcall,
    call_tool,
)
from a2al_mcp.agentcall import DELIVERY_HEADER
from a2al_mcp.mcp_server.catalogue import inbox_text
from a2al_mcp.node import Node
from a2al_mcp.node.outbox import Delivery, Outbox, OutboxConfig
from a2al_mcp.toolspec import ToolFailure
from tests.adapters.demo_agent import DemoExecutor, serve_demo

pytestmark = pytest.mark.anyio
SENDER = Path(__file__).with_name("sender.py")


def _identity() -> tuple[str, Identity]:
    seed = SystemRng().bytes(32)
    return seed.hex(), Identity.from_key(SigningKey(seed))


@contextlib.asynccontextmanager
async def _seed() -> AsyncIterator[tuple[Node, str]]:
    async with Node(NodeConfig(listen_addr="127.0.0.1:0")) as seed:
        yield seed, "{}:{}".format(*seed.local_addr)


def _node(bootstrap: str, ident: Identity | None = None, data_dir: Path | None = None) -> Node:
    cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(bootstrap,), data_dir=data_dir)
    return Node(cfg, ident)


async def _agent(bootstrap: str, ident: Identity) -> tuple[Node, DemoExecutor]:
    node = _node(bootstrap, ident)
    await node.__aenter__()
    return node, await serve_demo(node)


async def _until(node: Node, delivery_id: str, state: str) -> Delivery:
    while (d := node.outbox().get(delivery_id)).state != state:
        assert d.state == "queued", d
        await anyio.sleep(0.05)
    return d


async def test_a_queued_message_is_delivered_when_the_agent_starts(tmp_path: Path) -> None:
    _, target = _identity()
    _, me = _identity()
    with anyio.fail_after(120):
        async with _seed() as (_, boot):
            async with _node(boot, me, tmp_path) as sender:
                queued = await call_tool(sender, "call_agent", {
                    "to": str(target.aid), "text": "hello later", "queue_if_offline": True,
                    "timeout_s": 5})  # fmt: skip
                assert queued["kind"] == "queued" and queued["agent"] == str(target.aid)
                did = queued["delivery_id"]
                listed = await call_tool(sender, "outbox_list", {"state": "queued"})
                assert [d["delivery_id"] for d in listed["deliveries"]] == [did]
            mode = (tmp_path / "outbox.db").stat().st_mode & 0o777
            assert oct(mode) == "0o600"
            async with _node(boot, me, tmp_path) as sender:  # restarted: still queued
                assert sender.outbox().get(did).state == "queued"
                agent, executor = await _agent(boot, target)
                try:
                    done = await _until(sender, did, "delivered")
                finally:
                    await agent.aclose()
                assert executor.callers == [str(me.aid)]  # once, from us
                reply = agentcall.delivery_reply(done)
                assert reply is not None and reply.text == f"echo hello later from {me.aid}"
                shown = (await call_tool(sender, "outbox_list", {}))["deliveries"][0]
                assert shown["state"] == "delivered" and shown["reply"]["text"] == reply.text
                inbox = json.loads(await inbox_text(sender))
                assert inbox["outbox_replies"][0]["delivery_id"] == did


async def _line(proc: anyio.abc.Process) -> str:
    assert proc.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        line += await proc.stdout.receive(1)
    return line.decode().strip()


async def test_sigkill_in_the_retry_loop_then_delivered_exactly_once(tmp_path: Path) -> None:
    seed_hex, _me = _identity()
    _, target = _identity()
    with anyio.fail_after(180):
        async with _seed() as (_, boot):
            argv = [sys.executable, str(SENDER), "queue", seed_hex, str(tmp_path), boot,
                    str(target.aid)]  # fmt: skip
            proc = await anyio.open_process(argv, stderr=None)
            try:
                kind, did = (await _line(proc)).split()
                assert kind == "queued"
                assert await _line(proc) == "tried"  # it is in its retry loop
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
                await proc.aclose()
            agent, executor = await _agent(boot, target)
            try:
                argv = [sys.executable, str(SENDER), "resume", seed_hex, str(tmp_path), boot, did]
                proc = await anyio.open_process(argv, stderr=None)
                try:
                    assert await _line(proc) == "delivered"
                    assert await proc.wait() == 0
                finally:
                    await proc.aclose()
            finally:
                await agent.aclose()
            assert executor.callers == [str(_me.aid)]  # exactly once to the handler


async def test_a_message_expires_after_its_ttl() -> None:
    _, target = _identity()
    ended: list[Delivery] = []
    with anyio.fail_after(60):
        async with _seed() as (_, boot), _node(boot) as sender:
            sender.outbox().listen(ended.append)
            queued = await call_tool(sender, "call_agent", {
                "to": str(target.aid), "text": "too late", "queue_if_offline": True,
                "queue_ttl_s": 1, "timeout_s": 5})  # fmt: skip
            expired = await _until(sender, queued["delivery_id"], "expired")
            assert ended == [expired]
            assert sender.outbox().statistics().expired == 1
            listed = await call_tool(sender, "outbox_list", {"state": "expired"})
            assert listed["deliveries"][0]["delivery_id"] == queued["delivery_id"]


async def test_the_caps_refuse_with_a_clear_error() -> None:
    _, a = _identity()
    _, b = _identity()
    _, c = _identity()
    with anyio.fail_after(60):
        async with _seed() as (_, boot), _node(boot) as sender:
            box = sender.outbox()
            box.config = dataclasses.replace(box.config, per_target_max=2, total_max=3)
            ask = {"to": str(a.aid), "text": "x", "queue_if_offline": True, "timeout_s": 5}
            for _ in range(2):
                assert (await call_tool(sender, "call_agent", ask))["kind"] == "queued"
            with pytest.raises(ToolFailure) as per_target:
                await call_tool(sender, "call_agent", ask)
            assert per_target.value.code == "LIMIT"
            assert "2 messages already wait for" in str(per_target.value)
            assert "outbox.per_target_max" in str(per_target.value)
            agentcall.queue_message(sender, b.aid, "y")
            with pytest.raises(LimitExceeded, match=r"outbox is full: 3 .*total_max"):
                agentcall.queue_message(sender, c.aid, "z")
            assert box.statistics().queued == 3


async def test_a_canceled_message_is_not_delivered() -> None:
    _, target = _identity()
    with anyio.fail_after(120):
        async with _seed() as (_, boot), _node(boot) as sender:
            ask = {"to": str(target.aid), "queue_if_offline": True, "timeout_s": 5}
            first = await call_tool(sender, "call_agent", {**ask, "text": "drop me"})
            second = await call_tool(sender, "call_agent", {**ask, "text": "keep me"})
            gone = await call_tool(sender, "outbox_cancel", {"delivery_id": first["delivery_id"]})
            assert gone["delivery"]["state"] == "canceled"
            with pytest.raises(ToolFailure, match="canceled already"):
                await call_tool(sender, "outbox_cancel", {"delivery_id": first["delivery_id"]})
            with pytest.raises(ToolFailure) as unknown:
                await call_tool(sender, "outbox_cancel", {"delivery_id": "nope"})
            assert unknown.value.code == "NOT_FOUND"
            agent, executor = await _agent(boot, target)
            try:
                await _until(sender, second["delivery_id"], "delivered")
            finally:
                await agent.aclose()
            assert executor.callers == [str(sender.aid)]  # "keep me" only
            assert sender.outbox().get(first["delivery_id"]).state == "canceled"


async def test_the_agent_drops_a_repeated_message_id() -> None:
    with anyio.fail_after(60):
        async with _seed() as (_, boot), _node(boot) as caller, _node(boot) as agent:
            executor = await serve_demo(agent)
            body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
                "messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "once"}]}}}  # fmt: skip
            plain = [("content-type", "application/json"), ("a2a-version", "1.0")]
            headers = [*plain, (DELIVERY_HEADER, "d-1")]  # an outbox trying again
            answers: list[Any] = []
            for rpc_id in (1, 1, 2):
                body["id"] = rpc_id
                resp = await caller.fetch(agent.aid, "POST", "/", headers=headers,
                                          body=json.dumps(body).encode())  # fmt: skip
                answers.append(json.loads(resp.body))
            assert executor.callers == [str(caller.aid)]  # the handler saw it once
            assert answers[0] == answers[1] and answers[2]["id"] == 2
            assert answers[2]["result"] == answers[0]["result"]
            other = {**body, "params": {"message": {**body["params"]["message"],  # type: ignore[dict-item]
                                                    "messageId": "m-2"}}}  # fmt: skip
            await caller.fetch(agent.aid, "POST", "/", headers=headers,
                               body=json.dumps(other).encode())  # fmt: skip
            assert len(executor.callers) == 2  # a new id goes through
            for _ in range(2):  # without the outbox's header, a repeat is a new message
                await caller.fetch(agent.aid, "POST", "/", headers=plain,
                                   body=json.dumps(body).encode())  # fmt: skip
            assert len(executor.callers) == 4


def test_an_outbox_without_a_data_dir_is_in_memory_and_bounded() -> None:
    async def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("not run")

    box = Outbox(None, OutboxConfig(message_max_bytes=10), clock=SystemClock(), resolve=never,
                 connect=never, fetch=never, connected=lambda *a, **k: False)  # fmt: skip
    me, them = Aid.from_public_key(SigningKey(bytes(32)).public), _identity()[1].aid
    with pytest.raises(LimitExceeded, match="at most 10"):
        box.enqueue(sender=me, target=them, body=b"x" * 11)
    d = box.enqueue(sender=me, target=them, body=b"{}", ttl_s=10**9)
    assert d.state == "queued" and d.expires_at - d.created_at == OutboxConfig().ttl_s
    box.close()
