"""Acceptor: the node as the accepting side of QUIC connections.

It keeps how each local identity answers inbound service streams (:class:`Serving`, set
with ``Node.serve``) and gives the QUIC service its inbound hooks (:meth:`Acceptor.handlers`):
which local identity a stream-0 route addresses, whether a caller is admitted, serving an
admitted stream (raw handler, HTTP, ASGI or a TCP bridge), the peer's stream-0 answer
(observed address, AgentInfo topic records) and mailbox frames. The registry lives as long
as the node (``serve`` works before it opens); what the hooks need of the node's services is
handed to :meth:`Acceptor.handlers` as callables when they exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._dataclass import dataclass
from .._types import Addr
from ..config import parse_host_port
from ..errors import A2ALError, UsageError
from ..identity.aid import Aid, NodeId
from ..identity.local import Identity
from ..protocol.payloads import TopicPayload, topic_key
from ..protocol.records import RecType, SignedRecord
from ..protocol.session_frames import MailboxFrame
from ..transport.peer import InboundHandlers, PeerConnection, PeerStream
from ..transport.session import PeerControl, RouteReceived

if TYPE_CHECKING:  # HTTP (h11) and the TCP bridge load with the first stream served by them
    from .http import HttpHandler

__all__ = ["Acceptor", "Serving", "StreamHandler"]

StreamHandler = Callable[[PeerStream], Awaitable[None]]
"""Serves one admitted inbound stream; ``stream.peer`` is the verified caller."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Serving:
    """How a local identity answers inbound service streams (see :meth:`Node.serve`)."""

    handler: StreamHandler | None = None
    http: HttpHandler | None = None
    app: Any = None
    service_tcp: Addr | None = None
    allow: frozenset[Aid] | None = None
    """Only these callers (None: everyone not denied)."""
    deny: frozenset[Aid] = frozenset()
    token: str | None = None
    """Callers must present this access token (``a2s1`` preamble or stream 0)."""


