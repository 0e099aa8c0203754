""":mod:`a2al_mcp.hub.handshake` builds the node's ``initialize`` answer without the node: it
must be the answer a real ``a2al-mcp node run`` gives, for every protocol version the SDK
knows and some it does not, and it is given only for requests the node surely accepts. The
node answers a plain ``initialize`` with the same builder (its own line session,
``mcp_server/session.py``), so the builder is also checked against the SDK's own answer:
the SDK's server, in process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from a2al_mcp._version import __version__
from a2al_mcp.config import LimitsConfig
from a2al_mcp.hub import handshake
from a2al_mcp.hub.channel import connect, read_info
from a2al_mcp.hub.handshake import PROFILES, answer, plain_request, sdk_version
from a2al_mcp.hub.init_cache import InitCache
from a2al_mcp.hub.launcher import attach, node_command
from a2al_mcp.mcp_server._compat import MCP_MAJOR

if MCP_MAJOR != 2:  # pragma: no cover
    pytest.skip("mcp 2.x (the profiles checked here)", allow_module_level=True)

from mcp_types import InitializeRequestParams
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS

from a2al_mcp.mcp_server import app
from a2al_mcp.mcp_server._compat import validate_message
from a2al_mcp.mcp_server.guard import check_message

MAX = LimitsConfig().mcp_message_max_bytes
CLIENT = {"name": "client", "version": "1"}
RICH_CAPABILITIES = {
    "roots": {"listChanged": True},
    "sampling": {"context": {}, "tools": {}},
    "elicitation": {"form": {}, "url": {}},
    "experimental": {"x": {"y": [1, "z", None]}},
    "extensions": {"io.example/ui": {}},
    "tasks": {"list": {}, "requests": {"sampling": {"createMessage": {}}}},
    "somethingNew": {"any": "thing"},
}
RICH_CLIENT = {"name": "Claude", "version": "1.2", "title": "Claude Desktop",
               "websiteUrl": "https://example.org",
               "icons": [{"src": "data:,", "mimeType": "image/png", "sizes": ["48x48"],
                          "theme": "dark"}]}  # fmt: skip


def requests() -> list[dict[str, Any]]:
    versions = [*KNOWN_PROTOCOL_VERSIONS, "1999-01-01", "", "latest", "2025-06-18 "]
    out = [{"protocolVersion": v, "capabilities": {}, "clientInfo": CLIENT} for v in versions]
    out += [{"protocolVersion": v, "capabilities": RICH_CAPABILITIES, "clientInfo": RICH_CLIENT}
            for v in ("2024-11-05", "2025-11-25", "2026-07-28")]  # fmt: skip
    return [{"jsonrpc": "2.0", "id": i, "method": "initialize", "params": p}
            for i, p in enumerate(out)]  # fmt: skip


@pytest.fixture(scope="module")
def node_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real ``a2al-mcp node run`` (loopback, no seeds: it sends nothing)."""
    home = tmp_path_factory.mktemp("node") / "home"
    command = node_command(home, ["--listen", "127.0.0.1:0"], grace_s=30)
    sock, _, child = attach(home, "status", command=command, start_timeout_s=60)
    sock.close()
    try:
        yield home
    finally:
        subprocess.run([sys.executable, "-m", "a2al_mcp", "node", "stop", "--data-dir",
                        str(home)], capture_output=True, timeout=60, check=False)  # fmt: skip
        if child is not None:
            child.wait(60)


def ask_node(home: Path, msg: dict[str, Any]) -> dict[str, Any]:
    """The node's answer to ``msg``, the first message of a new session."""
    info = read_info(home)
    assert info is not None
    sock, _ = connect(info, "mcp", timeout_s=30)
    with sock, sock.makefile("rwb") as f:
        sock.settimeout(30)
        f.write(json.dumps(msg).encode() + b"\n")
        f.flush()
        got: dict[str, Any] = json.loads(f.readline())
    return got


def test_the_installed_sdk_has_a_checked_profile() -> None:
    """A new SDK version needs its profile checked (this file) and added to PROFILES."""
    assert sdk_version() in PROFILES


def test_the_texts_are_the_apps() -> None:
    assert handshake.INSTRUCTIONS == app.INSTRUCTIONS
    assert handshake.TITLE == app.TITLE


@pytest.mark.parametrize("msg", requests(), ids=lambda m: repr(m["params"]["protocolVersion"]))
def test_the_built_answer_is_the_nodes(node_home: Path, msg: dict[str, Any]) -> None:
    line = json.dumps(msg).encode()
    assert plain_request(msg, len(line), max_bytes=MAX)
    got = ask_node(node_home, msg)
    assert got == {"jsonrpc": "2.0", "id": msg["id"],
                   "result": answer(msg["params"], sdk=sdk_version())}  # fmt: skip
    assert got["result"]["serverInfo"]["version"] == __version__


@pytest.mark.anyio
async def test_the_built_answer_is_the_sdks() -> None:
    """Each request as the first message of a session of the SDK's server (no line session,
    no direct answers): the SDK answers what :func:`answer` builds."""
    import anyio
    import anyio.abc

    from a2al_mcp.mcp_server import build_server
    from a2al_mcp.mcp_server._compat import run_stream
    from tests.node.loopnet import network

    async with network(1) as (node,):
        server = build_server(node)
        for msg in requests():
            tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
            listener = tcp.listeners[0]
            port = listener.extra(anyio.abc.SocketAttribute.local_port)

            async def serve_one(listener: Any = listener) -> None:
                async with await listener.accept() as conn:
                    await run_stream(server, conn, direct=False)

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(serve_one)
                    async with await anyio.connect_tcp("127.0.0.1", port) as client:
                        await client.send(json.dumps(msg).encode() + b"\n")
                        buf = b""
                        while b"\n" not in buf:
                            buf += await client.receive()
                    await listener.aclose()
            got = json.loads(buf.split(b"\n")[0])
            assert got == {"jsonrpc": "2.0", "id": msg["id"],
                           "result": answer(msg["params"], sdk=sdk_version())}  # fmt: skip


