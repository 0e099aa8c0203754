"""One MCP session of the handshake era (``initialize`` first: protocol 2024-11-05 to
2025-11-25, every desktop app today), answered without the ``mcp`` SDK.

The SDK costs the node process about 22 MiB (mcp 2.3 builds the pydantic models of two
protocol eras and imports starlette, uvicorn and httpx even for stdio) and each message
crosses five of its tasks. A :class:`LineSession` answers everything a handshake-era client
sends, as the SDK (mcp 2.3) answers it for our server, field for field:

- ``initialize`` (version negotiation, capabilities, ``serverInfo``, instructions:
  :func:`~a2al_mcp.mcp_handshake.answer`, which the stdio proxy uses too), again later too;
  ``notifications/initialized``; ``ping``;
- ``tools/list`` (our closed input schemas, the result models' output schemas),
  ``tools/call`` (:class:`~.direct.DirectCalls`: progress, cancellation, at most
  ``limits.mcp_calls_in_flight`` at once; ``identity_export`` asks its passphrase with a
  server request, ``elicitation/create``, when the client can ask its user);
- ``resources/list``, ``resources/templates/list``, ``resources/read`` (``a2al://inbox``,
  ``a2al://status``), ``resources/subscribe`` / ``unsubscribe`` and
  ``notifications/resources/updated`` when a note arrives; ``prompts/list`` (none),
  ``prompts/get``;
- every other request: the SDK's error, same code, message and data: ``-32601 Method not
  found`` for a method our server does not serve (``logging/setLevel`` and
  ``completion/complete`` are not advertised; ``server/discover`` and
  ``subscriptions/listen`` do not exist in this era), ``-32602 Invalid request parameters``
  for parameters the SDK's models refuse (checked here by :data:`_CHECKS`, without them),
  ``-32600`` for a request carrying the 2026-07-28 envelope.

Unknown methods are refused rather than handed to the SDK mid-session: the SDK would refuse
them too (our server registers nothing else), and a session handed over midway would need
the SDK's own session state (initialization, subscriptions) rebuilt. The session that opens
otherwise (a 2026-07-28 request, an ``initialize`` the narrow
:func:`~a2al_mcp.mcp_handshake.plain_request` does not surely accept) is the SDK's from
its first message (:mod:`.line_front`). tests/mcp/test_direct_calls.py replays one session
through both and compares every answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from ..config import LimitsConfig
from ..mcp_handshake import answer as initialize_answer
from ..toolspec import ToolFailure
from .catalogue import (
    ElicitRefused,
    checked_call,
    listed_tools,
    read_resource,
    refusal,
    resource_list,
)
from .core import ServerCore
from .direct import DirectCalls, encode
from .guard import INVALID_REQUEST

__all__ = ["LineSession"]

logger = logging.getLogger(__name__)

METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
MODERN_KEY = "io.modelcontextprotocol/protocolVersion"
"""Only 2026-07-28 requests carry it in ``_meta`` (the SDK's era test)."""
_ABANDON_S = 5.0
"""How long the courtesy ``notifications/cancelled`` for an abandoned request may take."""
_INVALID_PARAMS = {"code": INVALID_PARAMS, "message": "Invalid request parameters", "data": ""}
_LOG_LEVELS = frozenset({"debug", "info", "notice", "warning", "error", "critical", "alert",
                         "emergency"})  # fmt: skip

Send = Callable[[str], Awaitable[None]]


class _Invalid(Exception):
    """The SDK's ``-32602 Invalid request parameters``."""


class _Error(Exception):
    def __init__(self, code: int, message: str, data: Any = None, *, has_data: bool = True):
        super().__init__(message)
        self.error: dict[str, Any] = {"code": code, "message": message}
        if has_data:
            self.error["data"] = data


# --- what the SDK's models accept (its surface validation, rebuilt for our methods)


def _text(value: Any, *, optional: bool = False) -> bool:
    return isinstance(value, str) or (optional and value is None)


def _lax_int(value: Any) -> bool:
    if isinstance(value, bool | int):
        return True
    return isinstance(value, float) and value == int(value) if isinstance(value, float) else False


def _meta_ok(params: dict[str, Any]) -> bool:
    meta = params.get("_meta")
    if meta is None:
        return True
    if not isinstance(meta, dict):
        return False
    token = meta.get("progressToken")
    return token is None or isinstance(token, str) or _lax_int(token)


def _text_map(value: Any) -> bool:
    return value is None or (isinstance(value, dict) and all(isinstance(v, str)
                                                             for v in value.values()))  # fmt: skip


def _paginated(p: dict[str, Any]) -> bool:
    return _text(p.get("cursor"), optional=True)


def _uri(p: dict[str, Any]) -> bool:
    return _text(p.get("uri"))


def _prompt(p: dict[str, Any]) -> bool:
    return _text(p.get("name")) and _text_map(p.get("arguments"))


def _call(p: dict[str, Any]) -> bool:
    task = p.get("task")
    ttl = task.get("ttl") if isinstance(task, dict) else None
    return (
        _text(p.get("name"))
        and (p.get("arguments") is None or isinstance(p.get("arguments"), dict))
        and (task is None or (isinstance(task, dict) and (ttl is None or _lax_int(ttl))))
    )


def _set_level(p: dict[str, Any]) -> bool:
    return p.get("level") in _LOG_LEVELS


def _complete(p: dict[str, Any]) -> bool:
    ref, argument, context = p.get("ref"), p.get("argument"), p.get("context")
    if not isinstance(ref, dict) or not isinstance(argument, dict):
        return False
    if ref.get("type") == "ref/prompt":
        ref_ok = _text(ref.get("name"))
    else:
        ref_ok = ref.get("type") == "ref/resource" and _text(ref.get("uri"))
    context_ok = context is None or (isinstance(context, dict)
                                     and _text_map(context.get("arguments")))  # fmt: skip
    return ref_ok and _text(argument.get("name")) and _text(argument.get("value")) and context_ok


def _any(p: dict[str, Any]) -> bool:
    return True


def _initialize(p: dict[str, Any]) -> bool:
    info = p.get("clientInfo")
    return (
        _text(p.get("protocolVersion"))
        and isinstance(p.get("capabilities"), dict)
        and isinstance(info, dict)
        and _text(info.get("name"))
        and _text(info.get("version"))
    )


_CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "initialize": _initialize,
    "ping": _any,
    "tools/list": _paginated,
    "tools/call": _call,
    "resources/list": _paginated,
    "resources/templates/list": _paginated,
    "resources/read": _uri,
    "resources/subscribe": _uri,
    "resources/unsubscribe": _uri,
    "prompts/list": _paginated,
    "prompts/get": _prompt,
    "logging/setLevel": _set_level,
    "completion/complete": _complete,
}
"""The requests of the handshake era and what the SDK's models accept in their params."""
_NOT_SERVED = frozenset({"logging/setLevel", "completion/complete"})
"""Spec methods our server does not register (nor advertise): checked, then ``-32601``."""


