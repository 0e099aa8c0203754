"""The QUIC verbs of :class:`~.node.Node`: what it serves and how it reaches other agents.

:class:`QuicVerbs` is one half of the node's public face, kept in its own module so that
``node.py`` stays the composition root. Each verb forwards to the service that owns it:
serving to the :class:`~.serving.Acceptor`, dialling (connect, streams, fetch, request,
tunnels) to the :class:`~.dialer.Dialer`. ``Node`` provides ``_acceptor``, ``_dialer``,
``_dial()`` (the dialer of an open node, else :class:`~a2al_mcp.errors.NodeClosed`) and
``_identity(aid)`` (a local identity, else :class:`~a2al_mcp.errors.NotFound`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._types import Addr

if TYPE_CHECKING:
    from ..identity.aid import Aid
    from ..identity.local import Identity
    from ..transport.peer import PeerConnection, PeerStream
    from .dialer import Dialer
    from .http import HttpHandler, HttpResponse, StreamedResponse
    from .serving import Acceptor, Serving, StreamHandler
    from .tunnel import Tunnel

__all__ = ["QuicVerbs"]


class QuicVerbs:
    """Serve, connect, open streams, fetch, request, tunnel (mixed into ``Node``)."""

    _acceptor: Acceptor
    _dialer: Dialer | None

    def _dial(self) -> Dialer:
        raise NotImplementedError

    def _identity(self, aid: Aid | None) -> Identity:
        raise NotImplementedError

    def serve(
        self,
        aid: Aid | None = None,
        *,
        handler: StreamHandler | None = None,
        http: HttpHandler | None = None,
        app: Any = None,
        service_tcp: str | Addr | None = None,
        allow: Sequence[Aid] | None = None,
        deny: Sequence[Aid] = (),
        token: str | None = None,
    ) -> Serving:
        """Answer inbound service streams addressed to local identity ``aid`` (default: the
        node) with exactly one of: ``handler`` (raw stream), ``http`` (one request → one
        response), ``app`` (ASGI 3) or ``service_tcp`` (bridge to a TCP service, like a2ald).
        ``allow``/``deny`` filter callers by verified AID; ``token`` requires an access token.
        Calling it again replaces the previous setting.
        """
        return self._acceptor.serve(self._identity(aid).aid, handler=handler, http=http,
                                    app=app, service_tcp=service_tcp, allow=allow, deny=deny,
                                    token=token)  # fmt: skip

    def unserve(self, aid: Aid | None = None) -> None:
        """Stop answering service streams for ``aid`` (they are refused from now on)."""
        self._acceptor.remove(self._identity(aid).aid)

    # -- QUIC: dialling ---------------------------------------------------------------------

    async def connect(
        self,
        aid: Aid,
        *,
        local: Aid | None = None,
        endpoints: Sequence[str] | None = None,
        timeout_s: float | None = None,
    ) -> PeerConnection:
        """A verified QUIC connection from local identity ``local`` (default: the node) to
        ``aid``, pooled per (local, remote). ``endpoints`` (``quic://ip:port`` URLs) skips
        the DHT lookup.

        Raises:
            NotFound: ``aid`` has no endpoint record.
            Unreachable / RequestTimeout: no endpoint answered; HandshakeFailed: none proved
                ``aid``.
        """
        return await self._dial().connect(aid, local=local, endpoints=endpoints,
                                          timeout_s=timeout_s)  # fmt: skip

    async def open_stream(
        self, aid: Aid, *, local: Aid | None = None, token: str | None = None,
        endpoints: Sequence[str] | None = None,
    ) -> PeerStream:  # fmt: skip
        """A new service stream to ``aid`` (connecting first if needed). One retry on a
        connection that turns out to be dead, as a2ald does."""
        return await self._dial().open_stream(aid, local=local, token=token, endpoints=endpoints)

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
        """One HTTP/1.1 request to the agent ``aid`` over a new stream.

        Raises:
            RequestTimeout: no complete answer within ``timeout_s``.
        """
        return await self._dial().fetch(aid, method, path, headers=headers, body=body,
                                        local=local, token=token, endpoints=endpoints,
                                        timeout_s=timeout_s)  # fmt: skip

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
        """Like :meth:`fetch`, but returns once the response head is in; iterate the result
        for the body as it arrives (server-sent events) and ``aclose()`` it when done.
        ``timeout_s`` covers connecting and the head, not the body.

        Raises:
            RequestTimeout: no response head within ``timeout_s``.
        """
        return await self._dial().request(aid, method, path, headers=headers, body=body,
                                          local=local, token=token, endpoints=endpoints,
                                          timeout_s=timeout_s, max_body=max_body)  # fmt: skip

    async def tunnel(
        self,
        aid: Aid,
        *,
        local: Aid | None = None,
        token: str | None = None,
        listen: Addr = ("127.0.0.1", 0),
        endpoints: Sequence[str] | None = None,
    ) -> Tunnel:
        """A local TCP listener (``tunnel.addr``) whose every connection becomes a stream
        to ``aid``. Close it with ``await tunnel.aclose()``; the node closes it on exit."""
        return await self._dial().tunnel(aid, local=local, token=token, listen=listen,
                                         endpoints=endpoints)  # fmt: skip

    def tunnels(self) -> list[Tunnel]:
        """Open tunnels."""
        return [] if self._dialer is None else self._dialer.tunnels()

    def is_connected(self, aid: Aid, *, local: Aid | None = None) -> bool:
        """Whether a live pooled connection from ``local`` (default: the node) to ``aid``
        exists now; nothing is dialled."""
        return self._dial().connected(aid, local=local)

    def connections(self) -> list[PeerConnection]:
        """Live QUIC connections (both directions)."""
        return self._dial().connections()
