"""Issue 16's spawn → ``initialize`` on a data directory no node runs on: the stdio proxy
answers at once (the node's answer, built by :mod:`a2al_mcp.hub.handshake`) and starts the
node meanwhile; what the client sends next waits for the node, which is given the client's
``initialize`` first and must answer it the same way.

The proxy runs in this process on pipes; the node it starts is ``fake_node.py`` (the hub's
channel and a scripted MCP side that records every line it gets), so a node that answers
otherwise can be had.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from a2al_mcp._version import __version__
from a2al_mcp.hub.channel import read_info
from a2al_mcp.hub.handshake import answer, sdk_version
from a2al_mcp.hub.init_cache import InitCache
from a2al_mcp.hub.launcher import attach
from a2al_mcp.hub.proxy import MISMATCH_STATUS, StdioProxy

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="select() takes no pipes there")

FAKE = str(Path(__file__).with_name("fake_node.py"))
PARAMS = {"protocolVersion": "2025-06-18", "capabilities": {"roots": {"listChanged": True}},
          "clientInfo": {"name": "test", "version": "1"}}  # fmt: skip
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": PARAMS}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
HANG_GUARD_S = 60.0
"""Not a timing assertion: only how long a broken proxy may hang a test before it fails."""


def fake_node(home: Path, changes: dict[str, Any] | None = None) -> list[str]:
    return [sys.executable, FAKE, str(home), *([json.dumps(changes)] if changes else [])]


def received(home: Path) -> list[dict[str, Any]]:
    path = home / "received.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def stop_fake(home: Path) -> None:
    info = read_info(home)
    if info is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, signal.SIGKILL)
        (home / "mcp.channel").unlink()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    try:
        yield home
    finally:
        stop_fake(home)


class Session:
    """One client of a :class:`StdioProxy` running in a thread, over pipes."""

    def __init__(self, home: Path, command: list[str]) -> None:
        r_in, w_in = os.pipe()
        r_out, w_out = os.pipe()
        self._to = os.fdopen(w_in, "wb")
        self._from = r_out
        self._buf = bytearray()
        self._proxy_in = os.fdopen(r_in, "rb")
        self._proxy_out = os.fdopen(w_out, "wb")
        self.proxy = StdioProxy(home, command=command, stdin=self._proxy_in,
                                stdout=self._proxy_out, start_timeout_s=20)  # fmt: skip
        self.status: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.status = self.proxy.run()
        finally:
            self._proxy_out.close()  # the client reads EOF
            self._proxy_in.close()

    def send(self, msg: dict[str, Any]) -> None:
        self._to.write(json.dumps(msg).encode() + b"\n")
        self._to.flush()

    def read(self) -> dict[str, Any] | None:
        """The proxy's next line, or None when it closed its output."""
        while b"\n" not in self._buf:
            ready, _, _ = select.select([self._from], [], [], HANG_GUARD_S)
            assert ready, "the proxy hung"
            chunk = os.read(self._from, 1 << 16)
            if not chunk:
                return None
            self._buf += chunk
        end = self._buf.index(b"\n") + 1
        line = bytes(self._buf[:end])
        del self._buf[:end]
        return json.loads(line)

    def close(self) -> int | None:
        with contextlib.suppress(BrokenPipeError):
            self._to.close()
        self._thread.join(HANG_GUARD_S)
        assert not self._thread.is_alive(), "the proxy did not end"
        os.close(self._from)
        for child in self.proxy.children:  # the node it started: stopped, and reaped
            child.kill()
            child.wait()
        return self.status


def test_initialize_is_answered_before_any_node_runs(home: Path) -> None:
    """The answer cannot come from a node: the node command exits at once without opening
    a channel. The next request gets the start's failure."""
    s = Session(home, [sys.executable, "-c", "pass"])
    s.send(INITIALIZE)
    got = s.read()
    assert got == {"jsonrpc": "2.0", "id": 1, "result": answer(PARAMS, sdk=sdk_version())}
    assert got["result"]["serverInfo"] == {"name": "a2al", "title": "A2AL agent network",
                                           "version": __version__}  # fmt: skip
    s.send(INITIALIZED)
    s.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    failed = s.read()
    assert failed is not None and failed["id"] == 2
    assert failed["error"]["message"].startswith("UNREACHABLE: the a2al-mcp node for ")
    assert s.close() == 0


def test_what_follows_the_answer_reaches_the_started_node_once_and_in_order(home: Path) -> None:
    s = Session(home, fake_node(home))
    s.send(INITIALIZE)
    assert s.read() == {"jsonrpc": "2.0", "id": 1, "result": answer(PARAMS, sdk=sdk_version())}
    s.send(INITIALIZED)
    s.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    s.send({"jsonrpc": "2.0", "id": "three", "method": "ping"})
    assert s.read() == {"jsonrpc": "2.0", "id": 2, "result": {"method": "tools/list"}}
    assert s.read() == {"jsonrpc": "2.0", "id": "three", "result": {"method": "ping"}}
    assert s.close() == 0
    lines = received(home)
    assert [(m.get("method"), m.get("id")) for m in lines] == [
        ("initialize", "a2al-proxy-1"),  # the client's, under the proxy's id
        ("notifications/initialized", None),
        ("tools/list", 2),
        ("ping", "three"),
    ]
    assert lines[0]["params"] == PARAMS


