"""The one module that imports the ``mcp`` SDK: differences between mcp 2.x and 1.x.

mcp 2 renamed FastMCP to MCPServer (``mcp.server.mcpserver``); mcp 1.30 (which CrewAI pins)
still has ``mcp.server.fastmcp``. Both take ``add_tool(fn, name=, description=,
annotations=)``, both send a :class:`ToolError`'s message to the client, and both run stdio
and streamable HTTP.

It is also the one module that touches the SDK's private names (ruff ``SLF001`` is off for it
alone): ``MCPServer._subscriptions`` (resource-updated notifications, mcp 2; pinned by the
inbox subscription tests), the low-level server the stdio front runs,
``MCPServer._lowlevel_server`` (mcp 2) / ``FastMCP._mcp_server`` (mcp 1), and
``ServerSession._connection`` (mcp 2: the connection a legacy ``resources/subscribe`` came
on, which outlives the per-request session; pinned by the legacy subscription test), and
the server module's ``configure_logging`` (replaced while the server is built: see
:func:`new_server`).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import anyio

from ..config import LimitsConfig
from .catalogue import LEGACY_SUBSCRIBERS_MAX, LegacySubscriptions
from .guard import FrontStats

try:
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver import MCPServer as _Server
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.shared.subscriptions import ResourceUpdated
    from mcp_types import jsonrpc_message_adapter as _message_adapter

    MCP_MAJOR = 2
except ImportError:  # pragma: no cover - exercised in the mcp 1.x venv
    import importlib

    _fm: Any = importlib.import_module("mcp.server.fastmcp")
    _fx: Any = importlib.import_module("mcp.server.fastmcp.exceptions")
    Context = _fm.Context  # type: ignore[misc]
    _Server = _fm.FastMCP  # type: ignore[misc]
    ToolError = _fx.ToolError  # type: ignore[misc]
    _message_adapter = importlib.import_module("mcp.types").JSONRPCMessage
    MCP_MAJOR = 1

__all__ = [
    "LEGACY_SUBSCRIBERS_MAX",
    "MCP_MAJOR",
    "Context",
    "LegacySubscriptions",
    "ToolError",
    "add_resource",
    "intercept_tools",
    "new_server",
    "publish_resource_updated",
    "report_progress",
    "run_http",
    "run_stdio",
    "run_stream",
    "serve_legacy_subscriptions",
    "serve_wire",
    "validate_message",
]


def add_resource(server: Any, uri: str, name: str, description: str, fn: Any) -> None:
    """Register a JSON resource read by ``fn() -> str``."""
    server.resource(uri, name=name, description=description, mime_type="application/json")(fn)


def serve_legacy_subscriptions(server: Any, uris: set[str]) -> LegacySubscriptions:
    """Answer ``resources/subscribe`` and ``unsubscribe`` for ``uris`` on ``server``."""
    subs = LegacySubscriptions(uris)
    low = _lowlevel(server)
    if MCP_MAJOR == 2:
        from mcp import types

        # ctx.session is a per-request proxy: what lives as long as the client is its
        # connection (ServerSession._connection), which sends standalone notifications
        async def on_subscribe(ctx: Any, params: Any) -> Any:
            subs.subscribe(str(params.uri), ctx.session._connection)
            return types.EmptyResult()

        async def on_unsubscribe(ctx: Any, params: Any) -> Any:
            subs.unsubscribe(str(params.uri), ctx.session._connection)
            return types.EmptyResult()

        low.add_request_handler("resources/subscribe", types.SubscribeRequestParams,
                                on_subscribe)  # fmt: skip
        low.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams,
                                on_unsubscribe)  # fmt: skip
    else:  # pragma: no cover - mcp 1.x

        async def on_subscribe1(uri: Any) -> None:
            subs.subscribe(str(uri), low.request_context.session)

        async def on_unsubscribe1(uri: Any) -> None:
            subs.unsubscribe(str(uri), low.request_context.session)

        low.subscribe_resource()(on_subscribe1)
        low.unsubscribe_resource()(on_unsubscribe1)
        plain_options = low.create_initialization_options

        def options(*args: Any, **kwargs: Any) -> Any:  # mcp 1 always says subscribe=False
            opts = plain_options(*args, **kwargs)
            if opts.capabilities.resources is not None:
                opts.capabilities.resources.subscribe = True
            return opts

        low.create_initialization_options = options
    return subs


async def publish_resource_updated(
    server: Any, uri: str, legacy: LegacySubscriptions | None = None
) -> None:
    """Tell subscribed clients that ``uri`` changed: ``subscriptions/listen`` streams (mcp 2)
    and the sessions of ``legacy`` that sent ``resources/subscribe`` (both SDKs)."""
    if MCP_MAJOR == 2:
        await server._subscriptions.publish(ResourceUpdated(uri=uri))
    if legacy is not None:
        await legacy.notify(uri)


async def report_progress(ctx: Any, progress: float, total: float, message: str) -> None:
    """Progress notification for the running tool call (ignored if the client did not ask)."""
    if ctx is None:
        return
    try:
        await ctx.report_progress(progress, total, message)
    except Exception:  # a client without a progress token, or gone: progress is best effort
        return


def intercept_tools(
    server: Any,
    *,
    check_call: Callable[[Any, Any], Any | None],
    input_schema: Callable[[str], dict[str, Any] | None],
) -> None:
    """Tool calls checked as the client sent them and tool listings with our schemas, on
    mcp 1.x (mcp 2 does both in the app's middleware): ``check_call(name, arguments)``
    returns the ``CallToolResult`` that refuses the call, or None to let it run (the SDK would
    drop unknown argument names before our models see them), and ``input_schema(name)`` the
    closed schema to list. Wraps the low-level server's ``CallToolRequest`` and
    ``ListToolsRequest`` handlers (``request_handlers``, public in mcp 1.x)."""
    if MCP_MAJOR == 2:
        return
    types: Any = importlib.import_module("mcp.types")  # pragma: no cover - mcp 1.x

    low = _lowlevel(server)  # pragma: no cover
    call = low.request_handlers[types.CallToolRequest]  # pragma: no cover
    listing = low.request_handlers[types.ListToolsRequest]  # pragma: no cover

    async def checked(req: Any) -> Any:  # pragma: no cover
        refusal = check_call(req.params.name, req.params.arguments)
        if refusal is not None:
            return types.ServerResult(refusal)
        return await call(req)

    async def listed(req: Any) -> Any:  # pragma: no cover
        res = await listing(req)
        tools = []
        for tool in res.root.tools:
            schema = input_schema(tool.name)
            tools.append(
                tool if schema is None else tool.model_copy(update={"inputSchema": schema})
            )
        res.root.tools = tools
        return res

    low.request_handlers[types.CallToolRequest] = checked  # pragma: no cover
    low.request_handlers[types.ListToolsRequest] = listed  # pragma: no cover


@contextlib.contextmanager
def _logging_left_alone() -> Iterator[None]:
    """The SDK's server constructor calls its module's ``configure_logging``, which imports
    rich (1.5 MiB and tens of ms of the node's start) to put a RichHandler on the root logger
    when nothing configured logging (the CLI always has): logging is the application's to
    configure, so the server is built with that call doing nothing."""
    module: Any = sys.modules.get(_Server.__module__)
    saved = getattr(module, "configure_logging", None)
    if saved is None:  # pragma: no cover - an SDK without it
        yield
        return
    module.configure_logging = lambda *args, **kwargs: None
    try:
        yield
    finally:
        module.configure_logging = saved


def new_server(name: str, instructions: str, *, title: str, version: str) -> Any:
    """The SDK's server, announcing ``name``, ``title`` (mcp 2) and ``version`` in its
    ``serverInfo`` (mcp 1's FastMCP takes no version: it is set on its low-level server).
    Root logging is left as it is (:func:`_logging_left_alone`)."""
    with _logging_left_alone():
        if MCP_MAJOR == 2:
            return _Server(name, title=title, instructions=instructions, version=version)
        server = _Server(name, instructions=instructions)  # pragma: no cover - mcp 1.x
    _lowlevel(server).version = version  # pragma: no cover
    return server  # pragma: no cover


def _lowlevel(server: Any) -> Any:
    return server._lowlevel_server if MCP_MAJOR == 2 else server._mcp_server


def validate_message(obj: dict[str, Any]) -> str | None:
    """The SDK's own JSON-RPC envelope check: None, or why ``obj`` is not a message."""
    from pydantic import ValidationError

    try:
        if MCP_MAJOR == 2:
            _message_adapter.validate_python(obj, by_name=False)
        else:  # pragma: no cover - mcp 1.x
            _message_adapter.model_validate(obj)  # type: ignore[attr-defined]
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
        where = ".".join(str(x) for x in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return None


async def serve_wire(
    server: Any, wire: Any, *, limits: LimitsConfig | None = None, direct: bool = True
) -> None:
    """The SDK's ``server`` answering one session on ``wire`` (a :class:`~.line_front.LineWire`,
    the SDK's stdin and stdout); tool calls of the initialized session answered by the wire
    itself (:mod:`.direct`) when the server has a direct answer (``app.direct_answer``) and
    ``direct`` is true. Returns when the client hangs up."""
    from mcp.server.stdio import stdio_server

    from .app import direct_answer
    from .direct import DirectCalls

    limits = limits or LimitsConfig()
    answer = direct_answer(server) if direct else None
    async with anyio.create_task_group() as tg:
        wire.use_direct(
            None if answer is None
            else DirectCalls(answer, tg, max_in_flight=limits.mcp_calls_in_flight)
        )  # fmt: skip
        async with stdio_server(stdin=wire, stdout=wire) as (read_stream, write_stream):
            low = _lowlevel(server)
            await low.run(read_stream, write_stream, low.create_initialization_options())
        tg.cancel_scope.cancel()  # the client hung up: its running calls end (as the SDK's)


async def run_stdio(
    server: Any, *, limits: LimitsConfig | None = None, stats: FrontStats | None = None
) -> None:
    """MCP over this process's stdin and stdout through the SDK's ``server``, every line
    checked first (see stdio_front); tool calls of the initialized session answered by the
    front itself (:mod:`.direct`). (``serve --stdio --standalone`` serves through
    :func:`~.stdio_front.serve_stdio` instead: the SDK only when a session needs it.)"""
    from .stdio_front import StdioWire, claim_stdio

    limits = limits or LimitsConfig()
    with claim_stdio() as (stdin, stdout):
        wire = StdioWire(stdin, stdout, max_bytes=limits.mcp_message_max_bytes,
                         stats=stats or FrontStats(), validate=validate_message)  # fmt: skip
        await serve_wire(server, wire, limits=limits)


async def run_stream(
    server: Any,
    stream: Any,
    *,
    limits: LimitsConfig | None = None,
    stats: FrontStats | None = None,
    direct: bool = True,
) -> None:
    """One MCP session through the SDK's ``server`` over a byte stream, every line checked
    first as on stdio; returns when the client hangs up. Tool calls of the initialized
    session are answered by the front itself (:mod:`.direct`) when the server has a direct
    answer (see ``app.direct_answer``) and ``direct`` is true. (The shared node serves its
    clients through :func:`~.line_front.serve_stream` instead.)"""
    from .line_front import StreamWire

    limits = limits or LimitsConfig()
    wire = StreamWire(stream, max_bytes=limits.mcp_message_max_bytes,
                      stats=stats or FrontStats(), validate=validate_message)  # fmt: skip
    await serve_wire(server, wire, limits=limits, direct=direct)


async def run_http(
    server: Any,
    host: str,
    port: int,
    *,
    token: str | None = None,
    limits: LimitsConfig | None = None,
    stats: FrontStats | None = None,
) -> None:
    """Streamable HTTP at ``/mcp``. Loopback hosts get the SDK's Host/Origin checks; any
    other host gets the same checks for that host, and ``token`` (required there by the CLI)
    is demanded as ``Authorization: Bearer <token>`` on every request. The front's limits
    (connections, header and body time, body size, message checks) are in http_front."""
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    from .http_front import ConnectionGuard, guard_app

    limits = limits or LimitsConfig()
    stats = stats or FrontStats()
    security = None
    if host not in ("127.0.0.1", "localhost", "::1"):
        shown = f"[{host}]" if ":" in host else host
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[f"{shown}:*"],
            allowed_origins=[f"http://{shown}:*", f"https://{shown}:*"],
        )
    if MCP_MAJOR != 2:  # pragma: no cover - mcp 1.x (the token is checked by guard_app)
        server.settings.host, server.settings.port = host, port
        if security is not None:
            server.settings.transport_security = security
        app = server.streamable_http_app()
    else:
        app = server.streamable_http_app(host=host, transport_security=security)
    app = guard_app(app, limits=limits, stats=stats, token=token, validate=validate_message)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        http=ConnectionGuard(limits, stats).protocol_class(),
        ws="none",  # MCP has no WebSocket transport; an upgrade would leave the guard
        timeout_keep_alive=min(5, max(1, int(limits.http_header_timeout_s))),
    )
    await uvicorn.Server(config).serve()
