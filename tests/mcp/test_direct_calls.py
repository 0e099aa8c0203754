"""Tool calls answered by the line front itself (mcp_server/direct.py): the same answers as
through the SDK, progress, cancellation, and what is left to the SDK."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from a2al_mcp.mcp_server import FrontStats, build_server
from a2al_mcp.mcp_server._compat import MCP_MAJOR, run_stream
from a2al_mcp.mcp_server.direct import DirectCalls, Progress
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio

if MCP_MAJOR != 2:  # pragma: no cover - on mcp 1.x every call goes through the SDK
    pytest.skip("direct calls are served with mcp 2.x", allow_module_level=True)

_INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip
_UNKNOWN_AID = "a0" + "1" * 40


def _call(msg_id: Any, name: Any, arguments: Any = None, **params: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, **params}
    if arguments is not None:
        p["arguments"] = arguments
    return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": p}


_SCRIPT = [
    _call(5, "tunnel_list", {}),  # before initialize: the SDK refuses it
    _INIT,
    _call("a", "tunnel_list", {}),  # answered before notifications/initialized too
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    _call(1, "tunnel_list", {}),
    _call(2, "tunnel_list", {"x": 1}),
    _call(3, "nope"),
    _call(4, "resolve", {"aid": _UNKNOWN_AID}),
    _call(6, "resolve", {"aid": _UNKNOWN_AID}, _meta={"progressToken": 7}),
    _call(8, "tunnel_list", {}, _meta={"other": 1}),
    _call(10, "tunnel_list"),
    {"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {}},
    _call(12, "tunnel_list", []),
    _call(13, "status", {}),
    _call(14, "read_mailbox", {"limit": "3"}),
    _call(15, "identity_export", {}),
    {"jsonrpc": "2.0", "id": 16, "method": "ping"},
]


async def _session(direct: bool, tmp: Path) -> list[str]:
    """The lines a node's MCP session answers to _SCRIPT (one message at a time, waiting for
    each request's answer)."""
    async with network(1) as (node,):
        stats = FrontStats()
        server = build_server(node, front_stats=stats)
        # loopback TCP, not a Unix socket: every OS has it (the simulated Windows run too)
        tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
        listener = cast(anyio.abc.SocketListener, tcp.listeners[0])
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        lines: list[str] = []
        async with anyio.create_task_group() as tg:

            async def serve_one() -> None:
                async with await listener.accept() as conn:
                    await run_stream(server, conn, stats=stats, direct=direct)

            tg.start_soon(serve_one)
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                buf = b""
                for msg in _SCRIPT:
                    await client.send(json.dumps(msg).encode() + b"\n")
                    while "id" in msg:
                        if b"\n" not in buf:
                            buf += await client.receive()
                            continue
                        line, buf = buf.split(b"\n", 1)
                        lines.append(line.decode())
                        if json.loads(line).get("id") == msg["id"]:
                            break
            await listener.aclose()
        node_aid, addr = str(node.aid), "{}:{}".format(*node.local_addr)
    text = [line.replace(node_aid, "AID").replace(addr, "ADDR") for line in lines]
    # the status tool's counters move between runs (two different nodes)
    text = [re.sub(r'\\?"(uptime_s|received|sent)\\?": ?[0-9.]+', "N", t) for t in text]
    return text


async def test_direct_answers_are_the_sdks(tmp_path: Path, monkeypatch: Any) -> None:
    taken: list[DirectCalls] = []
    real_take = DirectCalls.take

    async def spy(self: DirectCalls, msg: dict[str, Any], send: Any) -> bool:
        if self not in taken:
            taken.append(self)
        return await real_take(self, msg, send)

    monkeypatch.setattr(DirectCalls, "take", spy)
    with anyio.fail_after(30):
        through_sdk = await _session(False, tmp_path)
        assert not taken  # direct=False: every message went to the SDK
        direct = await _session(True, tmp_path)
    assert len(taken) == 1 and taken[0].taken == 13  # the calls after initialize, ping
    assert direct == through_sdk
    progress = [json.loads(x) for x in direct if '"notifications/progress"' in x]
    assert progress and progress[0]["params"]["progressToken"] == 7
    export = json.loads(next(x for x in direct if x.startswith('{"jsonrpc":"2.0","id":15')))
    assert export["result"]["isError"] and "USAGE" in export["result"]["content"][0]["text"]


