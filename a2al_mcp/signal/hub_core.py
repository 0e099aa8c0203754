"""The signalling hub's state machine (server side, sans-I/O; a2al-wire §6.4).

The driver reports what happens on its sockets — ``connect`` (a TCP connection from an IP),
``request`` (its WebSocket upgrade: target and offered subprotocols), ``message`` (one
complete binary message), ``bad_message`` (a text or oversized one), ``protocol_error``
(bytes that are not HTTP or not WebSocket), ``activity`` (a ping), ``closed`` — and calls
``tick`` at :meth:`HubCore.next_deadline`. Each call returns the effects to carry out
(:mod:`~a2al_mcp.signal.effects`); time is always passed in.

What a2ald's hub does, and so this one:

* ``/signal``: a ``reg{a}`` registers ``a`` on that socket (the last socket to register an AID
  takes it over) and is answered ``ack``; other frames are ignored.
* ``/ice?room=R`` joins room R; the first two sockets of a room are paired and each binary
  message of one is relayed to the other byte for byte and in order, including what the first
  sent before the second came. ``/ice?caller=C&room=R&target=T`` first pushes
  ``incoming{r,f,g}`` to T's registration socket, or answers ``noagent`` and closes.

What it adds: every limit of :class:`~a2al_mcp.config.SignalConfig` (sockets in all and per IP,
rooms, registrations in all and per socket, frame size, bytes queued while waiting, the upgrade,
pairing, idle and room timeouts, registration expiry) and a check of every frame: malformed and
unknown frames are not relayed, they are counted, and too many close the socket (1008). Every
refusal is counted in :class:`HubStats`; none disturbs other sockets.
"""

from __future__ import annotations

import dataclasses
from typing import Final, Literal

from ..config import SignalConfig
from ..errors import DecodeError
from . import frames
from .effects import Abort, AcceptUpgrade, Close, HubEffect, RejectUpgrade, Send
from .frames import Frame
from .rooms import MAX_ID_CHARS, IceRequest, parse_target

__all__ = ["CLOSE_NORMAL", "CLOSE_POLICY", "CLOSE_TOO_BIG", "HubCore", "HubStats"]

CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_POLICY: Final = 1008
CLOSE_TOO_BIG: Final = 1009

_NOAGENT: Final = frames.encode(Frame("noagent"))
_ACK: Final = frames.encode(Frame("ack"))


@dataclasses.dataclass(slots=True)
class HubStats:
    """Counters of the hub (what a2ald's ``/debug/stats`` shows, and every refusal)."""

    sockets_refused: int = 0
    """TCP connections refused: ``hub_max_sockets`` reached."""
    sockets_refused_per_ip: int = 0
    """TCP connections refused: ``hub_max_sockets_per_ip`` reached."""
    upgrades_refused: int = 0
    """Upgrades answered 400/404 (bad path or query)."""
    upgrade_timeouts: int = 0
    protocol_errors: int = 0
    """Connections dropped for bytes that are not an HTTP upgrade or break the WebSocket
    protocol (reported by the driver, :meth:`HubCore.protocol_error`)."""
    rooms_refused: int = 0
    """``/ice`` answered 503: ``hub_max_rooms`` reached."""
    rooms_unpaired: int = 0
    """Rooms closed because no partner came within ``hub_pair_timeout_s``."""
    rooms_expired: int = 0
    """Paired rooms closed at ``hub_room_lifetime_s``."""
    sessions_total: int = 0
    """Rooms paired."""
    noagent_total: int = 0
    incoming_total: int = 0
    registrations_refused: int = 0
    registrations_expired: int = 0
    frames_relayed: int = 0
    frames_malformed: int = 0
    frames_unknown: int = 0
    frames_oversized: int = 0
    """Messages over ``max_frame_bytes`` (the socket is closed, 1009)."""
    queue_overflows: int = 0
    """Waiting sockets closed for sending more than ``hub_room_queue_bytes``."""
    idle_closed: int = 0


_Kind = Literal["http", "signal", "ice", "closing"]


