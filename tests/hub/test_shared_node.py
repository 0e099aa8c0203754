"""Issue 16, "one node, many assistants": real ``a2al-mcp serve --stdio`` processes (the
proxies assistant apps start) sharing the one node of a data directory, on a loopback network.

- two, then five clients (the official mcp client) share one AID and one inbox; a note arrives
  once, and every subscribed client is told;
- SIGKILL of one client leaves the others working, and the node counts it gone;
- SIGKILL of the node, then a client's next call: a node is back, same AID, no note lost;
- nobody but the data directory's owner can open the channel (a Unix socket in the 0700
  directory; on the tcp channel, the token in the 0600 ``mcp.channel``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from a2al_mcp import Aid, Identity, SystemRng
from a2al_mcp.hub.channel import CHANNEL_FILE, ChannelError, ChannelInfo, connect, read_info
from a2al_mcp.hub.handshake import answer, sdk_version
from a2al_mcp.mcp_server._compat import MCP_MAJOR
from a2al_mcp.node import Node
from tests.mcp.toolcall import call
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio

if MCP_MAJOR != 2:  # pragma: no cover
    pytest.skip("mcp 2.x client", allow_module_level=True)

from mcp import Client, StdioServerParameters  # noqa: E402

from a2al_mcp.mcp_server.app import INBOX_URI  # noqa: E402

GRACE = "2"  # the node a test started goes 2 s after its last client
INIT = {"protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}  # fmt: skip


def serve_args(home: Path, seed: Node, *extra: str) -> list[str]:
    host, port = seed.local_addr
    return ["-m", "a2al_mcp", "serve", "--stdio", "--listen", "127.0.0.1:0", "--bootstrap",
            f"{host}:{port}", "--data-dir", str(home), "--grace", GRACE, *extra]  # fmt: skip


def node_status(home: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "a2al_mcp", "node", "status", "--data-dir", str(home)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
    status: dict[str, Any] = json.loads(out.stdout)
    return status


def stop_node(home: Path) -> None:
    subprocess.run([sys.executable, "-m", "a2al_mcp", "node", "stop", "--data-dir", str(home)],
                   capture_output=True, timeout=30, check=False)  # fmt: skip


async def until_clients(home: Path, n: int) -> None:
    """Poll ``node status`` (it offers no event) until the node counts ``n`` clients."""
    for _ in range(100):
        if (await anyio.to_thread.run_sync(node_status, home))["clients"] == n:
            return
        await anyio.sleep(0.1)
    raise AssertionError(f"the node never counted {n} clients")


class RawClient:
    """An MCP client that speaks raw JSON-RPC lines to a proxy process we can kill."""

    def __init__(self, proc: Process) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.out = BufferedByteReceiveStream(proc.stdout)
        self.next_id = 100

    async def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send(json.dumps(msg).encode() + b"\n")

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        await self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method,
                         "params": params})  # fmt: skip
        with anyio.fail_after(60):
            while True:
                got: dict[str, Any] = json.loads(await self.out.receive_until(b"\n", 1 << 24))
                if got.get("id") == self.next_id:
                    return got

    async def tool(self, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        got = await self.request("tools/call", {"name": name, "arguments": args or {}})
        assert "result" in got and not got["result"].get("isError"), got
        result: dict[str, Any] = json.loads(got["result"]["content"][0]["text"])
        return result


@contextlib.asynccontextmanager
async def raw_client(args: list[str]) -> AsyncIterator[RawClient]:
    async with await anyio.open_process([sys.executable, *args], stderr=None) as proc:
        client = RawClient(proc)
        assert "result" in await client.request("initialize", INIT)
        await client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        try:
            yield client
        finally:
            if proc.returncode is None:
                proc.kill()


async def test_two_then_five_clients_share_one_aid_and_one_inbox(tmp_path: Path) -> None:
    home = tmp_path / "home"
    try:
        with anyio.fail_after(150):
            async with network(1) as (seed,), contextlib.AsyncExitStack() as stack:
                params = StdioServerParameters(command=sys.executable,
                                               args=serve_args(home, seed))  # fmt: skip
                clients = [await stack.enter_async_context(Client(params)) for _ in range(2)]
                aids = {(await call(c, "status"))["aid"] for c in clients}
                assert len(aids) == 1
                for _ in range(3):
                    clients.append(await stack.enter_async_context(Client(params)))
                assert {(await call(c, "status"))["aid"] for c in clients} == aids
                shown = await anyio.to_thread.run_sync(node_status, home)
                assert shown["clients"] == 5 and shown["aid"] in aids
                assert (await call(clients[0], "publish"))["aid"] in aids
                (aid,) = aids
                async with contextlib.AsyncExitStack() as subs:
                    listeners = [
                        await subs.enter_async_context(c.listen(resource_subscriptions=[INBOX_URI]))
                        for c in clients
                    ]
                    await seed.send_mailbox(Aid.from_str(aid), "for all of you")
                    for listener in listeners:  # every subscribed client is told
                        with anyio.fail_after(20):
                            event = await listener.__anext__()
                        assert str(getattr(event, "uri", "")) == INBOX_URI
                for c in clients:  # one note, one inbox: every client sees the same one
                    inbox = await call(c, "read_mailbox", {"peek": True})
                    assert [m["text"] for m in inbox["messages"]] == ["for all of you"]
                assert (await call(clients[3], "read_mailbox"))["count"] == 1
                assert (await call(clients[4], "read_mailbox", {"peek": True}))["count"] == 0
    finally:
        stop_node(home)


async def test_killing_a_client_or_the_node_harms_nobody(tmp_path: Path) -> None:
    home = tmp_path / "home"
    try:
        with anyio.fail_after(150):
            async with network(1) as (seed,):
                args = serve_args(home, seed)
                async with raw_client(args) as a, raw_client(args) as b:
                    aid = (await a.tool("status"))["aid"]
                    await a.tool("publish")
                    a.proc.send_signal(signal.SIGKILL)  # one assistant dies mid-session
                    await a.proc.wait()
                    assert (await b.tool("status"))["aid"] == aid  # the other goes on
                    with anyio.fail_after(10):  # the node saw it go (no event to wait on)
                        await until_clients(home, 1)
                    sent = await seed.send_mailbox(Aid.from_str(aid), "kept across a kill")
                    assert sent.delivered in ("direct", "both")  # acked by the node
                    info = read_info(home)
                    assert info is not None
                    os.kill(info.pid, signal.SIGKILL)  # the node dies; the note was acked
                    with anyio.fail_after(60):  # the next call starts a node again
                        while True:
                            peek = {"name": "read_mailbox", "arguments": {"peek": True}}
                            got = await b.request("tools/call", peek)
                            if "result" in got:
                                break
                            assert "UNREACHABLE" in got["error"]["message"], got
                    inbox = json.loads(got["result"]["content"][0]["text"])
                    assert [m["text"] for m in inbox["messages"]] == ["kept across a kill"]
                    assert (await b.tool("status"))["aid"] == aid  # same identity
                    again = read_info(home)
                    assert again is not None and again.pid != info.pid
    finally:
        stop_node(home)


async def test_a_request_the_node_never_answers_gets_an_error(tmp_path: Path) -> None:
    """A client's request in flight when the node dies is answered by the proxy at once
    (no client waits forever); the client's next call is served by a new node."""
    home = tmp_path / "home"
    try:
        with anyio.fail_after(120):
            async with network(1) as (seed,), raw_client(serve_args(home, seed)) as c:
                aid = (await c.tool("status"))["aid"]
                info = read_info(home)
                assert info is not None
                os.kill(info.pid, signal.SIGSTOP)  # frozen: the request stays unanswered
                c.next_id += 1
                await c.send({"jsonrpc": "2.0", "id": c.next_id, "method": "tools/call",
                              "params": {"name": "status", "arguments": {}}})  # fmt: skip
                os.kill(info.pid, signal.SIGKILL)
                with anyio.fail_after(10):
                    got = json.loads(await c.out.receive_until(b"\n", 1 << 20))
                assert got["id"] == c.next_id
                assert got["error"]["message"].startswith("UNREACHABLE: "), got
                with anyio.fail_after(60):  # the next call starts a node again (a call racing
                    while True:  # the proxy's notice of the loss may get UNREACHABLE too)
                        got = await c.request("tools/call", {"name": "status", "arguments": {}})
                        if "result" in got:
                            break
                        assert got["error"]["message"].startswith("UNREACHABLE: "), got
                assert json.loads(got["result"]["content"][0]["text"])["aid"] == aid
    finally:
        stop_node(home)


