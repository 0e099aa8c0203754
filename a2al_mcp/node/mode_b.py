"""Mode B: DHT messages over QUIC to and from NATed nodes (a2al-wire §4.11) — the driver.

A node behind a NAT that UDP cannot reach is called through its hubs with the **node**
identity as the target; ICE finds a pair and a QUIC connection comes up over it with no route
frame (:meth:`~a2al_mcp.transport.peer.QuicService.dial` / ``accept_path`` with
``dht_only``). On it, each DHT message travels on its own new bidirectional stream: the whole
signed message, then FIN; the receiver reads to EOF (at most :data:`MAX_MESSAGE` bytes, within
``dht.mode_b_read_timeout_s``) and processes it like a datagram from that peer. Replies go
back on a *new* stream.

:class:`ModeB` does the DHT's part, between the sans-I/O DHT core and the endpoint:

* it stands in for the core on the endpoint (the :class:`~a2al_mcp._types.DatagramCore`
  protocol, every call passed on) and takes out of the core's outgoing datagrams those
  addressed to a **Mode-B route** — the connection's synthetic path address (for a peer that
  called us: the core answers the address a message came from) and the peer's UDP addresses
  we reached it for (for a peer we called: the core's retries go to the address it knows) —
  and queues them on that connection (bounded);
* it reads each peer stream (:meth:`ModeB.read_stream`, the QUIC service's
  ``dht_stream`` hook) and hands the message to the core as a datagram from the route's
  first address (the address we reached the peer for, else the ICE pair's remote address,
  as a2ald hands its Mode-B messages to its DHT, else the path's), so that answers match
  their queries and go back the same way. The address a Mode-B peer reports for us is its
  view of our ICE socket, not of the node's: it is no NAT vote (dropped here). A Mode-B stream
  must carry a message signed by the connection's peer; malformed, oversize, slow or foreign
  ones are reset and counted, never fatal;
* a2ald 0.3.5's 'recovered misrouted dht': a raw stream on a Mode-A connection to our node
  AID (which serves nothing) whose first byte is not ``A``–``Z`` is read the same way within
  :data:`MISROUTED_READ_S` and handed to the core as a datagram from the connection's address;
* each connection gets one task that sends its queue (one stream per message), pings it
  every ``dht.mode_b_keepalive_s`` and closes it after ``dht.mode_b_idle_s`` without a
  message either way; its routes go with it. At most ``dht.mode_b_max_connections`` are held.

The sending side: the core reports a routing-table peer whose RPC timed out on every
attempt (:class:`~a2al_mcp.dht.events.PeerUnanswered`, taken here, never passed on). Unless
that peer has a Mode-B connection, a call to it is under way, it failed within
``dht.mode_b_retry_s``, :data:`MAX_DIALS` calls run or the connection limit is reached,
``dial(aid)`` is run (the node's: resolve the peer's endpoint record; only a peer that names
hubs and a NAT type ≥ 2 is called, through its hubs with our node identity, ICE alone, no
route frame) within ``dht.mode_b_dial_timeout_s``. The connection it brings is adopted with
the unanswered address as its route, so the core's next RPCs to that peer go over QUIC.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import anyio
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream

from .._types import Addr, Datagram, DatagramCore
from ..config import DhtConfig
from ..dht import events as ev
from ..errors import A2ALError, DecodeError
from ..identity.aid import Aid
from ..protocol import dht_messages as dm
from ..transport.peer import PeerConnection, PeerStream
from ..transport.session import ERR_ACCESS_DENIED

__all__ = ["MAX_MESSAGE", "MISROUTED_READ_S", "ModeB", "ModeBStats"]

log = logging.getLogger(__name__)

MAX_MESSAGE: Final = 64 * 1024
"""Most bytes of one DHT message on a stream (a2al-wire §4.11; a2ald's maxDHTPunchMsg)."""
MISROUTED_READ_S: Final = 3.0
"""A misrouted raw stream on a Mode-A connection must end this fast (a2ald 0.3.5)."""
QUEUE_MAX: Final = 64
"""Messages waiting for one connection at most; more are dropped (counted), as a full
socket buffer drops datagrams."""
ERR_DHT_STREAM: Final = 0x1
"""Stream reset code for a Mode-B stream we refuse (malformed, oversize, too slow)."""
MAX_DIALS: Final = 4
"""Calls to NATed peers under way at once."""
RETRY_TABLE_MAX: Final = 1024
"""Peers remembered as recently failed (the oldest forgotten first)."""

Dial = Callable[[Aid], Awaitable[PeerConnection | None]]
"""``dial(aid)``: a ready Mode-B connection to ``aid``'s node, None when the peer does not
qualify (no hubs, or not behind a NAT); raises when the call fails."""


@dataclasses.dataclass(slots=True)
class ModeBStats:
    """What Mode B did; every refusal is here, none escapes."""

    connections: int = 0
    """Mode-B connections held now."""
    accepted: int = 0
    """Connections a peer opened to our node AID and we took."""
    dialled: int = 0
    """Connections we opened to a NATed peer's node."""
    dial_failed: int = 0
    """Calls to a NATed peer's node that brought no connection."""
    refused: int = 0
    """Connections closed at once: ``mode_b_max_connections`` held, or Mode B off."""
    messages_in: int = 0
    """DHT messages read from Mode-B streams and handed to the DHT."""
    messages_out: int = 0
    """DHT messages sent on Mode-B streams."""
    misrouted: int = 0
    """DHT messages recovered from raw streams on Mode-A connections (a2ald 0.3.5)."""
    malformed: int = 0
    """Streams refused: over 64 KiB, not a DHT message, or (Mode B) not signed by the
    connection's peer; also misrouted raw streams starting with ``A``–``Z``."""
    read_timeouts: int = 0
    """Streams reset for not ending within the read timeout."""
    queue_dropped: int = 0
    """Outgoing messages dropped: the connection's queue was full, or its stream failed."""
    idle_closed: int = 0
    """Connections closed after ``mode_b_idle_s`` without a message."""
    unanswered: int = 0
    """Peers whose RPC timed out on every attempt, as the DHT reported them."""
    not_eligible: int = 0
    """Unanswered peers not called: their record names no hub or no NAT (type < 2), or none
    was found."""


class _Link:
    """One Mode-B connection: its routes, its queue, its sender."""

    __slots__ = ("last_used", "pc", "queue", "reply_addr", "routes", "wake")

    def __init__(self, pc: PeerConnection, routes: tuple[Addr, ...], now: float) -> None:
        self.pc = pc
        self.routes = routes
        self.reply_addr = routes[0]
        """Messages read here reach the core as from this address."""
        self.queue: deque[bytes] = deque()
        self.wake = anyio.Event()
        self.last_used = now


class ModeB:
    """See the module docstring.

    Args:
        core: the DHT core (stands behind this object on the endpoint).
        config: the ``[dht]`` table (``mode_b*``).
        now: the monotonic clock.
        flush: sends what the core queued (the endpoint's flush).
        spawn: runs a task of the node.
        dial: reaches an unanswered peer's node (see :data:`Dial`); None: we never call.
    """

    def __init__(
        self,
        core: DatagramCore[object],
        *,
        config: DhtConfig,
        now: Callable[[], float],
        flush: Callable[[], None],
        spawn: Callable[[Callable[[], Awaitable[None]]], None],
        dial: Dial | None = None,
    ) -> None:
        self._core = core
        self._config = config
        self._now = now
        self._flush = flush
        self._spawn = spawn
        self._links: dict[PeerConnection, _Link] = {}
        self._routes: dict[Addr, _Link] = {}
        self._by_peer: dict[Aid, _Link] = {}
        self._dial = dial
        self._dialing: set[Aid] = set()
        self._retry_at: dict[Aid, float] = {}
        self.stats = ModeBStats()

    # -- DatagramCore: the core, with Mode-B routes taken out of its output --------------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self._core.receive_datagram(data, addr, now)

    def handle_timer(self, now: float) -> None:
        self._core.handle_timer(now)

    def get_timer(self) -> float | None:
        return self._core.get_timer()

    def next_event(self) -> object | None:
        while True:
            event = self._core.next_event()
            if isinstance(event, ev.PeerUnanswered):
                self._unanswered(event)
            elif not (isinstance(event, ev.AddressObserved) and event.reporter in self._by_peer):
                return event
            # (a peer over Mode B sees us at our ICE socket's address: not a NAT vote)

    # -- the sending side: calling an unanswered peer -------------------------------------

    def _unanswered(self, event: ev.PeerUnanswered) -> None:
        self.stats.unanswered += 1
        aid, now = event.aid, self._now()
        if (
            self._dial is None
            or not self._config.mode_b
            or self.connected(aid) is not None
            or aid in self._dialing
            or self._retry_at.get(aid, 0.0) > now
            or len(self._dialing) >= MAX_DIALS
            or len(self._links) >= self._config.mode_b_max_connections
        ):
            return
        self._dialing.add(aid)
        self._spawn(lambda: self._call(aid, event.addr))

    async def _call(self, aid: Aid, addr: Addr) -> None:
        assert self._dial is not None
        pc: PeerConnection | None = None
        try:
            with anyio.fail_after(self._config.mode_b_dial_timeout_s):
                pc = await self._dial(aid)
            if pc is None:
                self.stats.not_eligible += 1
        except (A2ALError, OSError, TimeoutError) as exc:
            self.stats.dial_failed += 1
            log.info("modeb.dial_failed peer=%s error=%s", aid.short(), exc)
        finally:
            self._dialing.discard(aid)
        if pc is None:
            self._retry_at.pop(aid, None)
            self._retry_at[aid] = self._now() + self._config.mode_b_retry_s
            while len(self._retry_at) > RETRY_TABLE_MAX:
                del self._retry_at[next(iter(self._retry_at))]
            return
        self.adopt(pc, (addr,), dialled=True)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out = self._core.datagrams_to_send(now)
        if not self._routes or not out:
            return out
        keep: list[Datagram] = []
        for data, addr in out:
            link = self._routes.get(addr)
            if link is None:
                keep.append((data, addr))
            elif len(link.queue) >= QUEUE_MAX:
                self.stats.queue_dropped += 1
            else:
                link.queue.append(data)
                link.wake.set()
        return keep

    # -- the table --------------------------------------------------------------------------

    def connected(self, peer: Aid) -> PeerConnection | None:
        """The live Mode-B connection to ``peer``'s node, if any."""
        link = self._by_peer.get(peer)
        return None if link is None or link.pc.closed else link.pc

    def routes(self) -> tuple[Addr, ...]:
        """Every address whose datagrams go over a Mode-B connection now."""
        return tuple(self._routes)

    def adopt(self, pc: PeerConnection, aliases: Iterable[Addr] = (), *,
              dialled: bool = False) -> bool:  # fmt: skip
        """Hold the ready Mode-B connection ``pc``: the core's datagrams to its path address
        and to ``aliases`` (the peer's UDP addresses, for a peer we called) go over it from
        now on. False (and ``pc`` closed) when Mode B is off or the limit is reached.
        Adopting a connection held already adds nothing."""
        held = self._links.get(pc)
        if held is not None:  # (its first stream may have come before we adopted it)
            new = tuple(a for a in aliases if a not in held.routes)
            if new:
                held.routes = (*new, *held.routes)
                held.reply_addr = held.routes[0]
                for addr in new:
                    self._routes[addr] = held
            return True
        if not self._config.mode_b or len(self._links) >= self._config.mode_b_max_connections:
            self.stats.refused += 1
            pc.close(0, "Mode-B connection limit")
            return False
        remote = pc.path.remote if pc.path is not None else None
        routes = tuple(dict.fromkeys([*aliases, *([remote] if remote else []), pc.addr]))
        link = _Link(pc, routes, self._now())
        self._links[pc] = link
        for addr in routes:
            self._routes[addr] = link
        self._by_peer[pc.peer_aid] = link
        self.stats.connections = len(self._links)
        if dialled or pc.is_dialer:
            self.stats.dialled += 1
        else:
            self.stats.accepted += 1
        log.info("modeb.up peer=%s routes=%s dialled=%s", pc.peer_aid.short(), list(routes),
                 dialled)  # fmt: skip
        self._spawn(lambda: self._run(link))
        return True

    def _drop(self, link: _Link) -> None:
        if self._links.pop(link.pc, None) is None:
            return
        for addr in link.routes:
            if self._routes.get(addr) is link:
                del self._routes[addr]
        peer = next((a for a, held in self._by_peer.items() if held is link), None)
        if peer is not None:
            del self._by_peer[peer]
        self.stats.connections = len(self._links)
        dropped = len(link.queue)
        if dropped:
            self.stats.queue_dropped += dropped
            link.queue.clear()

    # -- one connection's sender ----------------------------------------------------------

    async def _run(self, link: _Link) -> None:
        pc, cfg = link.pc, self._config
        try:
            while not pc.closed:
                idle_until = link.last_used + cfg.mode_b_idle_s
                wait = min(cfg.mode_b_keepalive_s, idle_until - self._now())
                if wait <= 0 and not link.queue:
                    self.stats.idle_closed += 1
                    pc.close(0, "Mode B idle")
                    break
                if not link.queue:
                    link.wake = anyio.Event()
                    with anyio.move_on_after(max(wait, 0.0)) as timer:
                        await pc.wait_event(link.wake)
                    if timer.cancelled_caught:
                        pc.ping()
                        continue
                while link.queue and not pc.closed:
                    await self._send(link, link.queue.popleft())
        except BrokenResourceError:
            pass  # the connection ended
        finally:
            self._drop(link)

    async def _send(self, link: _Link, data: bytes) -> None:
        link.last_used = self._now()
        try:
            stream = await link.pc.open_stream(admission=False)
            await stream.send(data)
            await stream.aclose()  # FIN; the answer comes on a stream of the peer's
        except (A2ALError, BrokenResourceError, ClosedResourceError) as exc:
            self.stats.queue_dropped += 1
            log.debug("modeb.send_failed peer=%s error=%r", link.pc.addr, exc)
            return
        self.stats.messages_out += 1

    # -- inbound streams (the QUIC service's dht_stream hook) -----------------------------

    async def read_stream(self, pc: PeerConnection, stream: PeerStream) -> None:
        """Read one raw stream to EOF and hand its DHT message to the core. On a Mode-B
        connection the connection is adopted first (its streams may come before the
        answer that accepted it ends)."""
        misrouted = pc.session.routed is True
        if not misrouted and not self.adopt(pc):
            stream.reset(ERR_DHT_STREAM)
            return
        timeout = MISROUTED_READ_S if misrouted else self._config.mode_b_read_timeout_s
        buf = bytearray()
        with anyio.move_on_after(timeout) as scope:
            try:
                while True:
                    buf += await stream.receive(MAX_MESSAGE + 1 - len(buf))
                    if len(buf) > MAX_MESSAGE or (misrouted and 0x41 <= buf[0] <= 0x5A):
                        self.stats.malformed += 1  # (A-Z: a service request, not ours)
                        stream.reset(ERR_ACCESS_DENIED if misrouted else ERR_DHT_STREAM)
                        return
            except EndOfStream:
                pass
            except (BrokenResourceError, ClosedResourceError):
                return  # reset by the peer, or the connection ended
        if scope.cancelled_caught:
            self.stats.read_timeouts += 1
            stream.reset(ERR_DHT_STREAM)
            return
        if not buf:
            return  # a2ald's liveness probe: an empty stream
        data = bytes(buf)
        try:
            sender = dm.decode_message(data).sender
        except (DecodeError, A2ALError, ValueError):
            self.stats.malformed += 1
            stream.reset(ERR_ACCESS_DENIED if misrouted else ERR_DHT_STREAM)
            return
        link = self._links.get(pc)
        if misrouted:
            self.stats.misrouted += 1
            addr = pc.addr
        elif link is None or sender != pc.peer_aid:
            self.stats.malformed += 1  # a Mode-B connection carries its peer's messages only
            return
        else:
            addr = link.reply_addr
            link.last_used = self._now()
        self.stats.messages_in += 1
        self._core.receive_datagram(data, addr, self._now())
        self._flush()