@pytest.mark.parametrize("first", ["notifications/initialized", "tools/list"])
def test_a_node_that_answers_otherwise_ends_the_session_and_is_learnt(
    home: Path, first: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The node (same package version) gives other instructions than the client was told:
    the message that waited for it is not delivered (a request gets an error saying why),
    nothing more reaches that node, the proxy exits 1, and the node's answer is what the next
    client gets."""
    other = {"instructions": "something else"}
    s = Session(home, fake_node(home, other))
    s.send(INITIALIZE)
    told = s.read()
    assert told is not None and told["result"]["instructions"] != "something else"
    s.send({"jsonrpc": "2.0", "method": first, **({"id": 2} if first == "tools/list" else {})})
    if first == "tools/list":
        failed = s.read()
        assert failed is not None and failed["id"] == 2, failed
        message = failed["error"]["message"]
        assert message.startswith("UNREACHABLE: the a2al-mcp node answered initialize "
                                  "differently (it differs in instructions: ")  # fmt: skip
        assert message.endswith("start the MCP server again")
    assert s.read() is None  # the session ended
    assert s.close() == MISMATCH_STATUS
    assert "proxy.initialize_mismatch" in caplog.text and "instructions" in caplog.text
    assert [m.get("method") for m in received(home)] == ["initialize"]
    node_answer = InitCache(home, sdk=sdk_version()).lookup(INITIALIZE)
    assert node_answer is not None and node_answer["instructions"] == "something else"

    stop_fake(home)  # no node runs: the next client is answered from what was learnt
    again = Session(home, fake_node(home, other))
    again.send(INITIALIZE)
    assert again.read() == {"jsonrpc": "2.0", "id": 1, "result": node_answer}
    again.send(INITIALIZED)
    again.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert again.read() == {"jsonrpc": "2.0", "id": 2, "result": {"method": "tools/list"}}
    assert again.close() == 0


def test_a_running_node_answers_initialize_itself(home: Path) -> None:
    """A node of another package version runs: it answers (not the proxy, nor a cache of
    this version), and the proxy keeps no answer of another version."""
    cache = InitCache(home, sdk=sdk_version())
    home.mkdir()
    ours = answer(PARAMS, sdk=sdk_version())
    assert ours is not None
    cache.store(INITIALIZE, ours)
    older = dict(ours, serverInfo=dict(ours["serverInfo"], version="0.0.1"))
    changes = {"serverInfo": older["serverInfo"]}
    sock, _, node = attach(home, "status", command=fake_node(home, changes), start_timeout_s=20)
    sock.close()
    assert node is not None
    try:
        s = Session(home, fake_node(home))
        s.send(INITIALIZE)
        assert s.read() == {"jsonrpc": "2.0", "id": 1, "result": older}
        assert s.close() == 0
    finally:
        node.kill()
        node.wait()
    assert [(m.get("method"), m.get("id")) for m in received(home)] == [("initialize", 1)]
    assert cache.lookup(INITIALIZE) == ours  # the older node's answer was not kept


@pytest.mark.parametrize(
    "params",
    [
        dict(PARAMS, capabilities={"roots": {"listChanged": "maybe"}}),  # the SDK refuses
        dict(PARAMS, clientInfo={"name": "no version"}),
        dict(PARAMS, _meta={"progressToken": 1.5}),
    ],
)
def test_an_initialize_the_node_may_refuse_is_given_to_the_node(
    home: Path, params: dict[str, Any]
) -> None:
    s = Session(home, fake_node(home, {"instructions": "from the node"}))
    s.send(dict(INITIALIZE, params=params))
    got = s.read()
    assert got is not None and got["result"]["instructions"] == "from the node"
    assert s.close() == 0
    assert [(m.get("method"), m.get("id")) for m in received(home)] == [("initialize", 1)]


def test_a_restarted_node_that_answers_otherwise_ends_the_session(home: Path) -> None:
    """The node goes away mid-session and the node found next (another package version,
    started by someone else) answers the replayed initialize otherwise: the session ends."""
    s = Session(home, fake_node(home))
    s.send(INITIALIZE)
    assert s.read() is not None
    s.send(INITIALIZED)
    s.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})
    assert s.read() == {"jsonrpc": "2.0", "id": 2, "result": {"method": "ping"}}
    stop_fake(home)
    info_changes = {"serverInfo": {"name": "a2al", "version": "0.0.1"}}
    sock, _, other = attach(home, "status", command=fake_node(home, info_changes),
                            start_timeout_s=20)  # fmt: skip
    sock.close()
    assert other is not None
    try:
        for msg_id in range(3, 10):  # the first call may still meet the old connection
            s.send({"jsonrpc": "2.0", "id": msg_id, "method": "ping"})
            got = s.read()
            assert got is not None and "error" in got, got
            if "differently" in got["error"]["message"]:
                break
        assert "serverInfo" in got["error"]["message"]
        assert s.read() is None
        assert s.close() == MISMATCH_STATUS
    finally:
        other.kill()
        other.wait()