@dataclasses.dataclass(slots=True)
class _Socket:
    ip: str
    opened: float
    kind: _Kind = "http"
    last_seen: float = 0.0
    bad_frames: int = 0
    aids: set[str] = dataclasses.field(default_factory=set)  # registration keys
    room: str = ""
    peer: int | None = None
    paired_at: float = 0.0
    queue: list[bytes] = dataclasses.field(default_factory=list)
    queued: int = 0


@dataclasses.dataclass(slots=True)
class _Registration:
    conn: int
    aid: str
    expires: float


class HubCore:
    """One hub's sockets, registrations and rooms. See the module docstring."""

    __slots__ = ("_config", "_next_conn", "_pairs", "_per_ip", "_regs", "_sockets",
                 "_waiting", "stats")  # fmt: skip

    def __init__(self, config: SignalConfig) -> None:
        self._config = config
        self._sockets: dict[int, _Socket] = {}
        self._per_ip: dict[str, int] = {}
        self._regs: dict[str, _Registration] = {}  # key: AID lowercased
        self._waiting: dict[str, int] = {}  # room -> the socket waiting in it
        self._pairs = 0
        self._next_conn = 1
        self.stats = HubStats()

    # ---- views

    @property
    def max_frame_bytes(self) -> int:
        """Longest message a driver should assemble; longer goes to :meth:`bad_message`."""
        return self._config.max_frame_bytes

    @property
    def sockets(self) -> int:
        return len(self._sockets)

    @property
    def rooms(self) -> int:
        """Rooms open: waiting for a partner or paired."""
        return len(self._waiting) + self._pairs

    @property
    def registrations(self) -> int:
        return len(self._regs)

    def registered(self, aid: str) -> bool:
        return aid.lower() in self._regs

    # ---- events from the driver

    def connect(self, ip: str, now: float) -> int | None:
        """A TCP connection from ``ip``: its id, or None when refused (close it at once)."""
        if len(self._sockets) >= self._config.hub_max_sockets:
            self.stats.sockets_refused += 1
            return None
        if self._per_ip.get(ip, 0) >= self._config.hub_max_sockets_per_ip:
            self.stats.sockets_refused_per_ip += 1
            return None
        conn = self._next_conn
        self._next_conn += 1
        self._sockets[conn] = _Socket(ip=ip, opened=now, last_seen=now)
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        return conn

    def request(self, conn: int, target: str, now: float) -> list[HubEffect]:
        """The socket's upgrade request for ``target`` (path and query) arrived."""
        sock = self._sockets.get(conn)
        if sock is None or sock.kind != "http":
            return []
        sock.last_seen = now
        try:
            req = parse_target(target)
        except DecodeError as exc:
            self.stats.upgrades_refused += 1
            sock.kind = "closing"
            status = 404 if "no such path" in exc.message else 400
            return [RejectUpgrade(conn, status, exc.message)]
        if not isinstance(req, IceRequest):
            sock.kind = "signal"
            return [AcceptUpgrade(conn)]
        if req.room not in self._waiting and self.rooms >= self._config.hub_max_rooms:
            self.stats.rooms_refused += 1
            sock.kind = "closing"
            return [RejectUpgrade(conn, 503, "too many rooms")]
        out: list[HubEffect] = [AcceptUpgrade(conn)]
        sock.kind = "ice"
        if req.target:
            reg = self._live_registration(req.target, now)
            if reg is None:
                self.stats.noagent_total += 1
                out.append(Send(conn, _NOAGENT))
                out += self._close(conn, CLOSE_NORMAL, "noagent")
                return out
            self.stats.incoming_total += 1
            incoming = Frame("incoming", r=req.room, f=req.caller, g=req.target)
            out.append(Send(reg.conn, frames.encode(incoming)))
        out += self._join(conn, sock, req.room, now)
        return out

    def message(self, conn: int, payload: bytes, now: float) -> list[HubEffect]:
        """One complete binary message from the socket."""
        sock = self._sockets.get(conn)
        if sock is None or sock.kind in ("http", "closing"):
            return []
        sock.last_seen = now
        try:
            frame = frames.decode(payload, max_bytes=self._config.max_frame_bytes)
        except frames.FrameTooLarge:
            return self.bad_message(conn, now, oversized=True)
        except frames.UnknownFrameType:
            self.stats.frames_unknown += 1
            return self._bad_frame(conn, sock)
        except DecodeError:
            self.stats.frames_malformed += 1
            return self._bad_frame(conn, sock)
        if sock.kind == "signal":
            return self._signal_frame(conn, sock, frame, now)
        if sock.peer is not None:
            self.stats.frames_relayed += 1
            return [Send(sock.peer, bytes(payload))]
        sock.queued += len(payload)
        if sock.queued > self._config.hub_room_queue_bytes:
            self.stats.queue_overflows += 1
            return self._close(conn, CLOSE_POLICY, "too much before a partner came")
        sock.queue.append(bytes(payload))
        return []

    def bad_message(self, conn: int, now: float, *, oversized: bool) -> list[HubEffect]:
        """A message the driver would not assemble: over ``max_frame_bytes`` (closes, 1009)
        or a text message (counted as malformed)."""
        sock = self._sockets.get(conn)
        if sock is None or sock.kind in ("http", "closing"):
            return []
        sock.last_seen = now
        if oversized:
            self.stats.frames_oversized += 1
            return self._close(conn, CLOSE_TOO_BIG, "frame too large")
        self.stats.frames_malformed += 1
        return self._bad_frame(conn, sock)

    def protocol_error(self, conn: int) -> None:
        """The socket sent bytes that are not an HTTP upgrade or break the WebSocket protocol;
        the driver drops it (and then reports :meth:`closed`)."""
        if conn in self._sockets:
            self.stats.protocol_errors += 1

    def activity(self, conn: int, now: float) -> None:
        """A ping (or pong) from the socket: it is alive."""
        sock = self._sockets.get(conn)
        if sock is not None:
            sock.last_seen = now

    def closed(self, conn: int, now: float) -> list[HubEffect]:
        """The connection is gone (either side closed it, or the driver dropped it)."""
        sock = self._sockets.get(conn)
        if sock is None:
            return []
        out = self._forget(conn, sock) if sock.kind != "closing" else []
        del self._sockets[conn]
        left = self._per_ip[sock.ip] - 1
        if left:
            self._per_ip[sock.ip] = left
        else:
            del self._per_ip[sock.ip]
        return out

    def tick(self, now: float) -> list[HubEffect]:
        """Expire what is due at ``now``."""
        cfg = self._config
        out: list[HubEffect] = []
        for key, reg in list(self._regs.items()):
            if reg.expires <= now:
                self._drop_registration(key)
                self.stats.registrations_expired += 1
        for conn, sock in list(self._sockets.items()):
            if sock.kind == "http" and now >= sock.opened + cfg.hub_handshake_timeout_s:
                self.stats.upgrade_timeouts += 1
                sock.kind = "closing"
                out.append(Abort(conn))
            elif sock.kind == "signal" and now >= sock.last_seen + cfg.hub_idle_timeout_s:
                self.stats.idle_closed += 1
                out += self._close(conn, CLOSE_GOING_AWAY, "idle")
            elif sock.kind == "ice" and sock.peer is None:
                if now >= self._pair_deadline(sock):  # messages while waiting extend nothing
                    self.stats.rooms_unpaired += 1
                    out += self._close(conn, CLOSE_GOING_AWAY, "no partner")
            elif (
                sock.kind == "ice"
                and sock.peer is not None
                and conn < sock.peer
                and now >= sock.paired_at + cfg.hub_room_lifetime_s
            ):
                self.stats.rooms_expired += 1
                out += self._close(conn, CLOSE_GOING_AWAY, "room lifetime")
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do, or None."""
        cfg = self._config
        times = [reg.expires for reg in self._regs.values()]
        for sock in self._sockets.values():
            if sock.kind == "http":
                times.append(sock.opened + cfg.hub_handshake_timeout_s)
            elif sock.kind == "signal":
                times.append(sock.last_seen + cfg.hub_idle_timeout_s)
            elif sock.kind == "ice" and sock.peer is None:
                times.append(self._pair_deadline(sock))
            elif sock.kind == "ice":
                times.append(sock.paired_at + cfg.hub_room_lifetime_s)
        return min(times, default=None)

    # ---- internals

    def _pair_deadline(self, sock: _Socket) -> float:
        return sock.paired_at + self._config.hub_pair_timeout_s

    def _live_registration(self, aid: str, now: float) -> _Registration | None:
        reg = self._regs.get(aid.lower())
        if reg is None or reg.expires <= now:
            return None
        return reg

    def _join(self, conn: int, sock: _Socket, room: str, now: float) -> list[HubEffect]:
        sock.room = room
        sock.paired_at = now  # the join time until paired: the pairing deadline counts from it
        other = self._waiting.pop(room, None)
        if other is None:
            self._waiting[room] = conn
            return []
        first = self._sockets[other]
        first.peer, sock.peer = conn, other
        first.paired_at = sock.paired_at = now
        self._pairs += 1
        self.stats.sessions_total += 1
        queued, first.queue, first.queued = first.queue, [], 0
        self.stats.frames_relayed += len(queued)
        return [Send(conn, payload) for payload in queued]

    def _signal_frame(self, conn: int, sock: _Socket, frame: Frame, now: float) -> list[HubEffect]:
        if frame.t != "reg" or not frame.a:
            return []  # as a2ald: everything else on /signal is ignored (no DHT proxy here)
        if len(frame.a) > MAX_ID_CHARS or not frame.a.isprintable():
            self.stats.frames_malformed += 1
            return self._bad_frame(conn, sock)
        key = frame.a.lower()
        expires = now + self._config.hub_registration_ttl_s
        reg = self._regs.get(key)
        if reg is not None and reg.conn == conn:
            reg.expires, reg.aid = expires, frame.a
            return [Send(conn, _ACK)]
        if (reg is None and len(self._regs) >= self._config.hub_max_registrations) or len(
            sock.aids
        ) >= self._config.hub_max_registrations_per_socket:
            self.stats.registrations_refused += 1
            return []
        if reg is not None:  # the newest socket takes the AID over
            old = self._sockets.get(reg.conn)
            if old is not None:
                old.aids.discard(key)
        self._regs[key] = _Registration(conn, frame.a, expires)
        sock.aids.add(key)
        return [Send(conn, _ACK)]

    def _bad_frame(self, conn: int, sock: _Socket) -> list[HubEffect]:
        sock.bad_frames += 1
        if sock.bad_frames > self._config.hub_max_bad_frames:
            return self._close(conn, CLOSE_POLICY, "too many bad frames")
        return []

    def _drop_registration(self, key: str) -> None:
        reg = self._regs.pop(key)
        sock = self._sockets.get(reg.conn)
        if sock is not None:
            sock.aids.discard(key)

    def _close(self, conn: int, code: int, reason: str) -> list[HubEffect]:
        """Forget the socket's state, close it, and close its partner."""
        sock = self._sockets[conn]
        out: list[HubEffect] = [Close(conn, code, reason)]
        out += self._forget(conn, sock)
        sock.kind = "closing"
        return out

    def _forget(self, conn: int, sock: _Socket) -> list[HubEffect]:
        out: list[HubEffect] = []
        for key in list(sock.aids):
            self._drop_registration(key)
        if sock.room and self._waiting.get(sock.room) == conn:
            del self._waiting[sock.room]
        if sock.peer is not None:
            peer, sock.peer = sock.peer, None
            self._pairs -= 1
            partner = self._sockets.get(peer)
            if partner is not None and partner.kind != "closing":
                partner.peer = None
                out.append(Close(peer, CLOSE_NORMAL, "partner left"))
                partner.kind = "closing"
                out += self._forget(peer, partner)
        sock.queue, sock.queued, sock.room = [], 0, ""
        sock.kind = "closing"
        return out
