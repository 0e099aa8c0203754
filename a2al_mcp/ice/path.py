"""QUIC of the node's own :class:`~a2al_mcp.transport.peer.QuicService` over a connected ICE
session (a2al-wire §6.3: once ICE has selected a pair, QUIC runs over it; the caller is the
QUIC client).

An :class:`~a2al_mcp.ice.session.IceSession` is a
:class:`~a2al_mcp.transport.quic_path.DatagramLink` (``send``/``receive`` on the selected pair,
through TURN for a relay pair; ``receive`` raises
:class:`~a2al_mcp.errors.ConnectionClosed` once the session is closed or consent is lost).
The service runs the connection over it as one of the node's — its identities, handlers,
limits, admission and statistics — while its datagrams go by the pair, never by the shared
socket (:mod:`~a2al_mcp.transport.quic_path`)::

    pair = await ice.connect()
    pc = dial_over_ice(service, cert, expected_aid, ice)     # the caller: QUIC client
    await pc.wait_ready()                                     # then streams as usual

    path = accept_over_ice(service, ice)                      # the callee: QUIC server
    pc = await path.wait_connection()

This module does not import the transport (the two are siblings in the layers; the node
wires them): it names what it uses of the service as protocols, which
:class:`~a2al_mcp.transport.peer.QuicService` meets.

The path owns the session from then on: when the connection ends the path closes the
session (releasing its sockets and TURN allocation), and when the session fails the
connection is closed (counted in ``TransportCounters.paths_failed``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .._types import Addr
from ..errors import UsageError

if TYPE_CHECKING:
    from ..identity.aid import Aid
    from .selected import SelectedPair
    from .session import IceSession

__all__ = ["DatagramLink", "PathService", "accept_over_ice", "dial_over_ice", "path_label"]

C_co = TypeVar("C_co", covariant=True)
P_co = TypeVar("P_co", covariant=True)


class DatagramLink(Protocol):
    """One connected datagram path to one peer, as the transport takes it
    (``a2al_mcp.transport.quic_path.DatagramLink``); an :class:`IceSession` is one."""

    async def send(self, data: bytes) -> None: ...

    async def receive(self) -> bytes: ...


class PathService(Protocol[C_co, P_co]):
    """What this module uses of the node's ``QuicService`` (``C_co``: its connections,
    ``P_co``: its paths)."""

    def dial(self, local: Any, expected: Aid, addr: Addr, *, held_topic_seq: int = 0,
             path: DatagramLink | None = None, path_label: str = "path",
             on_path_close: Callable[[], Awaitable[None]] | None = None) -> C_co: ...  # fmt: skip

    def accept_path(self, link: DatagramLink, *, remote: Addr | None = None,
                    label: str = "path",
                    on_close: Callable[[], Awaitable[None]] | None = None) -> P_co: ...  # fmt: skip


def path_label(pair: SelectedPair) -> str:
    """What a connection over ``pair`` reports as its path: ``"relay"`` through a TURN
    relay, else ``"ice"``."""
    return "relay" if pair.kind == "relay" else "ice"


def _selected(session: IceSession) -> SelectedPair:
    pair = session.selected
    if pair is None:
        raise UsageError("the ICE session has not connected (await connect() first)")
    return pair


def dial_over_ice(
    service: PathService[C_co, Any],
    local: Any,
    expected: Aid,
    session: IceSession,
    *,
    held_topic_seq: int = 0,
) -> C_co:
    """Dial ``expected`` over the connected ICE ``session`` as the node's ``service``
    (we are the QUIC client), presenting ``local`` (a ``tls.LocalCertificate``); a
    ``PeerConnection`` whose ``path`` closes the session when the connection ends.

    Raises:
        UsageError: the session has not selected a pair.
        NodeClosed: the service is closing.
    """
    pair = _selected(session)
    return service.dial(local, expected, pair.remote, held_topic_seq=held_topic_seq,
                        path=session, path_label=path_label(pair),
                        on_path_close=session.close)  # fmt: skip


def accept_over_ice(service: PathService[Any, P_co], session: IceSession) -> P_co:
    """Accept the connection the peer opens over the connected ICE ``session`` (we are the
    QUIC server): a ``QuicPath``; ``await path.wait_connection()``. The path closes the
    session when it ends.

    Raises:
        UsageError: the session has not selected a pair.
        NodeClosed: the service is closing.
    """
    pair = _selected(session)
    return service.accept_path(session, remote=pair.remote, label=path_label(pair),
                               on_close=session.close)  # fmt: skip
