"""Serving an MCP server on a local identity over A2AL streams (streamable HTTP on streams,
through the node's ASGI serving): :func:`expose_mcp`.

- ``url``: an existing streamable-HTTP MCP server on this machine. Each request is forwarded
  to it as it came, plus :data:`~.spec.CALLER_HEADER` with the verified caller AID (the
  caller's own header of that name is dropped by the node); the answer streams back.
- ``command``: a stdio MCP server the node starts and owns, behind the ``mcp`` SDK: a
  stateless streamable-HTTP server whose tool listing and calls go to the stdio server's
  session. Stdio has no per-request caller, so who may call is the node's to enforce: the
  spec's ``allow``/``deny`` (checked when a stream is admitted, for both kinds). If the
  process dies it is started again after a back-off (0.5 s doubling to 30 s, reset after a
  minute up); calls meanwhile wait for it, within their timeout. It stops when the node
  closes (its task is the node's).

With ``publish`` the identity's endpoint record is published and the server registered
under each of the spec's topics with protocol ``mcp``, so ``discover(topic,
protocols=["mcp"])`` finds it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Final

import anyio
import httpx2

from ..errors import UsageError
from .spec import CALLER_HEADER, PROTOCOL, ExposeSpec

if TYPE_CHECKING:
    from ..identity.aid import Aid
    from ..node.node import Node

__all__ = ["ExposedMcp", "StdioBridge", "expose_all", "expose_mcp", "http_forwarder"]

logger = logging.getLogger(__name__)

BACKOFF_FIRST_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
STABLE_S: Final = 60.0
"""A stdio server up this long has its back-off reset."""
_HOP: Final = frozenset({b"host", b"connection", b"content-length", b"transfer-encoding",
                         b"keep-alive", b"upgrade"})  # fmt: skip


def http_forwarder(url: str, client: httpx2.AsyncClient) -> Any:
    """An ASGI app that forwards every request to the streamable-HTTP MCP server at ``url``
    (through ``client``, whose owner closes it) with the verified caller in
    :data:`CALLER_HEADER`, streaming the answer back."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        caller = scope.get("extensions", {}).get("a2al", {}).get("caller", "")
        headers = [(k, v) for k, v in scope["headers"]
                   if k.lower() not in _HOP and k.lower() != CALLER_HEADER.encode()]  # fmt: skip
        headers.append((CALLER_HEADER.encode(), caller.encode("ascii")))
        query = scope.get("query_string", b"")
        target = url + (("?" + query.decode("latin-1")) if query else "")
        request = client.build_request(scope["method"], target, headers=headers,
                                       content=bytes(body))  # fmt: skip
        try:
            response = await client.send(request, stream=True)
        except httpx2.HTTPError as exc:
            logger.warning("expose.forward_failed url=%s error=%r", url, exc)
            await send({"type": "http.response.start", "status": 502,
                        "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
            await send({"type": "http.response.body", "body": b"the MCP server is not answering"})
            return
        try:
            out = [(k.encode("latin-1"), v.encode("latin-1"))
                   for k, v in response.headers.multi_items()
                   if k.lower().encode() not in _HOP]  # fmt: skip
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": out})  # fmt: skip
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    return app


class StdioBridge:
    """A stdio MCP server owned by the node, served as stateless streamable HTTP (the SDK's
    low-level server, forwarding the tool listing and calls to the stdio session)."""

    def __init__(self, command: Sequence[str], *, name: str = "a2al-exposed") -> None:
        from mcp.server.lowlevel.server import Server
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        self.command = tuple(command)
        self.starts = 0
        """How many times the process was started."""
        self._upstream: Any = None
        self._up = anyio.Event()
        self._dead = anyio.Event()
        server: Any = Server(name, on_list_tools=self._list_tools, on_call_tool=self._call_tool)
        self._manager = StreamableHTTPSessionManager(app=server, stateless=True,
                                                     json_response=True)  # fmt: skip

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI app served on the identity."""
        await self._manager.handle_request(scope, receive, send)

    async def _session(self) -> Any:
        await self._up.wait()
        return self._upstream

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, anyio.ClosedResourceError | anyio.BrokenResourceError | OSError):
            self._dead.set()

    async def _list_tools(self, ctx: Any, params: Any) -> Any:
        upstream = await self._session()
        try:
            return await upstream.list_tools(cursor=params.cursor if params else None)
        except Exception as exc:
            self._failed(exc)
            raise

    async def _call_tool(self, ctx: Any, params: Any) -> Any:
        upstream = await self._session()
        try:
            return await upstream.call_tool(params.name, params.arguments or {})
        except Exception as exc:
            self._failed(exc)
            raise

    async def run(self) -> None:
        """Serve until cancelled: the SDK's session manager, and the stdio server started
        (again, after a back-off, whenever it dies)."""
        async with self._manager.run():
            backoff = BACKOFF_FIRST_S
            while True:
                started = anyio.current_time()
                try:
                    await self._run_once()
                except Exception as exc:
                    logger.warning("expose.stdio_failed command=%s error=%r", self.command[0],
                                   exc)  # fmt: skip
                if anyio.current_time() - started > STABLE_S:
                    backoff = BACKOFF_FIRST_S
                logger.info("expose.stdio_restart command=%s in_s=%.1f", self.command[0],
                            backoff)  # fmt: skip
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _run_once(self) -> None:
        from mcp import Client, StdioServerParameters

        params = StdioServerParameters(command=self.command[0], args=list(self.command[1:]))
        self._dead = anyio.Event()
        async with Client(_watched_stdio(params, self._dead), cache=None) as upstream:
            self.starts += 1
            self._upstream = upstream
            self._up.set()
            try:
                await self._dead.wait()
            finally:
                self._up = anyio.Event()
                self._upstream = None


@contextlib.asynccontextmanager
async def _watched_stdio(params: Any, dead: anyio.Event) -> AsyncIterator[Any]:
    """The SDK's stdio transport, whose read side sets ``dead`` when the process's output
    ends (it exited): noticed without a call."""
    from mcp.client.stdio import stdio_client

    async with stdio_client(params) as (read, write):
        yield _EndWatch(read, dead), write


class _EndWatch:
    """A receive stream that sets ``dead`` when iteration over it ends."""

    def __init__(self, inner: Any, dead: anyio.Event) -> None:
        self._inner = inner
        self._dead = dead

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def __aenter__(self) -> _EndWatch:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._inner.__aexit__(*exc)

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            async for item in self._inner:
                yield item
        finally:
            self._dead.set()

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._dead.set()
            raise


class ExposedMcp:
    """An MCP server exposed on ``aid`` (what :func:`expose_mcp` returns)."""

    def __init__(self, aid: Aid, spec: ExposeSpec, bridge: StdioBridge | None) -> None:
        self.aid = aid
        self.spec = spec
        self.bridge = bridge
        """The stdio bridge (None for a URL)."""


async def expose_mcp(
    node: Node,
    spec: ExposeSpec,
    *,
    publish: bool = True,
    ttl_s: int = 3600,
) -> ExposedMcp:
    """Serve ``spec``'s MCP server on local identity ``spec.aid`` (default: the node) over
    A2AL streams, callers filtered by ``spec.allow``/``spec.deny``; with ``publish``, publish
    the identity and register it under ``spec.topics`` with protocol ``mcp``. The node must
    be open; a stdio server's process is the node's (stopped when it closes).

    Raises:
        UsageError: the identity already serves something else.
    """
    aid = spec.aid or node.aid
    bridge: StdioBridge | None = None
    if spec.command:
        bridge = StdioBridge(spec.command, name=spec.name or "a2al-exposed")
        app = bridge.app
        node.spawn(bridge.run)
    else:
        client = httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, read=None))

        async def keep() -> None:  # the node's task: the client closes with the node
            async with client:
                await anyio.sleep_forever()

        node.spawn(keep)
        app = http_forwarder(spec.url, client)
    node.serve(aid, app=app, allow=spec.allow, deny=spec.deny)
    if publish:
        await node.publish(aid, ttl_s=ttl_s)
        for topic in spec.topics:
            await node.register_service(topic, name=spec.name[:64], brief=spec.brief[:140],
                                        protocols=[PROTOCOL], aid=aid,
                                        ttl_s=ttl_s)  # fmt: skip
    logger.info("expose.serving aid=%s kind=%s topics=%s", aid, spec.kind, ",".join(spec.topics))
    return ExposedMcp(aid, spec, bridge)


async def expose_all(node: Node, specs: Sequence[ExposeSpec]) -> list[ExposedMcp]:
    """:func:`expose_mcp` for each of ``specs``; two on one identity are refused.

    Raises:
        UsageError: two specs on the same identity.
    """
    seen: set[Aid] = set()
    for spec in specs:
        aid = spec.aid or node.aid
        if aid in seen:
            raise UsageError(f"two MCP servers exposed on {aid}: give each its own identity "
                             "(aid)")  # fmt: skip
        seen.add(aid)
    return [await expose_mcp(node, spec) for spec in specs]
