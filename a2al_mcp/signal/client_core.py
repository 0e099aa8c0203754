"""Our registrations with signalling hubs (client side, sans-I/O; a2al-wire §6.4).

:class:`SignalClient` keeps one ``/signal`` socket to each of up to ``max_hubs`` hubs and makes
every one of our identities reachable through each, as a2ald does: a ``reg{a}`` per identity
when the socket opens and whenever an identity is added, all of them again every
``register_interval_s`` (45 s) followed by a WebSocket ping whose payload is an ASCII counter
(``"1"``, ``"2"``, …; nat-testbed D14). The hub answers each ``reg`` with ``ack``
(:class:`~a2al_mcp.signal.effects.Registered`) and pushes ``incoming{r,f,g}`` when someone
calls one of our identities (:class:`~a2al_mcp.signal.effects.IncomingCall`; a caller opens a
room on all its hubs at once, so the same room from a second hub is reported once). A socket
that drops or fails is reopened after ``reconnect_initial_s``, doubling to ``reconnect_max_s``.

The driver reports ``connected``, ``disconnected`` (also for a failed connect), ``received``
(one binary message) and calls ``tick`` at :meth:`SignalClient.next_deadline`; time is passed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Final, Literal

from ..config import SignalConfig
from ..errors import DecodeError
from . import frames
from .effects import Connect, Disconnect, IncomingCall, Ping, Registered, SendFrame, SignalEffect
from .frames import Frame

__all__ = ["ClientStats", "SignalClient"]

_DEDUP_S: Final = 5.0
"""An ``incoming`` for a room already reported this recently through ANOTHER hub is the same
call (a caller opens ``/ice`` on all its hubs at once: the pushes arrive within
milliseconds). Through the same hub it is always a new call: the room id is fixed per pair of
AIDs (:func:`~.rooms.room_id`), so a caller's retry after a failed attempt reuses it, and
a2ald retries within seconds."""


@dataclasses.dataclass(slots=True)
class ClientStats:
    connects: int = 0
    disconnects: int = 0
    acks: int = 0
    incoming: int = 0
    incoming_duplicates: int = 0
    frames_ignored: int = 0
    """Malformed, unknown or unexpected frames from a hub (dropped)."""


@dataclasses.dataclass(slots=True)
class _Hub:
    url: str
    state: Literal["idle", "connecting", "open"] = "idle"
    due: float = 0.0  # idle: reconnect at; open: next refresh at
    backoff: float = 0.0
    pings: int = 0
    acks: int = 0


class SignalClient:
    """Registrations with up to ``config.max_hubs`` hubs. See the module docstring."""

    __slots__ = ("_config", "_hubs", "_identities", "_rooms_seen", "stats")

    def __init__(self, config: SignalConfig, hubs: Iterable[str] | None = None) -> None:
        self._config = config
        urls = list(dict.fromkeys(config.hubs if hubs is None else hubs))
        self._hubs = {url: _Hub(url) for url in urls[: config.max_hubs]}
        self._identities: list[str] = []
        self._rooms_seen: dict[str, tuple[float, str]] = {}
        """room -> (when reported, through which hub)"""
        self.stats = ClientStats()

    # ---- views

    @property
    def hubs(self) -> tuple[str, ...]:
        return tuple(self._hubs)

    @property
    def identities(self) -> tuple[str, ...]:
        return tuple(self._identities)

    def registered_hubs(self) -> tuple[str, ...]:
        """Hubs whose socket is open and acknowledged a ``reg`` since it opened (what a node
        would publish in its record's ``signal``/``signals``)."""
        return tuple(h.url for h in self._hubs.values() if h.state == "open" and h.acks)

    # ---- commands

    def start(self, now: float) -> list[SignalEffect]:
        """Connect to every hub not connected or connecting."""
        out: list[SignalEffect] = []
        for hub in self._hubs.values():
            if hub.state == "idle":
                out += self._connect(hub)
        return out

    def set_identities(self, aids: Iterable[str], now: float) -> list[SignalEffect]:
        """Make exactly ``aids`` (display strings) reachable. New ones are registered at once;
        a hub cannot be told to forget one, so removing any reopens the sockets."""
        wanted = list(dict.fromkeys(aids))
        removed = set(self._identities) - set(wanted)
        added = [a for a in wanted if a not in self._identities]
        self._identities = wanted
        out: list[SignalEffect] = []
        for hub in self._hubs.values():
            if hub.state != "open":
                continue
            if removed:
                out.append(Disconnect(hub.url))
                hub.state, hub.acks = "idle", 0
                out += self._connect(hub)
            else:
                out += [SendFrame(hub.url, _reg(a)) for a in added]
        return out

    # ---- events from the driver

    def connected(self, url: str, now: float) -> list[SignalEffect]:
        """The ``/signal`` socket to ``url`` is open: register every identity."""
        hub = self._hubs.get(url)
        if hub is None or hub.state != "connecting":
            return []
        hub.state, hub.backoff, hub.acks = "open", 0.0, 0
        hub.due = now + self._config.register_interval_s
        return [SendFrame(url, _reg(a)) for a in self._identities]

    def disconnected(self, url: str, now: float) -> list[SignalEffect]:
        """The socket to ``url`` closed or could not be opened: retry later."""
        hub = self._hubs.get(url)
        if hub is None or hub.state == "idle":
            return []
        self.stats.disconnects += 1
        cfg = self._config
        hub.backoff = min(cfg.reconnect_max_s, max(cfg.reconnect_initial_s, hub.backoff * 2))
        hub.state, hub.acks, hub.due = "idle", 0, now + hub.backoff
        return []

    def received(self, url: str, payload: bytes, now: float) -> list[SignalEffect]:
        """One binary message from the hub at ``url``."""
        hub = self._hubs.get(url)
        if hub is None or hub.state != "open":
            return []
        try:
            frame = frames.decode(payload, max_bytes=self._config.max_frame_bytes)
        except DecodeError:
            self.stats.frames_ignored += 1
            return []
        if frame.t == "ack":
            hub.acks += 1
            self.stats.acks += 1
            return [Registered(url, hub.acks)]
        if frame.t == "incoming" and frame.r and frame.g:
            return self._incoming(url, frame, now)
        self.stats.frames_ignored += 1
        return []

    def tick(self, now: float) -> list[SignalEffect]:
        """Refresh registrations and reconnect what is due."""
        out: list[SignalEffect] = []
        for hub in self._hubs.values():
            if hub.due > now or hub.state == "connecting":
                continue
            if hub.state == "idle":
                out += self._connect(hub)
            else:
                out += [SendFrame(hub.url, _reg(a)) for a in self._identities]
                hub.pings += 1
                out.append(Ping(hub.url, str(hub.pings).encode()))
                hub.due = now + self._config.register_interval_s
        for room, (seen, _hub) in list(self._rooms_seen.items()):
            if seen + _DEDUP_S <= now:
                del self._rooms_seen[room]
        return out

    def next_deadline(self) -> float | None:
        times = [h.due for h in self._hubs.values() if h.state != "connecting"]
        times += [seen + _DEDUP_S for seen, _hub in self._rooms_seen.values()]
        return min(times, default=None)

    # ---- internals

    def _connect(self, hub: _Hub) -> list[SignalEffect]:
        hub.state = "connecting"
        self.stats.connects += 1
        return [Connect(hub.url)]

    def _incoming(self, url: str, frame: Frame, now: float) -> list[SignalEffect]:
        if frame.g.lower() not in {a.lower() for a in self._identities}:
            self.stats.frames_ignored += 1
            return []
        seen = self._rooms_seen.pop(frame.r, None)
        if seen is not None and seen[1] != url and seen[0] + _DEDUP_S > now:
            self._rooms_seen[frame.r] = seen
            self.stats.incoming_duplicates += 1
            return []
        if len(self._rooms_seen) >= 4096:  # bound the dedup table: oldest out
            del self._rooms_seen[next(iter(self._rooms_seen))]
        self._rooms_seen[frame.r] = (now, url)
        self.stats.incoming += 1
        return [IncomingCall(url, frame.r, frame.f, frame.g)]


def _reg(aid: str) -> bytes:
    return frames.encode(Frame("reg", a=aid))
