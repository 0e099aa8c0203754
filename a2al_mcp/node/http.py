"""HTTP/1.1 over one A2AL stream, both ways (h11): ``fetch`` and in-process serving (§5.5).

a2ald's ``fetch``, ``tunnel`` and ``/aid/`` gateway write plain HTTP/1.1 on a stream, so an
agent served here is reachable from them, and :func:`request_over` reaches a2ald agents whose
``service_tcp`` is an HTTP server. The caller's AID comes from the verified QUIC connection and
reaches handlers as :attr:`HttpRequest.caller` (ASGI: ``scope["extensions"]["a2al"]``);
headers that claim a caller identity are stripped from inbound requests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final

import anyio
import h11
from anyio import EndOfStream

from ..errors import DecodeError, LimitExceeded
from ..identity.aid import Aid
from ..transport.peer import PeerStream

__all__ = [
    "CALLER_HEADERS",
    "HttpHandler",
    "HttpRequest",
    "HttpResponse",
    "StreamedResponse",
    "request_over",
    "serve_asgi",
    "serve_http",
]

MAX_BODY: Final = 4 * 1024 * 1024
"""Largest body read (a2ald caps fetch responses at 4 MiB)."""
CALLER_HEADERS: Final = frozenset({"x-a2al-caller", "x-a2al-caller-aid", "x-caller-aid"})
"""Inbound headers removed before a handler sees the request (the caller is the verified AID)."""
_READ: Final = 65536


def _header(headers: tuple[tuple[str, str], ...], name: str, default: str | None) -> str | None:
    name = name.lower()
    return next((v for k, v in headers if k == name), default)


@dataclasses.dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    caller: Aid
    """The verified AID of the peer that sent the request."""
    local: Aid
    """The local identity the request was addressed to."""

    def header(self, name: str, default: str | None = None) -> str | None:
        return _header(self.headers, name, default)


@dataclasses.dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    reason: str = ""

    def header(self, name: str, default: str | None = None) -> str | None:
        return _header(self.headers, name, default)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


def _pairs(headers: Sequence[tuple[bytes, bytes]] | Any) -> tuple[tuple[str, str], ...]:
    return tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in headers)


async def _next_event(conn: h11.Connection, stream: PeerStream) -> Any:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise DecodeError(f"bad HTTP from peer: {exc}") from exc
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive(_READ)
        except EndOfStream:
            data = b""
        conn.receive_data(data)


async def _read_body(conn: h11.Connection, stream: PeerStream, limit: int) -> tuple[bytes, Any]:
    body = bytearray()
    while True:
        event = await _next_event(conn, stream)
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > limit:
                raise LimitExceeded(f"HTTP body over {limit} bytes")
        else:
            return bytes(body), event


class StreamedResponse:
    """An HTTP response whose body is read as it arrives (server-sent events, large bodies).

    Iterate it for body chunks; ``aclose()`` (or the end of the body) ends the stream."""

    def __init__(
        self, head: h11.Response, conn: h11.Connection, stream: PeerStream, max_body: int | None
    ) -> None:
        self.status: int = head.status_code
        self.headers: tuple[tuple[str, str], ...] = _pairs(head.headers)
        self.reason: str = head.reason.decode("latin-1")
        self._conn = conn
        self._stream = stream
        self._max_body = max_body
        self._done = False

    def header(self, name: str, default: str | None = None) -> str | None:
        return _header(self.headers, name, default)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        try:
            while not self._done:
                event = await _next_event(self._conn, self._stream)
                if not isinstance(event, h11.Data):
                    self._done = True
                    break
                size += len(event.data)
                if self._max_body is not None and size > self._max_body:
                    raise LimitExceeded(f"HTTP body over {self._max_body} bytes")
                yield bytes(event.data)
        finally:
            await self.aclose()

    async def read(self) -> bytes:
        """The whole (remaining) body."""
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        self._done = True
        await self._stream.aclose()


async def request_over(
    stream: PeerStream,
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    max_body: int | None = MAX_BODY,
) -> StreamedResponse:
    """Send one HTTP/1.1 request on ``stream`` (``Host: a2al-agent`` unless given;
    ``Connection: close``) and return the response once its head has arrived; the body
    follows as it comes. The response owns ``stream``.

    Raises:
        DecodeError: the answer is not HTTP/1.1.
    """
    if not path.startswith("/"):
        path = "/" + path
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)
    hdrs = [(k.lower(), v) for k, v in headers]
    names = {k for k, _ in hdrs}
    if "host" not in names:
        hdrs.insert(0, ("host", "a2al-agent"))
    if "content-length" not in names and "transfer-encoding" not in names:
        hdrs.append(("content-length", str(len(body))))
    if "connection" not in names:
        hdrs.append(("connection", "close"))
    out = conn.send(h11.Request(method=method.upper(), target=path, headers=hdrs))
    if body:
        out += conn.send(h11.Data(data=body))
    out += conn.send(h11.EndOfMessage())
    await stream.send(out)
    event = await _next_event(conn, stream)
    while isinstance(event, h11.InformationalResponse):
        event = await _next_event(conn, stream)
    if not isinstance(event, h11.Response):
        raise DecodeError(f"expected an HTTP response, got {type(event).__name__}")
    return StreamedResponse(event, conn, stream, max_body)


async def _write_response(conn: h11.Connection, stream: PeerStream, resp: HttpResponse) -> None:
    hdrs = [(k.lower(), v) for k, v in resp.headers if k.lower() != "content-length"]
    hdrs.append(("content-length", str(len(resp.body))))
    out = conn.send(h11.Response(status_code=resp.status, headers=hdrs,
                                 reason=resp.reason.encode() or b""))  # fmt: skip
    if resp.body:
        out += conn.send(h11.Data(data=resp.body))
    out += conn.send(h11.EndOfMessage())
    await stream.send(out)


async def _serve_requests(
    stream: PeerStream,
    respond: Callable[[h11.Connection, HttpRequest], Awaitable[None]],
    *,
    local: Aid,
    max_body: int,
    admitted: Callable[[], bool] | None = None,
) -> None:
    """Read HTTP/1.1 requests from ``stream`` and let ``respond`` answer each, until the peer
    stops or a response closes the connection. Bad requests get 400/413. ``admitted`` is
    asked before each request: a caller no longer admitted (denied since the stream opened,
    the service withdrawn) has the stream reset with the refusal a new stream would get (a
    client keeps streams open from request to request)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    while True:
        try:
            event = await _next_event(conn, stream)
        except DecodeError:
            await _send_error(conn, stream, 400, b"bad request")
            return
        if not isinstance(event, h11.Request):
            return  # ConnectionClosed, PAUSED, or anything unexpected
        try:
            body, _ = await _read_body(conn, stream, max_body)
        except LimitExceeded:
            await _send_error(conn, stream, 413, b"request body too large")
            return
        if admitted is not None and not admitted():
            stream.reset()  # refused as a new stream would be (ERR_ACCESS_DENIED)
            return
        request = HttpRequest(
            method=event.method.decode("ascii"),
            path=event.target.decode("latin-1"),
            headers=tuple(kv for kv in _pairs(event.headers) if kv[0] not in CALLER_HEADERS),
            body=body,
            caller=stream.peer,
            local=local,
        )
        await respond(conn, request)
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return


