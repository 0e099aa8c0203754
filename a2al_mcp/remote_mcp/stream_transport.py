"""An ``httpx2`` (or ``httpx``) transport whose requests travel on A2AL streams: the ``mcp``
SDK's streamable-HTTP client, given an ``AsyncClient`` with this transport, talks to the MCP
server an agent exposes on its AID (:func:`~.expose.expose_mcp`).

Requests travel as HTTP/1.1 on node streams (:meth:`Node.open_stream`) kept open for the
next request (keep-alive, one request at a time on each; a stream is opened when none is
idle, at most :data:`IDLE_MAX` idle ones are kept; one whose connection ended while idle is
dropped, and a request whose kept stream turns out ended or reset before a byte of the
answer came is sent once more on a new stream). Each stream is admitted by the callee (its
allow/deny) when it opens; the caller the callee sees is the connection's verified AID,
whichever stream carries the request. The response body is read whole, at most
``max_body`` bytes, within ``timeout_s``. Past either limit the stream is dropped and the
SDK gets a JSON-RPC error naming the limit (so the call waiting for it fails at once). A2AL
failures (refused, unreachable, not found) become JSON-RPC errors too, carrying the A2AL
error code in ``data`` (:data:`A2AL_CODE`), so the caller can tell them from the remote
server's own errors. The ``GET`` stream a streamable-HTTP client opens for server-initiated
messages is answered 405 here, without reaching the remote: a remote server cannot reach
back into the caller.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import anyio
import h11

from ..errors import A2ALError, AgentCallError, DecodeError, LimitExceeded, RequestTimeout

if TYPE_CHECKING:
    from ..identity.aid import Aid
    from ..node.node import Node
    from ..transport.peer import PeerStream

__all__ = ["A2AL_CODE", "IDLE_MAX", "StreamTransport"]

IDLE_MAX: Final = 8
"""Idle streams kept per remote agent (one per concurrent call that has finished)."""
_READ: Final = 65536

A2AL_CODE: Final = "a2al_code"
"""Key in a JSON-RPC error's ``data`` of an error raised on this side (not the remote's)."""
_MCP_TYPES: Final = ("application/json", "text/event-stream")
"""What an MCP server answers a POST with (202 aside)."""
_HOP: Final = frozenset({"host", "connection", "content-length", "transfer-encoding",
                         "keep-alive", "upgrade"})  # fmt: skip


def _local_error(http: Any, request: Any, status: int, error: A2ALError) -> Any:
    """A JSON-RPC error (id null: the SDK answers the request it was for) for ``error``."""
    body = {"jsonrpc": "2.0", "id": None,
            "error": {"code": -32000, "message": f"{error.code}: {error}",
                      "data": {A2AL_CODE: error.code}}}  # fmt: skip
    return http.Response(status, headers={"content-type": "application/json"},
                         content=json.dumps(body).encode(), request=request)  # fmt: skip


_Answer = tuple[int, list[tuple[str, str]], bytes]
"""An answer read whole: status, headers (lowercase names), body."""


class _KeptStream:
    """A stream carrying HTTP/1.1 requests one after another (h11's client state)."""

    def __init__(self, stream: PeerStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)
        self.used = False
        """A request went on it before the one under way."""
        self.heard = False
        """Something of the answer under way arrived."""

    def usable(self) -> bool:
        """Whether the idle stream may carry a request: nothing arrived on it while idle
        and its connection is open. (Its end or reset is found by the request: see
        :meth:`StreamTransport._request`.)"""
        return not self.stream.buffered and not self.stream.connection.closed

    async def next_event(self) -> Any:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise DecodeError(f"bad HTTP from the remote agent: {exc}") from exc
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self.stream.receive(_READ)
            except anyio.EndOfStream:
                data = b""
            self.heard = self.heard or bool(data)
            self.h11.receive_data(data)

    async def exchange(self, method: str, target: str, headers: list[tuple[str, str]],
                       body: bytes, max_body: int) -> _Answer:  # fmt: skip
        """One request and its whole answer: status, headers (lowercase names), body.

        Raises:
            LimitExceeded: the body is over ``max_body`` bytes.
            DecodeError: the answer is not HTTP/1.1.
        """
        self.heard = False
        out = self.h11.send(h11.Request(method=method, target=target, headers=headers)) or b""
        if body:
            out += self.h11.send(h11.Data(data=body)) or b""
        out += self.h11.send(h11.EndOfMessage()) or b""
        await self.stream.send(out)
        event = await self.next_event()
        while isinstance(event, h11.InformationalResponse):
            event = await self.next_event()
        if not isinstance(event, h11.Response):
            raise DecodeError(f"expected an HTTP response, got {type(event).__name__}")
        head = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
        data = bytearray()
        while True:
            part = await self.next_event()
            if isinstance(part, h11.Data):
                data += part.data
                if len(data) > max_body:
                    raise LimitExceeded(f"HTTP body over {max_body} bytes")
            elif isinstance(part, h11.EndOfMessage):
                self.used = True
                return event.status_code, head, bytes(data)
            else:
                raise DecodeError("the remote agent's answer ended before its body did")

    def reusable(self) -> bool:
        """Whether both sides allow another request on the stream (and start it)."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        return False


class StreamTransport:
    """Sends each HTTP request to agent ``aid`` on a new A2AL stream of ``node``: an
    ``AsyncBaseTransport`` of ``http`` (the ``httpx2`` module, or ``httpx`` for mcp 1.x),
    whose requests and responses it takes and makes."""

    def __init__(
        self,
        node: Node,
        aid: Aid,
        *,
        http: Any = None,
        local: Aid | None = None,
        max_body: int,
        timeout_s: float,
    ) -> None:
        if http is None:
            import httpx2 as http
        self._http = http
        self._node = node
        self._aid = aid
        self._local = local
        self._max_body = max_body
        self._timeout_s = timeout_s
        self._idle: list[_KeptStream] = []
        self._closed = False

    async def __aenter__(self) -> StreamTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the idle streams (a request under way closes its own when it ends)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for kept in idle:
            await kept.stream.aclose()

    async def _kept(self) -> _KeptStream:
        while self._idle:
            kept = self._idle.pop()
            if kept.usable():
                return kept
            kept.stream.reset()
        return _KeptStream(await self._node.open_stream(self._aid, local=self._local))

    async def _request(self, method: str, target: str, headers: list[tuple[str, str]],
                       body: bytes) -> _Answer:  # fmt: skip
        kept = await self._kept()
        try:
            answer = await kept.exchange(method, target, headers, body, self._max_body)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, DecodeError):
            kept.stream.reset()
            if not kept.used or kept.heard:
                raise
            # a kept stream that ended (or whose connection ended) before a byte of the
            # answer came: the callee closed it while idle, as the request left; once more
            # on a new stream (as HTTP clients retry on a kept-alive connection the server
            # closed)
            kept = _KeptStream(await self._node.open_stream(self._aid, local=self._local))
            try:
                answer = await kept.exchange(method, target, headers, body, self._max_body)
            except BaseException:
                kept.stream.reset()
                raise
        except BaseException:
            kept.stream.reset()
            raise
        if not self._closed and len(self._idle) < IDLE_MAX and kept.reusable():
            self._idle.append(kept)
        else:
            await kept.stream.aclose()
        return answer

    async def handle_async_request(self, request: Any) -> Any:
        http = self._http
        if request.method == "GET":  # the server-to-client stream: not offered
            return http.Response(405, request=request)
        body = await request.aread()
        headers = [("host", "a2al-agent")]
        headers += [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _HOP]
        headers.append(("content-length", str(len(body))))
        target = request.url.raw_path.decode("ascii")
        try:
            with anyio.fail_after(self._timeout_s):
                status, resp_headers, data = await self._request(request.method, target,
                                                                 headers, body)  # fmt: skip
        except TimeoutError:
            timeout = RequestTimeout(f"no complete answer from {self._aid} within "
                                   f"{self._timeout_s:g} s (the call timeout)",
                                   aid=self._aid, operation="remote_mcp")  # fmt: skip
            return _local_error(http, request, 504, timeout)
        except LimitExceeded as exc:
            error = LimitExceeded(f"the answer from {self._aid} is over {self._max_body} "
                                  "bytes (the response size limit): cut off",
                                  aid=self._aid, operation="remote_mcp")  # fmt: skip
            error.__cause__ = exc
            return _local_error(http, request, 502, error)
        except A2ALError as exc:
            return _local_error(http, request, 502, exc)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            broken = AgentCallError(f"the stream to {self._aid} broke before the answer was "
                                    f"complete ({exc})", aid=self._aid,
                                    operation="remote_mcp")  # fmt: skip
            broken.__cause__ = exc
            return _local_error(http, request, 502, broken)
        ctype = next((v for k, v in resp_headers if k == "content-type"), "").lower()
        if (
            request.method == "POST"
            and not ctype.startswith(_MCP_TYPES)
            and ((status < 300 and status != 202) or status == 404)
        ):
            not_mcp = AgentCallError(f"{self._aid} does not serve MCP over A2AL: it answers a "
                                     f"POST to {target} with HTTP {status}"
                                     f"{', ' + ctype[:60] if ctype else ''}",
                                     aid=self._aid, operation="remote_mcp")  # fmt: skip
            return _local_error(http, request, 502, not_mcp)
        out = [(k, v) for k, v in resp_headers if k not in _HOP and k != "content-encoding"]
        return http.Response(status, headers=out, content=data, request=request)