class LineSession:
    """One handshake-era MCP session of ``core``'s node; ``send`` writes one line to the
    client. Tool calls and reads run in ``tg`` (the session's task group)."""

    def __init__(
        self, core: ServerCore, send: Send, tg: anyio.abc.TaskGroup, limits: LimitsConfig
    ) -> None:
        self._core = core
        self._send = send
        self._tg = tg
        self._calls = DirectCalls(core.answer, tg, max_in_flight=limits.mcp_calls_in_flight)
        self.initialized = False
        """``notifications/initialized`` came."""
        self._next_id = 1
        self._waiting: dict[int, tuple[anyio.Event, list[dict[str, Any]]]] = {}
        self._reads: dict[Any, anyio.CancelScope] = {}

    @property
    def taken(self) -> int:
        """Tool calls and pings answered (for tests)."""
        return self._calls.taken

    async def handle(self, msg: dict[str, Any]) -> None:
        """One checked JSON-RPC message from the client."""
        if "method" not in msg:
            self._response(msg)
        elif "id" not in msg:
            self._notification(msg)
        else:
            await self._request(msg)

    # --- notifications and responses from the client

    def _notification(self, msg: dict[str, Any]) -> None:
        method = msg["method"]
        if method == "notifications/initialized":
            self.initialized = True
        elif method == "notifications/cancelled" and not self._calls.cancel(msg):
            params = msg.get("params")
            request_id = params.get("requestId") if isinstance(params, dict) else None
            read = self._reads.get(request_id) if isinstance(request_id, str | int) else None
            if read is not None:  # a read cancelled: no answer (as the SDK)
                read.cancel()
        # progress, roots/list_changed and anything else: nothing to do (the SDK drops them)

    def _response(self, msg: dict[str, Any]) -> None:
        waiting = self._waiting.get(msg.get("id"))  # type: ignore[arg-type]
        if waiting is None:
            logger.debug("mcp.session_unexpected_response id=%r", msg.get("id"))
            return
        event, box = waiting
        box.append(msg)
        event.set()

    # --- server → client requests

    async def _elicit(self, params: dict[str, Any]) -> dict[str, Any]:
        msg_id, self._next_id = self._next_id, self._next_id + 1
        event, box = anyio.Event(), list[dict[str, Any]]()
        self._waiting[msg_id] = (event, box)
        sent = False
        try:
            request = {"jsonrpc": "2.0", "id": msg_id, "method": "elicitation/create",
                       "params": params}  # fmt: skip
            await self._send(encode(request))
            sent = True
            await event.wait()
        except anyio.get_cancelled_exc_class():
            if sent:  # the call was cancelled: tell the client to stop asking (as the SDK)
                note = {"requestId": msg_id, "reason": "caller cancelled"}
                with anyio.move_on_after(_ABANDON_S, shield=True):
                    await self._send(encode({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                             "params": note}))  # fmt: skip
            raise
        finally:
            self._waiting.pop(msg_id, None)
        reply = box[0]
        if "error" in reply:
            error = reply["error"]
            wire = {"code": int(error["code"]), "message": error["message"]}
            if error.get("data") is not None:
                wire["data"] = error["data"]
            raise ElicitRefused(wire)
        result: dict[str, Any] = reply["result"]
        return result

    async def send_resource_updated(self, uri: str) -> None:
        """``notifications/resources/updated`` (the session subscribed to ``uri``)."""
        await self._send(encode({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                                 "params": {"uri": uri}}))  # fmt: skip

    # --- requests

    async def _request(self, msg: dict[str, Any]) -> None:
        msg_id, method = msg["id"], msg["method"]
        params = msg.get("params")
        p: dict[str, Any] = params if isinstance(params, dict) else {}
        try:
            if (
                method != "initialize"
                and isinstance(p.get("_meta"), dict)
                and MODERN_KEY in p["_meta"]
            ):
                raise _Error(INVALID_REQUEST, "this connection serves the handshake protocol era; "
                             "requests carrying the 2026-07-28 envelope are not accepted on it",
                             has_data=False)  # fmt: skip
            if method == "tools/call" and params is not None:  # refused before any check
                failure = checked_call(p.get("name"), p.get("arguments"))
                if isinstance(failure, ToolFailure):
                    result = refusal(failure)
                    await self._send(encode({"jsonrpc": "2.0", "id": msg_id, "result": result}))
                    return
            check = _CHECKS.get(method)
            if check is None:
                raise _Error(METHOD_NOT_FOUND, "Method not found", method)
            if not (_meta_ok(p) and check(p)):
                raise _Invalid
            if method in _NOT_SERVED:
                raise _Error(METHOD_NOT_FOUND, "Method not found", method)
            if method == "tools/call":
                await self._calls.take(msg, self._send)
                return
            if method == "resources/read":
                if msg_id in self._reads:
                    raise _Error(INVALID_REQUEST, f"Invalid Request: request id {msg_id!r} is "
                                 "still in use", has_data=False)  # fmt: skip
                scope = self._reads[msg_id] = anyio.CancelScope()
                self._tg.start_soon(self._read, msg_id, p["uri"], scope)
                return
            result = self._answer(method, p)
        except _Invalid:
            await self._error(msg_id, _INVALID_PARAMS)
            return
        except _Error as exc:
            await self._error(msg_id, exc.error)
            return
        await self._send(encode({"jsonrpc": "2.0", "id": msg_id, "result": result}))

    def _answer(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        if method == "initialize":
            result = initialize_answer(p, sdk=self._core.sdk)
            if result is None:  # pragma: no cover - the core serves checked SDKs only
                raise _Error(METHOD_NOT_FOUND, "Method not found", method)
            caps = p.get("capabilities")
            can_ask = isinstance(caps, dict) and caps.get("elicitation") is not None
            self._calls.open(elicit=self._elicit if can_ask else None)
            return result
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": listed_tools()}
        if method == "resources/list":
            return {"resources": resource_list()}
        if method == "resources/templates/list":
            return {"resourceTemplates": []}
        if method == "prompts/list":
            return {"prompts": []}
        if method == "prompts/get":
            raise _Error(0, f"Unknown prompt: {p['name']}", has_data=False)
        subs = self._core.subscriptions
        if method == "resources/subscribe":
            try:
                subs.subscribe(p["uri"], self)
            except ValueError as exc:  # the SDK sends a handler's error as code 0
                raise _Error(0, str(exc), has_data=False) from exc
            return {}
        if method == "resources/unsubscribe":
            subs.unsubscribe(p["uri"], self)
            return {}
        raise _Error(METHOD_NOT_FOUND, "Method not found", method)  # pragma: no cover

    async def _read(self, msg_id: Any, uri: str, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                await self._answer_read(msg_id, uri)
        finally:
            self._reads.pop(msg_id, None)

    async def _answer_read(self, msg_id: Any, uri: str) -> None:
        try:
            contents = await read_resource(self._core.node, uri, self._core.front_stats)
        except Exception as exc:  # the SDK's words for a reader that raised
            logger.warning("mcp.resource_failed uri=%s %s", uri[:100], type(exc).__name__)
            await self._error(msg_id, {"code": 0, "message": f"Error reading resource {uri}"})
            return
        if contents is None:
            unknown = {"code": INVALID_PARAMS, "message": f"Unknown resource: {uri}",
                       "data": {"uri": uri}}  # fmt: skip
            await self._error(msg_id, unknown)
            return
        await self._send(encode({"jsonrpc": "2.0", "id": msg_id,
                                 "result": {"contents": contents}}))  # fmt: skip

    async def _error(self, msg_id: Any, error: dict[str, Any]) -> None:
        await self._send(encode({"jsonrpc": "2.0", "id": msg_id, "error": error}))