def _other_python() -> str | None:
    """An interpreter another user may run (ours may live under root's 0700 home)."""
    for candidate in (sys.executable, shutil.which("python3", path="/usr/bin:/bin")):
        if candidate and os.stat(candidate).st_mode & 0o001:
            parents = Path(candidate).resolve().parents
            if all(os.stat(p).st_mode & 0o001 for p in parents):
                return str(Path(candidate).resolve())
    return None


def _as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    python = _other_python()
    assert python is not None
    return subprocess.run([python, "-I", "-c", code], capture_output=True, text=True,
                          timeout=30, user=65534, group=65534, cwd="/")  # fmt: skip


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() != 0 or _other_python() is None,
                    reason="needs root and an interpreter another user can run")  # fmt: skip
@pytest.mark.parametrize("kind", ["unix", "tcp"])
async def test_no_other_local_user_can_open_the_channel(tmp_path: Path, kind: str) -> None:
    if kind == "unix" and not hasattr(socket, "AF_UNIX"):
        pytest.skip("no Unix sockets (simulated Windows)")
    home = tmp_path / "home"
    os.chmod(tmp_path, 0o755)  # others may traverse to the data directory; it must stop them
    config = tmp_path / "hub.toml"
    await anyio.Path(config).write_text(f'[hub]\nchannel = "{kind}"\n')
    args = serve_args
    try:
        with anyio.fail_after(90):
            async with (
                network(1) as (seed,),
                raw_client(args(home, seed, "--config", str(config))) as c,
            ):
                await c.tool("status")
                info = read_info(home)
                assert info is not None and info.kind == kind
                assert oct(home.stat().st_mode & 0o777) == "0o700"
                assert oct((home / CHANNEL_FILE).stat().st_mode & 0o777) == "0o600"
                # another user can read neither the channel file nor reach the socket
                probe = _as_nobody(
                    "import sys\n"
                    f"try:\n    open({str(home / CHANNEL_FILE)!r}).read()\n"
                    "except PermissionError:\n    print('denied')\n"
                )
                assert probe.stdout.strip() == "denied", probe
                if kind == "unix":
                    assert oct(os.stat(info.path).st_mode & 0o777) == "0o600"
                    probe = _as_nobody(
                        "import socket\ns = socket.socket(socket.AF_UNIX)\n"
                        f"try:\n    s.connect({info.path!r})\n"
                        "except PermissionError:\n    print('denied')\n"
                    )
                    assert probe.stdout.strip() == "denied", probe
                else:  # the port is open to every local user: the token keeps them out
                    assert info.host == "127.0.0.1"
                    forged = ChannelInfo(kind="tcp", token="0" * 32, pid=info.pid,
                                             host=info.host, port=info.port)  # fmt: skip
                    with pytest.raises(ChannelError, match="refused"):
                        await anyio.to_thread.run_sync(
                            lambda: connect(forged, "status", timeout_s=5)
                        )
                    with socket.create_connection((info.host, info.port), timeout=5) as s:
                        s.sendall(b"GET / HTTP/1.1\r\n\r\n")  # not a hello at all
                        assert s.recv(100).startswith(b"NO ")
                    shown = await anyio.to_thread.run_sync(node_status, home)
                    assert shown["hub"]["refused_hello"] == 2
                assert (await c.tool("status"))["aid"]  # the owner's client goes on
    finally:
        stop_node(home)


