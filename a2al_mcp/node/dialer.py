"""Dialer: the node as the dialling side of QUIC connections.

From an AID to what the caller wants of it: a verified connection (pooled by the
:class:`~a2al_mcp.node.connect.Connector`, dialled at the endpoints a resolver finds), a
service stream (one retry on a pooled connection that turns out to be dead, as a2ald does),
one HTTP request over a stream, and tunnels (a local TCP listener per remote agent) run in
the node's task group and closed with it. What it needs of the node comes in as narrow
pieces: the connector, the local identity for an AID, the resolver, the task group and a
check that the node is still open.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.abc

from .._types import Addr
from ..errors import AccessDenied, DecodeError, NodeClosed, RequestTimeout
from ..identity.aid import Aid
from ..identity.local import Identity
from ..protocol.payloads import EndpointPayload
from ..transport.peer import PeerConnection, PeerStream
from .connect import DIAL_TIMEOUT_S, Connector, DialTarget
from .dial_strategy import PathTry, UsedPath

if TYPE_CHECKING:  # HTTP (h11) and tunnels load with their first use
    from .http import HttpResponse, StreamedResponse
    from .tunnel import Tunnel

__all__ = ["Dialer", "Resolved", "dial_target"]


class Resolved(Protocol):
    """What the dialer reads of a resolved AID (a :class:`~a2al_mcp.node.status.
    ResolvedEndpoint`)."""

    @property
    def endpoints(self) -> tuple[str, ...]: ...


def dial_target(resolved: Resolved) -> DialTarget:
    """What a dial needs of a resolved record: its URLs, and (from a
    :class:`~a2al_mcp.node.status.ResolvedEndpoint`) its NAT type and the hubs it names
    (``signal`` first, then ``signals``)."""
    nat_type = getattr(resolved, "nat_type", 0)
    record = getattr(resolved, "record", None)
    hubs: tuple[str, ...] = ()
    if record is not None:
        try:
            payload = EndpointPayload.from_bytes(record.payload)
        except DecodeError:
            pass  # the finder verified it; nothing to add
        else:
            named = [payload.signal] if payload.signal else []
            hubs = tuple(dict.fromkeys(h for h in [*named, *payload.signals] if h))
    seq = getattr(record, "seq", None)
    return DialTarget(tuple(resolved.endpoints), int(nat_type), hubs,
                      seq if isinstance(seq, int) else None)  # fmt: skip


class Dialer:
    """Outbound connections, streams, HTTP requests and tunnels to remote AIDs."""

    def __init__(
        self,
        connector: Connector,
        *,
        identity: Callable[[Aid | None], Identity],
        resolve: Callable[[Aid], Awaitable[Resolved]],
        task_group: anyio.abc.TaskGroup,
        check_open: Callable[[], object] = lambda: None,
        handshake_timeout_s: float = DIAL_TIMEOUT_S,
    ) -> None:
        """
        Args:
            connector: the connection pool over the QUIC service; its service's
                certificates hold one per local identity.
            identity: the local identity for an AID (None: the node's own); raises
                ``UsageError`` for an AID that is not local.
            resolve: finds the endpoint record of an AID (raises ``NotFound``).
            task_group: where tunnels run (the node's).
            check_open: raises ``NodeClosed`` when the owner is not open.
            handshake_timeout_s: the default limit on one connect.
        """
        self._connector = connector
        self._identity = identity
        self._resolve = resolve
        self._tg = task_group
        self._check_open = check_open
        self._handshake_timeout_s = handshake_timeout_s
        self._tunnels: list[Tunnel] = []
        self._closed_tunnel_errors = 0
        """Contained errors of tunnels no longer in ``_tunnels``."""

    async def connect(
        self,
        aid: Aid,
        *,
        local: Aid | None = None,
        endpoints: Sequence[str] | None = None,
        timeout_s: float | None = None,
    ) -> PeerConnection:
        """A verified connection from ``local`` (default: the node) to ``aid``, pooled per
        (local, remote); ``endpoints`` skips the resolver. See ``Node.connect``."""
        self._check_open()
        ident = self._identity(local)
        cert = self._connector.service.certificates.get(ident.aid)
        assert cert is not None, "every local identity has a certificate"

        async def urls() -> Sequence[str] | DialTarget:
            if endpoints is not None:
                return endpoints
            return dial_target(await self._resolve(aid))

        return await self._connector.connect(
            cert, aid, urls, timeout_s=timeout_s or self._handshake_timeout_s
        )

    def path(self, pc: PeerConnection) -> UsedPath | None:
        """The path a connection we dialled came up on: ``direct`` or ``punched``, the
        peer's address, how long the dial took (None: accepted, or gone)."""
        return self._connector.path(pc)

    def path_to(self, aid: Aid, *, local: Aid | None = None) -> UsedPath | None:
        """The path of the live pooled connection from ``local`` (default: the node) to
        ``aid`` (None: none, or it was accepted rather than dialled)."""
        pc = self._connector.pooled_connection(self._identity(local).aid, aid)
        return None if pc is None else self._connector.path(pc)

    def tried(self, aid: Aid) -> tuple[PathTry, ...]:
        """The paths the last dial to ``aid`` tried, when each started and how it ended."""
        return self._connector.last_tries.get(aid, ())

    def connected(self, aid: Aid, *, local: Aid | None = None) -> bool:
        """Whether a live pooled connection from ``local`` (default: the node) to ``aid``
        exists now (nothing is dialled)."""
        return self._connector.pooled(self._identity(local).aid, aid)

    async def open_stream(
        self, aid: Aid, *, local: Aid | None = None, token: str | None = None,
        endpoints: Sequence[str] | None = None,
    ) -> PeerStream:  # fmt: skip
        """A new service stream to ``aid`` (connecting first if needed). One retry on a
        connection that turns out to be dead, as a2ald does."""
        for attempt in (1, 2):
            pc = await self.connect(aid, local=local, endpoints=endpoints)
            try:
                return await pc.open_stream(token)
            except (AccessDenied, NodeClosed):
                raise
            except Exception:
                if attempt == 2:
                    raise
                pc.close(0, "retrying")
        raise AssertionError("unreachable")  # pragma: no cover

    async def fetch(
        self,
        aid: Aid,
        method: str = "GET",
        path: str = "/",
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        local: Aid | None = None,
        token: str | None = None,
        endpoints: Sequence[str] | None = None,
        timeout_s: float = 30.0,
    ) -> HttpResponse:
        """One HTTP/1.1 request to ``aid`` over a new stream, the whole body read.

        Raises:
            RequestTimeout: no complete answer within ``timeout_s`` (``aid`` set).
        """
        from .http import MAX_BODY, HttpResponse

        try:
            with anyio.fail_after(timeout_s):  # a dial's own timeout passes as itself
                resp = await self.request(aid, method, path, headers=headers, body=body,
                                          local=local, token=token, endpoints=endpoints,
                                          timeout_s=math.inf, max_body=MAX_BODY)  # fmt: skip
                data = await resp.read()
        except RequestTimeout:
            raise
        except TimeoutError as exc:
            raise RequestTimeout(f"fetch {method} {path} from {aid} took over {timeout_s:g} s",
                                 aid=aid, operation="fetch") from exc  # fmt: skip
        return HttpResponse(resp.status, resp.headers, data, resp.reason)

    async def request(
        self,
        aid: Aid,
        method: str = "GET",
        path: str = "/",
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        local: Aid | None = None,
        token: str | None = None,
        endpoints: Sequence[str] | None = None,
        timeout_s: float = 30.0,
        max_body: int | None = None,
    ) -> StreamedResponse:
        """Like :meth:`fetch`, but returns once the response head is in.

        Raises:
            RequestTimeout: no response head within ``timeout_s`` (``aid`` set).
        """
        from .http import request_over

        try:
            with anyio.fail_after(timeout_s):
                stream = await self.open_stream(aid, local=local, token=token,
                                                endpoints=endpoints)  # fmt: skip
                try:
                    return await request_over(stream, method, path, headers, body,
                                              max_body=max_body)  # fmt: skip
                except BaseException:
                    stream.reset()
                    raise
        except RequestTimeout:
            raise
        except TimeoutError as exc:
            raise RequestTimeout(f"{method} {path} to {aid}: no response within {timeout_s:g} s",
                                 aid=aid, operation="request") from exc  # fmt: skip

    # -- tunnels ------------------------------------------------------------------------------

    async def tunnel(
        self,
        aid: Aid,
        *,
        local: Aid | None = None,
        token: str | None = None,
        listen: Addr = ("127.0.0.1", 0),
        endpoints: Sequence[str] | None = None,
    ) -> Tunnel:
        """A local TCP listener whose every connection becomes a stream to ``aid``; it runs
        in the task group until ``aclose()`` or :meth:`aclose`."""
        from .tunnel import Tunnel

        await self.connect(aid, local=local, endpoints=endpoints)  # fail early
        t = Tunnel(aid, lambda: self.open_stream(aid, local=local, token=token,
                                                 endpoints=endpoints), listen=listen)  # fmt: skip
        await t.start(self._tg)
        self._closed_tunnel_errors += sum(x.errors for x in self._tunnels if x.closed)
        self._tunnels = [x for x in self._tunnels if not x.closed] + [t]
        return t

    def tunnels(self) -> list[Tunnel]:
        """Open tunnels."""
        return [t for t in self._tunnels if not t.closed]

    @property
    def tunnel_errors(self) -> int:
        """Exceptions contained to one tunnel connection or accept, over every tunnel."""
        return self._closed_tunnel_errors + sum(t.errors for t in self._tunnels)

    def connections(self) -> list[PeerConnection]:
        """Live QUIC connections (both directions)."""
        self._check_open()
        return self._connector.service.connections()

    async def aclose(self) -> None:
        """Close every tunnel (connections stay: they are the QUIC service's)."""
        for t in self._tunnels:
            await t.aclose()
