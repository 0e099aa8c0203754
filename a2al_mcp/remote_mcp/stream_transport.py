"""An ``httpx2`` (or ``httpx``) transport whose requests travel on A2AL streams: the ``mcp``
SDK's streamable-HTTP client, given an ``AsyncClient`` with this transport, talks to the MCP
server an agent exposes on its AID (:func:`~.expose.expose_mcp`).

Each request is one stream (:meth:`Node.request`, HTTP/1.1, ``Connection: close``); the
response body is read whole, at most ``max_body`` bytes, within ``timeout_s``. Past either
limit the stream is dropped and the SDK gets a JSON-RPC error naming the limit (so the call
waiting for it fails at once). A2AL failures (refused, unreachable, not found) become
JSON-RPC errors too, carrying the A2AL error code in ``data`` (:data:`A2AL_CODE`), so the
caller can tell them from the remote server's own errors. The ``GET`` stream a
streamable-HTTP client opens for server-initiated messages is answered 405 here, without
reaching the remote: a remote server cannot reach back into the caller.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import anyio

from ..errors import A2ALError, AgentCallError, LimitExceeded, RequestTimeout

if TYPE_CHECKING:
    from ..identity.aid import Aid
    from ..node.node import Node

__all__ = ["A2AL_CODE", "StreamTransport"]

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
        """Nothing to close: each request's stream ends with its answer."""

    async def handle_async_request(self, request: Any) -> Any:
        http = self._http
        if request.method == "GET":  # the server-to-client stream: not offered
            return http.Response(405, request=request)
        body = await request.aread()
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _HOP]
        target = request.url.raw_path.decode("ascii")
        try:
            with anyio.fail_after(self._timeout_s):
                resp = await self._node.request(self._aid, request.method, target,
                                                headers=headers, body=body, local=self._local,
                                                timeout_s=self._timeout_s,
                                                max_body=self._max_body)  # fmt: skip
                data = await resp.read()
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
        ctype = (resp.header("content-type") or "").lower()
        if (
            request.method == "POST"
            and not ctype.startswith(_MCP_TYPES)
            and ((resp.status < 300 and resp.status != 202) or resp.status == 404)
        ):
            not_mcp = AgentCallError(f"{self._aid} does not serve MCP over A2AL: it answers a "
                                     f"POST to {target} with HTTP {resp.status}"
                                     f"{', ' + ctype[:60] if ctype else ''}",
                                     aid=self._aid, operation="remote_mcp")  # fmt: skip
            return _local_error(http, request, 502, not_mcp)
        out = [(k, v) for k, v in resp.headers if k not in _HOP and k != "content-encoding"]
        return http.Response(resp.status, headers=out, content=data, request=request)
