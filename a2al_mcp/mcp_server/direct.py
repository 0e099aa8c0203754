"""Tool calls of an initialized session answered by the line front itself, not the SDK.

Through the SDK a ``tools/call`` crosses five tasks and memory streams (the SDK's stdio
reader, the era relay, the dispatcher, a handler task, the stdio writer) and is parsed and
validated twice more after :func:`.guard.check_message`: about 14 event-loop turns and
0.5 ms of a 2-core machine per call, more than many tools take. :class:`DirectCalls` takes
the requests whose answer needs nothing of the SDK's session once ``initialize`` was
answered: ``ping``, and ``tools/call`` of every tool but ``identity_export`` (which asks the
user through the session), progress included (``notifications/progress`` when the call
carries a ``progressToken``); a ``notifications/cancelled`` naming one of its calls cancels
it (no answer, as the SDK does). Each call runs in its own task of the session's task group,
and the answer is the one the SDK would send (same JSON fields, same order): the tool
contract (closed arguments, ``CODE: sentence``, results checked against their models,
``unread_mail``) is the same code (:func:`~.catalogue.tool_call_result`). Everything else, and
everything before ``initialize`` was answered, goes to the SDK.

The node's own sessions (:mod:`.session`, no SDK at all) run their tool calls here too:
opened by :meth:`DirectCalls.open`, and given ``elicit`` (the session's
``elicitation/create``), ``identity_export`` is taken as well.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from .catalogue import Elicit, ElicitRefused, Progress, ToolAnswer

__all__ = ["DirectCalls", "Progress", "ToolAnswer", "encode"]

logger = logging.getLogger(__name__)

Send = Callable[[str], Awaitable[None]]

_NOT_DIRECT = frozenset({"identity_export"})  # elicits a passphrase through the SDK session


def encode(message: dict[str, Any]) -> str:
    """A JSON-RPC message as one line of text, as the SDK writes it (compact, UTF-8)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n"


def _token(params: dict[str, Any]) -> tuple[bool, Any]:
    """(usable, progressToken): a call whose ``_meta`` is not an object or whose token is
    neither text nor an integer is left to the SDK."""
    meta = params.get("_meta")
    if meta is None:
        return True, None
    if not isinstance(meta, dict):
        return False, None
    token = meta.get("progressToken")
    ok = (
        token is None
        or isinstance(token, str)
        or (isinstance(token, int) and not isinstance(token, bool))
    )
    return ok, token


class DirectCalls:
    """The direct answers of one session; ``answer`` runs a tool call (see module doc)."""

    def __init__(
        self,
        answer: ToolAnswer,
        tg: anyio.abc.TaskGroup,
        *,
        max_in_flight: int = 64,
    ) -> None:
        self._answer = answer
        self._elicit: Elicit | None = None
        self._tg = tg
        self._max_in_flight = max_in_flight
        self.refused = 0
        """Tool calls refused because ``max_in_flight`` were running."""
        self._init_id: Any = None
        self.ready = False
        """``initialize`` was answered: requests may be taken."""
        self._own = False
        """Opened by :meth:`open`: no SDK behind, every tool call is taken."""
        self._running: dict[Any, anyio.CancelScope] = {}
        self.taken = 0
        """Requests answered directly (for tests and the curious)."""

    def open(self, *, elicit: Elicit | None = None) -> None:
        """The session is initialized (its owner answered ``initialize``): take every tool
        call; ``identity_export`` asks through ``elicit`` (None: the client cannot ask)."""
        self.ready = self._own = True
        self._elicit = elicit

    def note_outgoing(self, text: str) -> None:
        """See what the SDK sends: its answer to ``initialize`` opens the session."""
        if self.ready or self._init_id is None:
            return
        try:
            msg = json.loads(text)
        except ValueError:
            return
        if isinstance(msg, dict) and msg.get("id") == self._init_id and "result" in msg:
            self.ready = True

    async def take(self, msg: dict[str, Any], send: Send) -> bool:
        """Answer ``msg`` (a checked JSON-RPC message) directly when it is one to take:
        True if taken (the SDK must not see it)."""
        method = msg.get("method")
        if not self.ready:
            if method == "initialize" and "id" in msg:
                self._init_id = msg["id"]
            return False
        if "id" not in msg:
            return self.cancel(msg) if method == "notifications/cancelled" else False
        msg_id = msg["id"]
        if method == "ping":
            await send(encode({"jsonrpc": "2.0", "id": msg_id, "result": {}}))
            self.taken += 1
            return True
        if method != "tools/call":
            return False
        if msg_id in self._running:
            if not self._own:
                return False
            message = f"Invalid Request: request id {msg_id!r} is still in use"
            await send(encode({"jsonrpc": "2.0", "id": msg_id,
                               "error": {"code": -32600, "message": message}}))  # fmt: skip
            return True
        params = msg.get("params") or {}
        usable, token = _token(params)
        if not usable and self._own:  # checked by the session: a token the SDK ignores too
            usable, token = True, None
        if not usable or (params.get("name") in _NOT_DIRECT and not self._own):
            return False
        if len(self._running) >= self._max_in_flight:  # a client flooding calls: bounded
            self.refused += 1
            message = (
                f"LIMIT: {self._max_in_flight} tool calls of this session are "
                "still running; wait for their answers (limits.mcp_calls_in_flight)"
            )
            await send(encode({"jsonrpc": "2.0", "id": msg_id,
                               "error": {"code": -32000, "message": message}}))  # fmt: skip
            return True
        scope = anyio.CancelScope()
        self._running[msg_id] = scope
        self.taken += 1
        self._tg.start_soon(self._call, msg_id, params, token, scope, send)
        return True

    def cancel(self, msg: dict[str, Any]) -> bool:
        """Cancel the call a ``notifications/cancelled`` names: True if it was one of ours."""
        params = msg.get("params")
        request_id = params.get("requestId") if isinstance(params, dict) else None
        scope = self._running.get(request_id) if isinstance(request_id, str | int) else None
        if scope is None:
            return False
        scope.cancel()
        return True

    async def _call(
        self, msg_id: Any, params: dict[str, Any], token: Any, scope: anyio.CancelScope, send: Send
    ) -> None:
        progress: Progress | None = None
        if token is not None:

            async def progress(done: float, total: float, message: str) -> None:
                note = {"progressToken": token, "progress": done, "total": total,
                        "message": message}  # fmt: skip
                await send(encode({"jsonrpc": "2.0", "method": "notifications/progress",
                                   "params": note}))  # fmt: skip

        try:
            with scope:
                name, arguments = params.get("name"), params.get("arguments")
                try:
                    if self._elicit is None:
                        result = await self._answer(name, arguments, progress)
                    else:
                        result = await self._answer(name, arguments, progress, self._elicit)
                except ElicitRefused as exc:  # the client's error answers the call (as the SDK)
                    await send(encode({"jsonrpc": "2.0", "id": msg_id, "error": exc.error}))
                    return
                await send(encode({"jsonrpc": "2.0", "id": msg_id, "result": result}))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            logger.info("mcp.direct_unsent id=%r %s", msg_id, type(exc).__name__)
        finally:
            self._running.pop(msg_id, None)
