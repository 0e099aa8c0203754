"""The HTTP front of ``serve --http``: bounded connections, headers, bodies and messages.

uvicorn counts connections but refuses only once a request's headers are complete, and has
no header-read timeout, so slow clients that never finish their headers hold sockets for
ever. Here:

- at most ``limits.http_connections`` connections; at the limit a new connection evicts the
  connection that has waited longest for its request headers, and is refused (closed with a
  503) when every connection is busy with a request;
- a connection that has not completed a request's headers within
  ``limits.http_header_timeout_s`` (from its start or from its previous response) is closed;
- the bearer token is checked on the headers, before any of the body is read (401);
- a body over ``limits.http_body_max_bytes`` gets 413 (from ``Content-Length`` at once, else
  as soon as it grows past the limit), a body not complete within ``limits.http_body_timeout_s``
  gets 408, and a POSTed JSON-RPC message that :func:`.guard.check_message` refuses gets 400
  with the JSON-RPC error. Each refusal closes the connection, is logged and counted in
  :class:`.guard.FrontStats`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..config import LimitsConfig
from .guard import FrontStats, check_message

__all__ = ["ConnectionGuard", "guard_app"]

logger = logging.getLogger(__name__)
_LOG_EVERY_S = 10.0
_last_logged: dict[str, float] = {}


def _log_refusal(kind: str, count: int, now: float, msg: str, *args: object) -> None:
    """A warning for the first refusal of a kind, then at most one per 10 s (a flood of
    slow clients must not become a flood of log lines); the counters have every one."""
    if now - _last_logged.get(kind, -_LOG_EVERY_S) >= _LOG_EVERY_S:
        _last_logged[kind] = now
        logger.warning("http.%s " + msg + " (%d so far)", kind, *args, count)


_REFUSED_BODY = b"too many HTTP connections"
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_REFUSED_BODY), _REFUSED_BODY)
)


class ConnectionGuard:
    """The live connections of one HTTP front and which of them still await headers."""

    def __init__(self, limits: LimitsConfig, stats: FrontStats) -> None:
        self.limits = limits
        self.stats = stats
        self.waiting: dict[_GuardedH11, float] = {}  # awaiting headers, since (loop time)
        self.busy: set[_GuardedH11] = set()

    def protocol_class(self) -> type[H11Protocol]:
        """The uvicorn ``http`` protocol class bound to this guard."""
        return type("GuardedH11", (_GuardedH11,), {"guard": self})

    def admit(self, conn: _GuardedH11) -> bool:
        if len(self.waiting) + len(self.busy) >= self.limits.http_connections:
            if self.waiting:
                oldest = min(self.waiting, key=self.waiting.__getitem__)
                self.stats.http_connections_evicted += 1
                _log_refusal("evicted", self.stats.http_connections_evicted, conn.loop.time(),
                             "%s (still sending headers; connection limit %d)", oldest.client,
                             self.limits.http_connections)  # fmt: skip
                oldest.drop()
            else:
                self.stats.http_connections_refused += 1
                _log_refusal("refused", self.stats.http_connections_refused, conn.loop.time(),
                             "%s (connection limit %d, all busy)", conn.client,
                             self.limits.http_connections)  # fmt: skip
                return False
        return True


class _GuardedH11(H11Protocol):
    guard: ConnectionGuard
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(self):
            transport.write(_REFUSED)
            transport.close()
            return
        self._sync()

    def connection_lost(self, exc: Exception | None) -> None:
        self.drop()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._sync()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._sync()

    def drop(self) -> None:
        """Forget this connection and close it."""
        self.guard.waiting.pop(self, None)
        self.guard.busy.discard(self)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _sync(self) -> None:
        if self.transport.is_closing():
            self.drop()
        elif self.cycle is not None and not self.cycle.response_complete:  # in a request
            self.guard.waiting.pop(self, None)
            self.guard.busy.add(self)
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
        elif self not in self.guard.waiting:  # awaiting the next request's headers
            self.guard.busy.discard(self)
            self.guard.waiting[self] = self.loop.time()
            timeout = self.guard.limits.http_header_timeout_s
            self._deadline = self.loop.call_later(timeout, self._headers_late)

    def _headers_late(self) -> None:
        self._deadline = None
        if self in self.guard.waiting:
            stats = self.guard.stats
            stats.http_header_timeouts += 1
            _log_refusal("header_timeout", stats.http_header_timeouts, self.loop.time(),
                         "%s (no complete request headers in %.1f s)", self.client,
                         self.guard.limits.http_header_timeout_s)  # fmt: skip
            self.drop()


def _plain(status: int, text: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> list[Any]:
    body = text.encode()
    headers = [(b"content-type", b"text/plain"), (b"connection", b"close"), *extra]
    return [{"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body}]  # fmt: skip


def guard_app(
    app: Any,
    *,
    limits: LimitsConfig,
    stats: FrontStats,
    token: str | None = None,
    validate: Callable[[dict[str, Any]], str | None] | None = None,
) -> Any:
    """Wrap the SDK's ASGI app: token, body size and time, then the JSON-RPC message check."""
    expected = f"Bearer {token}".encode() if token else None
    cap = limits.http_body_max_bytes

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan
            await app(scope, receive, send)
            return

        async def reply(messages: list[Any]) -> None:
            for message in messages:
                await send(message)

        headers = dict(scope.get("headers", []))
        if expected is not None and not hmac.compare_digest(
            headers.get(b"authorization", b""), expected
        ):
            stats.http_unauthorized += 1
            _log_refusal("unauthorized", stats.http_unauthorized, anyio.current_time(), "%s",
                         scope.get("client"))  # fmt: skip
            await reply(_plain(401, "missing or wrong token", ((b"www-authenticate", b"Bearer"),)))
            return
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > cap:
            stats.http_too_large += 1
            _log_refusal("too_large", stats.http_too_large, anyio.current_time(),
                         "%s content-length %r", scope.get("client"), length[:20])  # fmt: skip
            await reply(_plain(413, f"request body over {cap} bytes"))
            return
        chunks: list[bytes] = []
        size = 0
        with anyio.move_on_after(limits.http_body_timeout_s) as timer:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > cap:
                    stats.http_too_large += 1
                    _log_refusal("too_large", stats.http_too_large, anyio.current_time(),
                                 "%s (body over %d bytes)", scope.get("client"), cap)  # fmt: skip
                    await reply(_plain(413, f"request body over {cap} bytes"))
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        if timer.cancelled_caught:
            stats.http_body_timeouts += 1
            _log_refusal("body_timeout", stats.http_body_timeouts, anyio.current_time(),
                         "%s (body not complete in %.1f s)", scope.get("client"),
                         limits.http_body_timeout_s)  # fmt: skip
            await reply(_plain(408, "request body too slow"))
            return
        body = b"".join(chunks)
        if scope.get("method") == "POST" and body:
            checked = check_message(body, max_bytes=limits.mcp_message_max_bytes,
                                    validate=validate)  # fmt: skip
            if checked.reply is not None:
                stats.count_refused(checked)
                _log_refusal("malformed", stats.malformed_messages + stats.oversized_messages,
                             anyio.current_time(), "%s", checked.summary())  # fmt: skip
                await reply([
                    {"type": "http.response.start", "status": 400, "headers": [
                        (b"content-type", b"application/json"), (b"connection", b"close")]},
                    {"type": "http.response.body", "body": json.dumps(checked.reply).encode()},
                ])  # fmt: skip
                return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await app(scope, replay, send)

    return guarded