async def test_node_start_status_stop_and_the_client_limit(tmp_path: Path) -> None:
    """``node start`` keeps a node up with no client; ``limits.mcp_local_clients`` refuses
    one client too many (its call fails UNREACHABLE naming the limit); ``node stop`` ends it."""
    home = tmp_path / "home"
    config = tmp_path / "one.toml"
    await anyio.Path(config).write_text("[limits]\nmcp_local_clients = 1\n")
    node = [sys.executable, "-m", "a2al_mcp", "node"]
    opts = ["--data-dir", str(home), "--listen", "127.0.0.1:0", "--config", str(config)]
    try:
        with anyio.fail_after(120):
            async with network(1) as (seed,):
                seed_at = "{}:{}".format(*seed.local_addr)
                started = await anyio.run_process([*node, "start", *opts, "--bootstrap", seed_at])
                shown = json.loads(started.stdout)
                assert shown["started"] and shown["stay"] and shown["clients"] == 0
                again = json.loads((await anyio.run_process([*node, "start", *opts])).stdout)
                assert not again["started"] and again["pid"] == shown["pid"]  # already running
                human = await anyio.run_process([sys.executable, "-m", "a2al_mcp", "status",
                                                 "--data-dir", str(home)])  # fmt: skip
                assert json.loads(human.stdout)["aid"] == shown["aid"]  # asked the node
                args = serve_args(home, seed, "--config", str(config))
                async with raw_client(args) as first:
                    assert (await first.tool("status"))["aid"] == shown["aid"]
                    async with await anyio.open_process([sys.executable, *args]) as proc:
                        second = RawClient(proc)
                        # a running node answers initialize (it refuses, busy); before it
                        # did, the proxy could answer from a cache and refuse the next call
                        got = await second.request("initialize", INIT)
                        if "result" in got:
                            got = await second.request("tools/call", {"name": "status",
                                                                      "arguments": {}})  # fmt: skip
                        assert "busy" in got["error"]["message"], got
                        assert "mcp_local_clients" in got["error"]["message"]
                        proc.kill()
                await anyio.sleep(2.5)  # past --grace 2: a started node stays anyway
                assert (await anyio.to_thread.run_sync(node_status, home))["pid"] == shown["pid"]
                stopped = await anyio.run_process([*node, "stop", *opts])
                assert json.loads(stopped.stdout)["stopped"]
                gone = await anyio.run_process([*node, "status", *opts], check=False)
                assert gone.returncode != 0 and b"no node is running" in gone.stderr
    finally:
        stop_node(home)


