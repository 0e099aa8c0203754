"""The real thing: ``a2al-mcp serve --http … --expose mcp=COMMAND --expose-topic T`` exposes
the test tool server (stdio) from one process; ``a2al-mcp serve --stdio --standalone`` in
another, driven by the official MCP client, finds it with ``discover(T, protocols=["mcp"])``
and uses it with ``remote_tools`` and ``call_remote_tool``; a node that denies that caller is
refused with ``ACCESS_DENIED``. And ``[[expose]]`` tables as the config file gives them."""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from a2al_mcp import SystemRng
from a2al_mcp.config import load_config
from a2al_mcp.errors import ConfigError
from a2al_mcp.node.home import DataHome
from a2al_mcp.remote_mcp import ExposeSpec
from a2al_mcp.remote_mcp.expose import expose_mcp
from a2al_mcp.remote_mcp.spec import parse_expose, spec_from_config
from a2al_mcp.testing.a2ald import free_port
from tests.node.loopnet import network

from .conftest import STDIO_COMMAND

pytestmark = pytest.mark.anyio

TOPIC = "test.cli-tools"


@contextlib.asynccontextmanager
async def exposing_process(seed: str, home: Path) -> AsyncIterator[None]:
    port = free_port(udp=False)
    command = shlex.join(STDIO_COMMAND)
    async with await anyio.open_process([
        sys.executable, "-m", "a2al_mcp", "serve", "--http", f"127.0.0.1:{port}",
        "--listen", "127.0.0.1:0", "--bootstrap", seed, "--data-dir", str(home),
        "--expose", f"mcp={command}", "--expose-topic", TOPIC], stderr=None) as proc:  # fmt: skip
        try:
            yield
        finally:
            proc.terminate()


async def _call(client: Any, name: str, args: dict[str, Any]) -> tuple[bool, Any]:
    res = await client.call_tool(name, args)
    if res.is_error:
        return False, res.content[0].text
    return True, res.structured_content


async def test_remote_tools_through_the_mcp_server(tmp_path: Path) -> None:
    with DataHome(tmp_path / "user") as home:  # the user's AID, known before it starts
        user_aid = home.identity(SystemRng()).aid
    with anyio.fail_after(120):
        async with network(2, publish=True) as (seed_node, denying):
            seed = "{}:{}".format(*seed_node.local_addr)
            await expose_mcp(denying, ExposeSpec(command=STDIO_COMMAND, topics=("test.denied",),
                                                 deny=(user_aid,)))  # fmt: skip
            cmd = [sys.executable, "-m", "a2al_mcp", "serve", "--stdio", "--standalone",
                   "--listen", "127.0.0.1:0", "--bootstrap", seed,
                   "--data-dir", str(tmp_path / "user")]  # fmt: skip
            params = StdioServerParameters(command=cmd[0], args=cmd[1:])
            async with exposing_process(seed, tmp_path / "exposer"), Client(params) as c:
                agents: list[dict[str, Any]] = []
                for _ in range(200):  # the exposing process joins and registers
                    ok, found = await _call(c, "discover",
                                            {"service": TOPIC, "protocols": ["mcp"]})  # fmt: skip
                    assert ok, found
                    agents = found["agents"]
                    if agents:
                        break
                    await anyio.sleep(0.1)
                assert len(agents) == 1 and agents[0]["protocols"] == ["mcp"]
                aid = agents[0]["aid"]
                ok, listed = await _call(c, "remote_tools", {"aid": aid})
                assert ok, listed
                names = [t["name"] for t in listed["tools"]]
                assert names == ["add", "whoami", "fail", "big", "hang", "ask", "crash"]
                add = next(t for t in listed["tools"] if t["name"] == "add")
                assert add["inputSchema"]["required"] == ["a", "b"]
                ok, result = await _call(c, "call_remote_tool",
                                         {"aid": aid, "tool": "add",
                                          "arguments": {"a": 40, "b": 2}})  # fmt: skip
                assert ok, result
                assert result["structured_content"] == {"total": 42, "terms": [40, 2]}
                assert result["aid"] == aid and result["content"][0]["type"] == "text"
                ok, text = await _call(
                    c,
                    "call_remote_tool",
                    {"aid": aid, "tool": "fail", "arguments": {"reason": "x"}},
                )
                assert not ok
                assert text.startswith("AGENT_ERROR: the remote MCP server's tool 'fail'")
                assert "refused on purpose: x" in text
                ok, text = await _call(c, "call_remote_tool", {"aid": aid, "tol": "add"})
                assert not ok and text.startswith("BAD_ARGUMENTS: unknown argument 'tol'")
                ok, text = await _call(c, "remote_tools", {"aid": str(denying.aid)})
                assert not ok and text.startswith("ACCESS_DENIED:"), text
                assert "denied" in text


def test_expose_tables_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        '[[expose]]\ncommand = ["python", "srv.py"]\ntopics = ["a.b"]\n'
        'deny = ["a0a1b2c3d4e5f60718293a4b5c6d7e8f9011223344"]\n'
        '[[expose]]\nurl = "http://127.0.0.1:8000/mcp"\nname = "web"\n',
        encoding="utf-8",
    )
    cfg = load_config(path)
    specs = [spec_from_config(e) for e in cfg.expose]
    assert specs[0].command == ("python", "srv.py") and specs[0].topics == ("a.b",)
    assert specs[0].allow is None and len(specs[0].deny) == 1
    assert specs[1].url == "http://127.0.0.1:8000/mcp" and specs[1].kind == "http"
    assert parse_expose("mcp=python 'my srv.py' --x").command == ("python", "my srv.py", "--x")
    assert parse_expose("mcp=http://127.0.0.1:1/mcp", topics=["t"]).topics == ("t",)
    for bad in ("a2a=python x", "mcp=", "python x"):
        with pytest.raises(ConfigError):
            parse_expose(bad)
    path.write_text('[[expose]]\ncommand = ["x"]\nurl = "http://127.0.0.1:1/"\n', "utf-8")
    with pytest.raises(ConfigError, match="exactly one of command and url"):
        load_config(path)
