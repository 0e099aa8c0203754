"""Answers without the SDK, the same as the SDK's: tool calls answered by the line front
itself in a session the SDK serves (mcp_server/direct.py: progress, cancellation, what is left
to the SDK), and the node's own sessions (mcp_server/session.py), which answer every message
of a handshake-era session, replayed here through both and compared field by field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from a2al_mcp.mcp_server import FrontStats, ServerCore, build_server
from a2al_mcp.mcp_server._compat import MCP_MAJOR, run_stream
from a2al_mcp.mcp_server.direct import DirectCalls, Progress
from a2al_mcp.mcp_server.line_front import serve_stream
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio

if MCP_MAJOR != 2:  # pragma: no cover - on mcp 1.x every call goes through the SDK
    pytest.skip("direct calls are served with mcp 2.x", allow_module_level=True)

INIT_PARAMS = {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "t", "version": "1"}}  # fmt: skip
_INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT_PARAMS}
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


# --- the node's own sessions (mcp_server/session.py): no SDK at all, the SDK's answers

_ELICITING = {"protocolVersion": "2025-06-18", "capabilities": {"elicitation": {}},
              "clientInfo": {"name": "replay", "version": "1"}}  # fmt: skip
_MODERN = {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}


def _rq(msg_id: Any, method: str, params: Any = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def _nt(method: str, params: Any = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg


NOTE, CANCEL = "a note arrives", "cancel the call waiting for its elicitation"

_REPLAY: list[Any] = [
    _nt("notifications/progress", {"progressToken": 1, "progress": 1}),  # before: dropped
    _rq(0, "initialize", _ELICITING),
    _rq(1, "tools/list"),  # before notifications/initialized: answered
    _nt("notifications/initialized"),
    _rq(2, "ping"),
    _rq(3, "ping", {"_meta": {"progressToken": 3}, "x": 1}),
    _rq(4, "ping", {"_meta": [1]}),
    _rq(5, "tools/list", {"cursor": "abc"}),
    _rq(6, "tools/list", {"cursor": 3}),
    _rq(7, "resources/list"),
    _rq(8, "resources/list", {"cursor": None}),
    _rq(9, "resources/templates/list"),
    _rq(10, "resources/read", {"uri": "a2al://inbox"}),
    _rq(11, "resources/read", {"uri": "a2al://status", "extra": 1}),
    _rq(12, "resources/read", {"uri": "a2al://nope"}),
    _rq(13, "resources/read", {}),
    _rq(14, "resources/read", {"uri": 5}),
    _rq(15, "resources/subscribe", {"uri": "a2al://inbox"}),
    _rq(16, "resources/subscribe", {"uri": "a2al://elsewhere"}),
    _rq(17, "resources/subscribe", {}),
    NOTE,  # notifications/resources/updated to the subscribed session
    _rq(18, "resources/read", {"uri": "a2al://inbox"}),
    _rq(19, "resources/unsubscribe", {"uri": "a2al://inbox"}),
    _rq(20, "resources/unsubscribe", {"uri": "a2al://elsewhere"}),
    _rq(21, "resources/unsubscribe", {}),
    _rq(22, "prompts/list"),
    _rq(23, "prompts/get", {"name": "x"}),
    _rq(24, "prompts/get", {}),
    _rq(25, "prompts/get", {"name": "x", "arguments": {"a": 1}}),
    _rq(26, "logging/setLevel", {"level": "info"}),  # not served
    _rq(27, "logging/setLevel", {"level": "loud"}),
    _rq(
        28,
        "completion/complete",
        {"ref": {"type": "ref/prompt", "name": "x"}, "argument": {"name": "a", "value": "b"}},
    ),
    _rq(29, "completion/complete", {}),
    _rq(30, "subscriptions/listen", {}),  # 2026-07-28 only
    _rq(31, "server/discover", {}),
    _rq(32, "foo/bar"),
    _nt("foo/bar"),
    _nt("notifications/roots/list_changed"),
    _rq(33, "tools/list", {"_meta": _MODERN}),
    _rq(34, "resources/read", {"uri": "a2al://status", "_meta": _MODERN}),
    _call(35, "tunnel_list", {}),
    _call(36, "tunnel_list", {"x": 1}),
    _call(37, "nope"),
    _call(38, 5, {}),
    _call(39, "tunnel_list", []),
    _rq(40, "tools/call", {}),
    _rq(41, "tools/call"),
    _call(42, "tunnel_list", {}, _meta=[1]),
    _call(43, "tunnel_list", {}, _meta={"progressToken": {"a": 1}}),
    _call(44, "tunnel_list", {}, _meta={"progressToken": True}),
    _call(45, "tunnel_list", {}, _meta={"progressToken": 1.0}),
    _call(46, "tunnel_list", {}, task=5),
    _call(47, "tunnel_list", {}, task={"ttl": 5}),
    _call(48, "status", {}),
    _call(49, "resolve", {"aid": _UNKNOWN_AID}, _meta={"progressToken": "p"}),
    _call(50, "read_mailbox", {"limit": "3"}),
    _call(51, "identity_export", {}),  # accepted
    _call(52, "identity_export", {}),  # declined
    _call(53, "identity_export", {}),  # accepted, too short
    _call(54, "identity_export", {}),  # the client answers with an error
    _call(55, "identity_export", {}),  # cancelled
    _call(56, "identity_export", {}),  # accepted without content
    _call(57, "identity_export", {}),  # not an elicitation result
    _call(58, "identity_export", {"x": 1}),  # refused before anything is asked
    _call(59, "identity_export", {"aid": _UNKNOWN_AID}),  # asked, then NOT_FOUND
    CANCEL,  # identity_export (id 60) waits for the user: cancelled, never answered
    _rq(61, "ping"),
    {"jsonrpc": "2.0", "id": 99, "result": {}},  # answers to nothing: dropped
    {"jsonrpc": "2.0", "id": 98, "error": {"code": 1, "message": "x"}},
    _rq(
        62,
        "initialize",
        {
            "protocolVersion": "2024-11-05",
            "capabilities": {},
            "clientInfo": {"name": "again", "version": "2"},
        },
    ),
    _call(63, "identity_export", {}),  # no elicitation capability now: USAGE
    _rq(64, "initialize", {}),
    _rq("last", "ping"),
]
_ELICIT_ANSWERS: list[dict[str, Any]] = [
    {"result": {"action": "accept", "content": {"passphrase": "correct horse"}}},
    {"result": {"action": "decline"}},
    {"result": {"action": "accept", "content": {"passphrase": "short"}}},
    {"error": {"code": -1, "message": "the user closed the dialog", "data": {"why": 1}}},
    {"result": {"action": "cancel"}},
    {"result": {"action": "accept"}},
    {"result": {"action": "bogus"}},
    {"result": {"action": "accept", "content": {"passphrase": "long enough"}}},
]
_VOLATILE = {"uptime_s", "received", "sent", "duplicates", "polls", "stored", "export", "salt",
             "nonce", "ciphertext", "received_at", "received_at_epoch"}  # fmt: skip


def _normal(value: Any) -> Any:
    """``value`` with what differs between two runs (two networks) replaced; JSON text inside
    (a tool's text result, a resource) compared as JSON."""
    if isinstance(value, dict):
        note = "from" in value  # a mailbox note: its id is random too
        return {k: "N" if k in _VOLATILE or (note and k == "id") else _normal(v)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, str) and value.startswith("{"):
        try:
            return _normal(json.loads(value))
        except ValueError:
            return value
    return value


async def _replay(direct: bool, version: str) -> tuple[list[Any], ServerCore | None]:
    """What a node's MCP session answers to _REPLAY: through the SDK's server (``run_stream``
    with no direct answers), or through the node's own session (``serve_stream``)."""
    lines: list[str] = []
    answers = list(_ELICIT_ANSWERS)
    core: ServerCore | None = None
    async with network(2, publish=True) as (node, other):
        stats = FrontStats()
        tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
        listener = cast(anyio.abc.SocketListener, tcp.listeners[0])
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        if direct:
            core = ServerCore(node, front_stats=stats)
        else:
            server = build_server(node, front_stats=stats)

        async def serve_one() -> None:
            async with await listener.accept() as conn:
                if core is not None:
                    await serve_stream(core, conn, stats=stats)
                else:
                    await run_stream(server, conn, stats=stats, direct=False)

        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_one)
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                buf = b""

                async def send(msg: dict[str, Any]) -> None:
                    await client.send(json.dumps(msg).encode() + b"\n")

                async def receive() -> dict[str, Any]:
                    nonlocal buf
                    while b"\n" not in buf:
                        buf += await client.receive()
                    line, buf = buf.split(b"\n", 1)
                    lines.append(line.decode())
                    got: dict[str, Any] = json.loads(line)
                    return got

                for step in _REPLAY:
                    if isinstance(step, dict) and step.get("id") == 0:  # the initialize
                        step = {**step, "params": {**step["params"], "protocolVersion": version}}
                    if step == NOTE:
                        await other.send_mailbox(node.aid, "a note")
                        while (await receive()).get("method") != "notifications/resources/updated":
                            pass
                        continue
                    if step == CANCEL:
                        await send(_call(60, "identity_export", {}))
                        asked = await receive()
                        assert asked["method"] == "elicitation/create"
                        await send(_nt("notifications/cancelled", {"requestId": 60}))
                        await send(
                            {"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "decline"}}
                        )  # too late: dropped
                        continue
                    await send(step)
                    while "id" in step and "method" in step:
                        got = await receive()
                        if got.get("method") == "elicitation/create":
                            await send({"jsonrpc": "2.0", "id": got["id"], **answers.pop(0)})
                        elif "method" not in got and got.get("id") == step["id"]:
                            break
            await listener.aclose()
        node_aid, addr = str(node.aid), "{}:{}".format(*node.local_addr)
        other_aid = str(other.aid)
    text = [x.replace(node_aid, "AID").replace(other_aid, "OTHER").replace(addr, "ADDR")
            for x in lines]  # fmt: skip
    return [_normal(json.loads(x)) for x in text], core


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
async def test_the_nodes_own_session_answers_as_the_sdk(version: str) -> None:
    """One handshake-era session, every method a desktop client sends and the errors of
    those it should not, replayed through the SDK and through the SDK-free session: the same
    messages, field for field (JSON objects compared; key order is not MCP's business)."""
    with anyio.fail_after(120):
        through_sdk, _ = await _replay(direct=False, version=version)
        direct, core = await _replay(direct=True, version=version)
    assert core is not None and not core.sdk_built  # the SDK's server was never built
    assert len(direct) == len(through_sdk)
    for sdk_msg, own_msg in zip(through_sdk, direct, strict=True):
        assert own_msg == sdk_msg
    by_id = {m.get("id"): m for m in direct if "method" not in m}
    assert by_id[0]["result"]["serverInfo"]["name"] == "a2al"
    assert by_id[0]["result"]["protocolVersion"] == version
    assert any(m.get("method") == "notifications/resources/updated" for m in direct)
    assert any(m.get("method") == "notifications/progress" for m in direct)
    assert by_id[51]["result"]["structuredContent"]["export"] == "N"  # exported
    assert by_id[54]["error"]["message"] == "the user closed the dialog"
    assert 60 not in by_id  # cancelled: no answer
    assert by_id[32]["error"]["code"] == -32601 and by_id[6]["error"]["code"] == -32602


async def _first_answer(first: dict[str, Any], *, direct: bool) -> dict[str, Any]:
    """The answer to a session's first message, through the node's own front (``direct``)
    or the SDK's; the SDK's server was built either way."""
    async with network(1) as (node,):
        stats = FrontStats()
        core = ServerCore(node, front_stats=stats)
        tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
        listener = cast(anyio.abc.SocketListener, tcp.listeners[0])
        port = listener.extra(anyio.abc.SocketAttribute.local_port)

        async def serve_one() -> None:
            async with await listener.accept() as conn:
                if direct:
                    await serve_stream(core, conn, stats=stats)
                else:
                    await run_stream(core.sdk_server(), conn, direct=False)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(serve_one)
                async with await anyio.connect_tcp("127.0.0.1", port) as client:
                    await client.send(json.dumps(first).encode() + b"\n")
                    buf = b""
                    while b"\n" not in buf:
                        buf += await client.receive()
                await listener.aclose()
        assert core.sdk_built
    reply: dict[str, Any] = json.loads(buf.split(b"\n")[0])
    return reply


@pytest.mark.parametrize(
    "first",
    [
        _rq(1, "ping"),  # a request before initialize
        _rq(1, "server/discover", {"_meta": {**_MODERN, "io.modelcontextprotocol/clientInfo":
                                             {"name": "m", "version": "1"},
                                             "io.modelcontextprotocol/clientCapabilities": {}}}),
        _rq(1, "initialize", {**INIT_PARAMS, "_meta": {"x": 1}}),  # not a plain initialize
    ],
)  # fmt: skip
async def test_other_sessions_go_to_the_sdk(first: dict[str, Any]) -> None:
    """A session that does not open with a plain ``initialize`` is the SDK's from its first
    message (its server built then), and answered as the SDK answers it."""
    answers = [await _first_answer(first, direct=direct) for direct in (False, True)]
    assert answers[0] == answers[1] and answers[0]["id"] == 1


async def test_a_line_session_bounds_its_calls_and_refuses_a_reused_id() -> None:
    """The node's own session keeps ``limits.mcp_calls_in_flight``: past it a call gets a
    ``LIMIT`` error, and a call reusing the id of one still running is refused."""
    from a2al_mcp.config import LimitsConfig
    from a2al_mcp.mcp_server.session import LineSession

    gate = _Gate()
    sent: list[dict[str, Any]] = []

    async def send(line: str) -> None:
        sent.append(json.loads(line))

    async with network(1) as (node,):
        core = ServerCore(node)
        core.answer = gate
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                session = LineSession(core, send, tg, LimitsConfig(mcp_calls_in_flight=2))
                await session.handle(_INIT)
                for msg_id in (1, 2, 2, 3):
                    await session.handle(_call(msg_id, "tunnel_list", {}))
                await gate.started.wait()
                errors = [m for m in sent if "error" in m]
                assert [m["id"] for m in errors] == [2, 3]
                assert "still in use" in errors[0]["error"]["message"]
                assert errors[1]["error"]["message"].startswith("LIMIT: 2 tool calls")
                gate.release.set()
    answered = sorted(m["id"] for m in sent if "result" in m and m["id"] != 0)
    assert answered == [1, 2] and session.taken == 2