async def test_initialize_is_answered_before_the_join(tmp_path: Path) -> None:
    """Issue 16 item 9: ``initialize`` waited for the network join (4.9 s with a seed that
    never answers); now it is answered while the join still runs, and a tool that needs the
    network waits for the join and then answers."""
    home = tmp_path / "home"
    try:
        with anyio.fail_after(90):
            async with await anyio.create_udp_socket(local_host="127.0.0.1") as silent:
                host, port = silent.extra(anyio.abc.SocketAttribute.local_address)[:2]
                args = ["-m", "a2al_mcp", "serve", "--stdio", "--grace", GRACE, "--listen",
                        "127.0.0.1:0", "--bootstrap", f"{host}:{port}", "--data-dir",
                        str(home)]  # fmt: skip
                async with raw_client(args) as c:  # initialize answered
                    # (by the proxy, which starts the node: a local tool waits for it)
                    await c.tool("status")
                    assert (await anyio.to_thread.run_sync(node_status, home))["joining"]
                    stranger = str(Identity.generate(SystemRng()).aid)
                    call = {"name": "resolve", "arguments": {"aid": stranger}}
                    got = await c.request("tools/call", call)
                    assert "NOT_FOUND" in json.dumps(got)  # after the join, not before it
                    assert not (await anyio.to_thread.run_sync(node_status, home))["joining"]
    finally:
        stop_node(home)


async def test_initialize_is_answered_by_the_proxy_then_the_node_serves(tmp_path: Path) -> None:
    """Issue 16's spawn → initialize: with no node running (a fresh data directory, then the
    same one after its node stopped) the proxy answers ``initialize`` itself, exactly as the
    node does (the version it negotiates too), while the node starts; the first call is the
    node's, which was given the client's initialize and answered it the same way."""
    home = tmp_path / "home"
    try:
        with anyio.fail_after(120):
            async with network(1) as (seed,):
                args = serve_args(home, seed)
                aids = set()
                for params in (INIT, INIT, dict(INIT, protocolVersion="2025-03-26")):
                    assert read_info(home) is None  # no node runs
                    async with await anyio.open_process([sys.executable, *args]) as proc:
                        c = RawClient(proc)
                        got = await c.request("initialize", params)
                        assert got["result"] == answer(params, sdk=sdk_version())
                        assert got["result"]["protocolVersion"] == params["protocolVersion"]
                        await c.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
                        aids.add((await c.tool("status"))["aid"])  # the node's answer
                        proc.kill()
                    stop_node(home)
                assert len(aids) == 1  # one data directory, one identity
    finally:
        stop_node(home)