class Acceptor:
    """The serving registry and the inbound hooks of the QUIC service."""

    def __init__(self, *, identities: Mapping[Aid, Identity], node_aid: Aid) -> None:
        """
        Args:
            identities: the local identities (a route may address any of them).
            node_aid: the node's own AID (a route with neither target nor SNI).
        """
        self._identities = identities
        self._node_aid = node_aid
        self._serving: dict[Aid, Serving] = {}

    # -- the registry -------------------------------------------------------------------

    def serve(
        self,
        aid: Aid,
        *,
        handler: StreamHandler | None = None,
        http: HttpHandler | None = None,
        app: Any = None,
        service_tcp: str | Addr | None = None,
        allow: Iterable[Aid] | None = None,
        deny: Iterable[Aid] = (),
        token: str | None = None,
    ) -> Serving:
        """Answer service streams to ``aid`` with exactly one of ``handler``, ``http``,
        ``app`` or ``service_tcp`` (``host:port``, an ``http://`` prefix allowed), for the
        callers ``allow``/``deny`` admit, with ``token`` if given (see ``Node.serve``).

        Raises:
            UsageError: not exactly one way to answer. ConfigError: a bad ``service_tcp``.
        """
        if isinstance(service_tcp, str):
            service_tcp = parse_host_port(service_tcp.removeprefix("http://"), what="service_tcp")
        given = [x for x in (handler, http, app, service_tcp) if x is not None]
        if len(given) != 1:
            raise UsageError("give exactly one of handler=, http=, app= or service_tcp=")
        serving = Serving(handler=handler, http=http, app=app, service_tcp=service_tcp,
                          allow=None if allow is None else frozenset(allow),
                          deny=frozenset(deny), token=token)  # fmt: skip
        self.set(aid, serving)
        return serving

    def set(self, aid: Aid, serving: Serving) -> None:
        """Answer service streams to ``aid`` as ``serving`` says (replaces any earlier)."""
        self._serving[aid] = serving

    def remove(self, aid: Aid) -> None:
        """Refuse service streams to ``aid`` from now on."""
        self._serving.pop(aid, None)

    def serving(self) -> tuple[Aid, ...]:
        """The local identities answering service streams."""
        return tuple(self._serving)

    # -- the QUIC service's inbound hooks ---------------------------------------------------

    def handlers(
        self,
        *,
        agent_info: Callable[[Aid, int], list[bytes]],
        note_observed: Callable[[Addr], None],
        cache_record: Callable[[NodeId, SignedRecord], object],
        on_mailbox: Callable[[Aid | None, MailboxFrame], Awaitable[bool]],
        dht_stream: Callable[[PeerConnection, PeerStream], Awaitable[None]] | None = None,
    ) -> InboundHandlers:
        """The hooks for :class:`QuicService`, bound to the services that exist once the
        node is open.

        Args:
            agent_info: answers stream-0 AgentInfo (our topic records for an AID).
            note_observed: our address as a peer reports it (stream-0 ObservedAddr).
            cache_record: keeps a verified topic record a peer sent in AgentInfo, under its
                key, like a DHT hit.
            on_mailbox: files a mailbox frame received for the routed local identity.
            dht_stream: reads one raw stream carrying a DHT message (Mode B, and a2ald
                0.3.5's misrouted raw streams to the node AID: :meth:`raw_dht`).
        """

        def on_peer_control(pc: PeerConnection, ctl: PeerControl) -> None:
            if ctl.observed_addr is not None:
                note_observed(ctl.observed_addr)
            for key, rec in self.agent_records(pc, ctl):
                cache_record(key, rec)

        async def mailbox(pc: PeerConnection, frame: MailboxFrame) -> bool:
            return await on_mailbox(pc.local_aid, frame)

        return InboundHandlers(route=self.route, service=self.serve_stream, admit=self.admit,
                               agent_info=agent_info, on_peer_control=on_peer_control,
                               mailbox=mailbox, dht_stream=dht_stream,
                               raw_dht=self.raw_dht)  # fmt: skip

    @staticmethod
    def agent_records(pc: PeerConnection, ctl: PeerControl) -> list[tuple[NodeId, SignedRecord]]:
        """The acceptor's AgentInfo topic records that verify and are the peer's own, with
        the key each belongs under (§5.2 type 3); the rest are dropped."""
        out = []
        for raw in ctl.agent_info:
            try:
                rec = SignedRecord.from_bytes(raw)
                if rec.rec_type != RecType.TOPIC or rec.address != pc.peer_aid:
                    continue
                topic = TopicPayload.from_bytes(rec.payload).topic
            except A2ALError:
                continue
            out.append((NodeId(topic_key(topic)), rec))
        return out

    def raw_dht(self, pc: PeerConnection) -> bool:
        """A raw stream on ``pc`` may be a misrouted DHT message (a2al-wire §4.11, a2ald
        0.3.5): the connection reached the node's AID and the node serves nothing."""
        return pc.local_aid == self._node_aid and self._node_aid not in self._serving

    def route(self, pc: PeerConnection, route: RouteReceived) -> Aid | None:
        if route.target is not None:
            return route.target if route.target in self._identities else None
        return pc.conn.local_identity_aid or self._node_aid  # SNI, then the node (§5.2)

    def admit(self, pc: PeerConnection, token: str | None) -> tuple[bool, str]:
        serving = self._serving.get(pc.local_aid) if pc.local_aid is not None else None
        if serving is None:
            return False, "no service here"
        caller = pc.peer_aid
        if caller in serving.deny or (serving.allow is not None and caller not in serving.allow):
            return False, "denied"
        route_token = pc.session.route.token if pc.session.route is not None else None
        if serving.token is not None and serving.token not in (token, route_token):
            return False, "access token required"
        return True, ""

    async def serve_stream(self, pc: PeerConnection, stream: PeerStream, token: str | None) -> None:
        assert pc.local_aid is not None
        serving = self._serving.get(pc.local_aid)
        if serving is None:
            stream.reset()
        elif serving.handler is not None:
            await serving.handler(stream)
        elif serving.http is not None:
            from .http import serve_http

            await serve_http(stream, serving.http, local=pc.local_aid,
                             admitted=lambda: self.admit(pc, token)[0])  # fmt: skip
        elif serving.app is not None:
            from .http import serve_asgi

            await serve_asgi(stream, serving.app, local=pc.local_aid,
                             admitted=lambda: self.admit(pc, token)[0])  # fmt: skip
        elif serving.service_tcp is not None:
            from .tunnel import bridge_to_tcp

            await bridge_to_tcp(stream, serving.service_tcp)