async def serve_http(
    stream: PeerStream,
    handler: HttpHandler,
    *,
    local: Aid,
    max_body: int = MAX_BODY,
    admitted: Callable[[], bool] | None = None,
) -> None:
    """Answer HTTP/1.1 requests on ``stream`` with ``handler`` until the peer stops (a
    handler error becomes a 500 that says nothing about the error)."""

    async def respond(conn: h11.Connection, request: HttpRequest) -> None:
        try:
            resp = await handler(request)
        except Exception:
            resp = HttpResponse(500, (("content-type", "text/plain"),), b"internal error")
        await _write_response(conn, stream, resp)

    await _serve_requests(stream, respond, local=local, max_body=max_body, admitted=admitted)


async def _send_error(conn: h11.Connection, stream: PeerStream, status: int, text: bytes) -> None:
    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
        await _write_response(conn, stream, HttpResponse(status, (("connection", "close"),), text))


def _asgi_scope(req: HttpRequest) -> dict[str, Any]:
    path, _, query = req.path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": req.method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in req.headers],
        "client": None,
        "server": None,
        "extensions": {"a2al": {"caller": str(req.caller), "local": str(req.local)}},
    }


async def serve_asgi(
    stream: PeerStream,
    app: Any,
    *,
    local: Aid,
    max_body: int = MAX_BODY,
    admitted: Callable[[], bool] | None = None,
) -> None:
    """Serve an ASGI 3 application on ``stream``. Response bodies are streamed as the app
    sends them (chunked when it gives no length), so server-sent events flow as they come."""

    async def respond(conn: h11.Connection, request: HttpRequest) -> None:
        await _run_asgi(conn, stream, app, request)

    await _serve_requests(stream, respond, local=local, max_body=max_body, admitted=admitted)


async def _run_asgi(conn: h11.Connection, stream: PeerStream, app: Any, req: HttpRequest) -> None:
    sent_request = False
    finished = anyio.Event()
    head = b""  # a response head held to go with the first body bytes (one stream write)

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": req.body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal head
        if message["type"] == "http.response.start":
            headers = [(k.decode("latin-1").lower(), v.decode("latin-1"))
                       for k, v in message.get("headers", [])]  # fmt: skip
            out = conn.send(h11.Response(status_code=int(message["status"]),
                                         headers=headers)) or b""  # fmt: skip
            if any(k == "content-length" for k, _ in headers):
                head = out  # a whole body follows: one write with it
            else:  # a stream (server-sent events): its head goes now
                await stream.send(out)
        elif message["type"] == "http.response.body" and not finished.is_set():
            data = bytes(message.get("body", b""))
            out = head + ((conn.send(h11.Data(data=data)) or b"") if data else b"")
            head = b""
            if not message.get("more_body", False):
                out += conn.send(h11.EndOfMessage()) or b""
                finished.set()
            if out:
                await stream.send(out)

    try:
        await app(_asgi_scope(req), receive, send)
    except Exception:
        if conn.our_state is h11.SEND_RESPONSE:
            await _write_response(conn, stream, HttpResponse(500, (), b"internal error"))
            return
        raise  # mid-body: the stream is reset by the caller
    if head:  # a head and no body message
        await stream.send(head)
    if conn.our_state is h11.SEND_RESPONSE:  # the app sent nothing
        await _write_response(conn, stream, HttpResponse(500, (), b"no response"))
    elif conn.our_state is h11.SEND_BODY:
        await stream.send(conn.send(h11.EndOfMessage()) or b"")
    finished.set()