@pytest.mark.parametrize(
    "params",
    [
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {"roots": {"listChanged": "maybe"}},
            "clientInfo": CLIENT,
        },
        {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x"}},
        {"protocolVersion": 20250618, "capabilities": {}, "clientInfo": CLIENT},
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {"sampling": []},
            "clientInfo": CLIENT,
        },
    ],
)
def test_what_the_node_refuses_is_not_plain(node_home: Path, params: dict[str, Any]) -> None:
    msg = {"jsonrpc": "2.0", "id": 7, "method": "initialize", "params": params}
    assert not plain_request(msg, len(json.dumps(msg)), max_bytes=MAX)
    assert "error" in ask_node(node_home, msg)


def test_a_message_over_the_nodes_limit_is_not_plain() -> None:
    msg = requests()[0]
    size = len(json.dumps(msg))
    assert plain_request(msg, size, max_bytes=size)
    assert not plain_request(msg, size, max_bytes=size - 1)


_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5))
_json = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
_known = st.sampled_from(["experimental", "extensions", "roots", "sampling", "elicitation",
                          "tasks", "listChanged", "list_changed", "form", "context",
                          "requests", "createMessage", "create_message", "other"])  # fmt: skip
_small = st.one_of(st.none(), st.booleans(), st.just({}), st.text(max_size=2),
                   st.integers(-2, 2))  # fmt: skip
_capability = st.recursive(_small, lambda inner: st.dictionaries(_known, inner, max_size=3),
                           max_leaves=6)  # fmt: skip
_icon = st.dictionaries(
    st.sampled_from(["src", "mimeType", "mime_type", "sizes", "theme"]),
    st.one_of(_small, st.sampled_from(["dark", "light"]), st.lists(_small, max_size=2)),
)
_good_client = st.fixed_dictionaries(
    {"name": st.one_of(st.text(max_size=5), _small),
     "version": st.one_of(st.text(max_size=5), _small)},
    optional={"title": _small, "websiteUrl": _small, "website_url": _small,
              "icons": st.one_of(_small, st.lists(_icon, max_size=2))},
)  # fmt: skip
_good_capabilities = st.dictionaries(_known, _capability, max_size=4)
_base = {
    "protocolVersion": st.sampled_from(KNOWN_PROTOCOL_VERSIONS) | st.text(max_size=3) | _leaf,
    "capabilities": _good_capabilities | _good_capabilities | _json,
    "clientInfo": _good_client | _good_client | _json,
}
_params = (
    st.fixed_dictionaries(_base)
    | st.fixed_dictionaries(_base)
    | st.fixed_dictionaries(_base, optional={"_meta": _json, "client_info": _json, "x": _json})
)


@settings(max_examples=1000, deadline=None)
@given(params=_params, msg_id=st.one_of(st.integers(), st.text(max_size=3), _leaf))
def test_a_plain_request_passes_the_nodes_checks(params: dict[str, Any], msg_id: Any) -> None:
    """What plain_request accepts, the node's front and the SDK accept (it may refuse more)."""
    msg = {"jsonrpc": "2.0", "id": msg_id, "method": "initialize", "params": params}
    try:
        line = json.dumps(msg).encode()
    except ValueError:
        return
    if not plain_request(json.loads(line), len(line), max_bytes=MAX):
        return
    assert check_message(line, max_bytes=MAX, validate=validate_message).message is not None
    InitializeRequestParams.model_validate(params, by_name=False)


def test_sdk_version_reads_the_dist_info_beside_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mcp").mkdir()
    (tmp_path / "mcp" / "__init__.py").write_text("")
    (tmp_path / "mcp-1.30.2.dist-info").mkdir()
    monkeypatch.delitem(sys.modules, "mcp", raising=False)  # find_spec would return its spec
    monkeypatch.syspath_prepend(str(tmp_path))
    assert sdk_version() == "1.30"
    params = requests()[0]["params"]
    assert answer(params, sdk="1.30") is None  # no profile: the node answers
    (tmp_path / "mcp-1.29.0.dist-info").mkdir()  # which one? nobody can tell
    assert sdk_version() is None
    assert answer(params, sdk=None) is None


def test_the_cache_is_kept_per_sdk_and_package_version(tmp_path: Path) -> None:
    msg = requests()[2]
    ours = answer(msg["params"], sdk="2.3")
    assert ours is not None
    InitCache(tmp_path, sdk="2.3").store(msg, ours)
    assert InitCache(tmp_path, sdk="2.3").lookup(msg) == ours
    assert InitCache(tmp_path, sdk="2.4").lookup(msg) is None
    assert InitCache(tmp_path, sdk=None).lookup(msg) is None
    assert InitCache(tmp_path, sdk="2.3", version="0.0.1").lookup(msg) is None
    older = dict(ours, serverInfo=dict(ours["serverInfo"], version="0.0.1"))
    InitCache(tmp_path, sdk="2.3").store(msg, older)  # another version's node: not kept
    assert InitCache(tmp_path, sdk="2.3").lookup(msg) == ours