class _Gate:
    """A tool answer that waits until released (or cancelled), recording progress."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.started = anyio.Event()
        self.cancelled = False

    async def __call__(self, name: Any, arguments: Any, progress: Progress | None) -> Any:
        if progress is not None:
            await progress(0, 1, "working")
        self.started.set()
        try:
            await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        return {"content": [{"text": name, "type": "text"}], "isError": False}


async def _opened(calls: DirectCalls, sent: list[str]) -> None:
    async def send(text: str) -> None:
        sent.append(text)

    assert not await calls.take(_INIT, send)  # initialize: the SDK's
    calls.note_outgoing(json.dumps({"jsonrpc": "2.0", "id": 0, "result": {}}))


async def test_a_cancelled_call_is_not_answered() -> None:
    gate, sent = _Gate(), []

    async def send(text: str) -> None:
        sent.append(text)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            calls = DirectCalls(gate, tg)
            await _opened(calls, sent)
            assert await calls.take(_call(1, "tunnel_list", {}), send)
            await gate.started.wait()
            other = {"jsonrpc": "2.0", "method": "notifications/cancelled",
                     "params": {"requestId": 99}}  # fmt: skip
            assert not await calls.take(other, send)  # not ours: the SDK's to ignore
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled",
                      "params": {"requestId": 1, "reason": "user"}}  # fmt: skip
            assert await calls.take(cancel, send)
    assert gate.cancelled and sent == []
    assert not await calls.take(cancel, send)  # the call is gone


async def test_what_is_left_to_the_sdk() -> None:
    gate, sent = _Gate(), []

    async def send(text: str) -> None:
        sent.append(text)

    async with anyio.create_task_group() as tg:
        calls = DirectCalls(gate, tg)
        assert not await calls.take(_call(1, "tunnel_list", {}), send)  # not initialized
        assert not await calls.take({"jsonrpc": "2.0", "id": 2, "method": "ping"}, send)
        calls.note_outgoing('{"jsonrpc":"2.0","id":0,"result":{}}')  # no initialize seen
        assert not calls.ready
        await _opened(calls, sent)
        calls.note_outgoing("not json")
        assert calls.ready
        left = [
            _call(3, "identity_export", {}),  # elicits through the SDK's session
            _call(4, "tunnel_list", {}, _meta=[1]),
            _call(5, "tunnel_list", {}, _meta={"progressToken": {"a": 1}}),
            _call(6, "tunnel_list", {}, _meta={"progressToken": True}),
            {"jsonrpc": "2.0", "id": 7, "method": "tools/list"},
            {"jsonrpc": "2.0", "id": 8, "method": "resources/read", "params": {"uri": "x"}},
        ]
        for msg in left:
            assert not await calls.take(msg, send), msg
        assert await calls.take(_call(9, "tunnel_list", {}, _meta={"progressToken": "t"}), send)
        assert not await calls.take(_call(9, "tunnel_list", {}), send)  # id still running
        await gate.started.wait()
        gate.release.set()
    answers = [json.loads(x) for x in sent]
    assert answers[0] == {"jsonrpc": "2.0", "method": "notifications/progress",
                          "params": {"progressToken": "t", "progress": 0, "total": 1,
                                     "message": "working"}}  # fmt: skip
    assert answers[1]["id"] == 9 and answers[1]["result"]["content"][0]["text"] == "tunnel_list"
    assert calls.taken == 1


async def test_a_session_runs_at_most_max_in_flight_calls() -> None:
    """A client that floods tool calls without waiting gets ``LIMIT`` answers past the
    bound instead of a task per call; the running ones still answer."""
    release = anyio.Event()
    sent: list[dict[str, Any]] = []

    async def answer(name: Any, arguments: Any, progress: Progress | None) -> dict[str, Any]:
        await release.wait()
        return {"content": [], "isError": False}

    async def send(line: str) -> None:
        sent.append(json.loads(line))

    async with anyio.create_task_group() as tg:
        calls = DirectCalls(answer, tg, max_in_flight=2)
        calls.note_outgoing("")  # not yet initialized: nothing is taken
        await calls.take({"jsonrpc": "2.0", "id": 0, "method": "initialize"}, send)
        calls.note_outgoing(json.dumps({"jsonrpc": "2.0", "id": 0, "result": {}}))
        for i in range(1, 5):
            call = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                    "params": {"name": "status", "arguments": {}}}  # fmt: skip
            assert await calls.take(call, send)
        await anyio.sleep(0.05)
        assert [m["id"] for m in sent] == [3, 4] and calls.refused == 2
        assert all(m["error"]["message"].startswith("LIMIT: 2 tool calls") for m in sent)
        release.set()
    assert sorted(m["id"] for m in sent if "result" in m) == [1, 2]
