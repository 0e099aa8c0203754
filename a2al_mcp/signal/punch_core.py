"""One hole-punch attempt over a signalling room, both roles (sans-I/O; a2al-wire §6.4 as
corrected by the NAT testbed's README §3.3/§4, checked against a2ald's ``host/connect_punch.go``).

The exchange, as a2ald 0.3.5 runs it (a DCUtR-style punch, no clock synchronisation):

* **handshake** (``handshake_timeout_s``, 8 s): the caller sends ``punch-init{addrs, ts, nt}``
  (``addrs``: its main socket's external ``ip:port``\\ s; ``ts``: its Unix ms; ``nt``: its own
  NAT type), the callee answers ``punch-ack{addrs, ts, nt}`` with **its** addresses and NAT
  type and ``ts`` **echoed** from the ``punch-init`` (testbed D2): the caller's round-trip time
  is "now minus ``ts``". A side without an external address sends nothing and gives up (as
  a2ald).
* **rounds** (``rounds``, 2): the caller sends ``punch-go`` (never with ``t0``), waits RTT/2 and
  fires; the callee fires when the ``punch-go`` arrives. Firing = from the node's **main**
  socket, towards every address the partner sent (the ±``spray`` ports around its first IPv4
  address when it said ``nt`` = 4, symmetric): a raw probe datagram (ours; a2ald sends none)
  and a QUIC dial (a2ald dials from both sides at once, so whichever side's NAT accepts the
  other's packets carries the connection: "connection reversal" when the caller is public or
  cone, simultaneous open when both are EIM). Both sides also accept the partner's QUIC
  connection for the whole attempt. A round lasts ``fire_window_s`` (2.5 s); the next starts
  ``round_gap_s`` (1.5 s) later; the callee waits at most ``go_wait_s`` (6 s) for each
  ``punch-go``.
* **glare** (testbed D15): two callers paired in one room both send ``punch-init``. a2ald's
  caller drops the partner's ``punch-init`` and times out; ours answers it with a ``punch-ack``
  (so an a2ald caller goes on as the controlling side and we follow its ``punch-go``), and if
  a ``punch-ack`` to our own ``punch-init`` comes too (the partner is ours), the side whose
  ``punch-init`` sorts lower by ``(ts, addrs)`` sends the ``punch-go``\\ s; a full tie fires at
  once on both sides.

The attempt ends with :class:`Finish` when the node reports the path up (:class:`PathUp`: a
QUIC connection dialled or accepted, or in tests a datagram from the partner), or with
:class:`Fail` and a reason. Unexpected and malformed frames are counted in
:class:`PunchStats` and ignored, as a2ald drops them.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from typing import Final, TypeAlias

from .._types import Addr
from .frames import Frame

__all__ = [
    "NAT_SYMMETRIC",
    "PUNCH_FRAME_TYPES",
    "Cancel",
    "Dial",
    "ExpectAccept",
    "Fail",
    "Finish",
    "FrameIn",
    "Malformed",
    "PathUp",
    "PunchAttempt",
    "PunchEffect",
    "PunchEvent",
    "PunchLimits",
    "PunchStats",
    "SendFrame",
    "SendProbe",
    "Start",
    "Tick",
    "fire_targets",
    "format_addr",
    "parse_addr",
]

NAT_SYMMETRIC: Final = 4
"""The ``nt`` value that makes the partner spray ports (a2ald's ``natsense.NATSymmetric``)."""

PUNCH_FRAME_TYPES: Final = frozenset({"punch-init", "punch-ack", "punch-go"})


@dataclasses.dataclass(frozen=True, slots=True)
class PunchLimits:
    """Timings and bounds of one attempt; the defaults are a2ald's constants."""

    handshake_timeout_s: float = 8.0
    """``punch-init`` → ``punch-ack`` (a2ald ``punchHandshakeTimeout``)."""
    fire_window_s: float = 2.5
    """How long one round waits for the path (a2ald ``punchFireTimeout``)."""
    round_gap_s: float = 1.5
    """Pause between rounds (a2ald ``punchRetryDelay``)."""
    rounds: int = 2
    """Fire rounds per attempt (a2ald ``punchMaxRounds``)."""
    go_wait_s: float = 6.0
    """The callee's wait for each ``punch-go`` (a2ald: gap + window + 2 s)."""
    spray: int = 5
    """±ports sprayed around a symmetric partner's address (a2ald ``punchSymmetricSpread``)."""
    max_addrs: int = 8
    """Addresses taken from the partner's frame; the rest are ignored (a2ald has no cap)."""
    probe_repeats: int = 3
    """Probe datagrams per target and round (0: none, QUIC dials only, as a2ald)."""
    probe_interval_s: float = 0.2
    """Between two probes of one round."""

    def __post_init__(self) -> None:
        for name in ("handshake_timeout_s", "fire_window_s", "go_wait_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PunchLimits.{name} must be positive")
        if self.round_gap_s < 0 or self.probe_interval_s < 0:
            raise ValueError("PunchLimits.round_gap_s and probe_interval_s must be >= 0")
        if self.rounds < 1 or not 0 <= self.spray <= 64 or self.max_addrs < 1:
            raise ValueError("PunchLimits: rounds >= 1, 0 <= spray <= 64, max_addrs >= 1")
        if self.probe_repeats < 0:
            raise ValueError("PunchLimits.probe_repeats must be >= 0")


@dataclasses.dataclass(slots=True)
class PunchStats:
    """What an attempt saw besides the expected frames."""

    unexpected_frames: int = 0
    """Punch frames that do not fit the state (a second ``punch-init``, an early ``punch-go``)."""
    foreign_frames: int = 0
    """Non-punch frames handed to the core (ICE frames belong to the ICE session)."""
    malformed_frames: int = 0
    """Room messages that did not decode."""
    bad_addrs: int = 0
    """Partner addresses that are not ``ip:port`` (or beyond ``max_addrs``)."""
    ts_mismatch: int = 0
    """``punch-ack``\\ s whose ``ts`` is not our ``punch-init``'s (accepted, as a2ald does)."""
    glare: int = 0
    """``punch-init``\\ s received while we were the caller."""


# ---- events


@dataclasses.dataclass(frozen=True, slots=True)
class Start:
    """Begin: the caller sends ``punch-init`` stamped ``wall_ms`` (Unix ms)."""

    now: float
    wall_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class FrameIn:
    """A frame from the partner."""

    frame: Frame
    now: float


@dataclasses.dataclass(frozen=True, slots=True)
class Malformed:
    """A room message that did not decode."""

    now: float


@dataclasses.dataclass(frozen=True, slots=True)
class PathUp:
    """The node has a path to the partner from ``addr`` (a connection dialled or accepted)."""

    addr: Addr
    now: float


@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    """Time passed (call at :meth:`PunchAttempt.next_deadline`)."""

    now: float


@dataclasses.dataclass(frozen=True, slots=True)
class Cancel:
    """Stop (another path won)."""

    now: float


PunchEvent: TypeAlias = Start | FrameIn | Malformed | PathUp | Tick | Cancel

# ---- effects


@dataclasses.dataclass(frozen=True, slots=True)
class SendFrame:
    """Send ``frame`` into the room."""

    frame: Frame


@dataclasses.dataclass(frozen=True, slots=True)
class SendProbe:
    """Send one probe datagram to ``addr`` from the node's main socket."""

    addr: Addr


@dataclasses.dataclass(frozen=True, slots=True)
class Dial:
    """Dial QUIC to ``addr`` from the node's main socket, for at most ``timeout_s``; report
    success as :class:`PathUp`."""

    addr: Addr
    timeout_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class ExpectAccept:
    """From now until ``until`` (monotonic), a QUIC connection accepted from the partner's
    identity (from any address: a symmetric NAT picks the port) belongs to this attempt."""

    until: float


@dataclasses.dataclass(frozen=True, slots=True)
class Finish:
    """The path is up through ``addr``, in round ``round`` (0: before any round fired)."""

    addr: Addr
    round: int
    rtt_s: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class Fail:
    """The attempt is over without a path; ``reason`` says why."""

    reason: str


PunchEffect: TypeAlias = SendFrame | SendProbe | Dial | ExpectAccept | Finish | Fail


class _State(enum.Enum):
    IDLE = "idle"
    AWAIT_INIT = "await-init"  # callee
    AWAIT_ACK = "await-ack"  # caller
    GLARE = "glare"  # caller that answered a punch-init; waits for punch-go or punch-ack
    AWAIT_FIRE = "await-fire"  # controlling: punch-go sent, RTT/2 not yet passed
    AWAIT_GO = "await-go"  # controlled: waiting for punch-go
    FIRING = "firing"
    GAP = "gap"  # controlling: between rounds
    DONE = "done"


# ---- addresses


def parse_addr(text: str) -> Addr | None:
    """``"ip:port"`` or ``"[v6]:port"`` as Go's ``net.JoinHostPort`` writes it; None if not."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            return None
    if not sep or not port.isdigit() or len(port) > 5:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    number = int(port)
    if not 0 < number <= 65535 or "%" in host:
        return None
    return (str(ip), number)


def format_addr(addr: Addr) -> str:
    """The inverse of :func:`parse_addr` (Go's ``net.JoinHostPort``)."""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def fire_targets(addrs: tuple[Addr, ...], nat_type: int, spray: int) -> tuple[Addr, ...]:
    """Where to fire: ``addrs`` as given; when the partner says symmetric (``nat_type`` 4), its
    first IPv4 address, then that port −1, +1, −2, +2 … ±``spray`` (within 1–65535), then its
    IPv6 addresses (a2ald's ``expandSymmetricPunch``: the other IPv4 addresses are dropped)."""
    if nat_type != NAT_SYMMETRIC:
        return addrs
    base = next((a for a in addrs if ":" not in a[0]), None)
    if base is None:
        return addrs
    host, port = base
    out = [base]
    for d in range(1, spray + 1):
        if port - d > 0:
            out.append((host, port - d))
        if port + d <= 65535:
            out.append((host, port + d))
    out += [a for a in addrs if ":" in a[0]]
    return tuple(out)


class PunchAttempt:
    """One attempt, as the caller (``initiator=True``) or the callee.

    Args:
        initiator: True on the side that opened the room (a2ald's ``controlling``).
        local_addrs: our main socket's external addresses, as sent in ``addrs``.
        nat_type: our NAT type, as sent in ``nt``.
        limits: timings and bounds.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        local_addrs: tuple[Addr, ...],
        nat_type: int,
        limits: PunchLimits | None = None,
    ) -> None:
        if not 0 <= nat_type <= 255:
            raise ValueError("nat_type must fit a uint8")
        self.initiator = initiator
        self.limits = limits or PunchLimits()
        self.stats = PunchStats()
        self._local = tuple(format_addr(a) for a in local_addrs)
        self._nat = nat_type
        self._state = _State.IDLE
        self._deadline: float | None = None
        self._controlling = initiator
        self._init_ts = 0
        self._init_sent_at = 0.0
        self._peer_init: tuple[int, tuple[str, ...]] | None = None  # glare: the partner's init
        self._rtt: float | None = None
        self._targets: tuple[Addr, ...] = ()
        self._round = 0
        self._probes_left = 0
        self._next_probe: float | None = None
        self._window_end = 0.0
        self.result: Finish | Fail | None = None

    @property
    def state(self) -> str:
        return self._state.value

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    @property
    def targets(self) -> tuple[Addr, ...]:
        """Where this attempt fires (known after the handshake)."""
        return self._targets

    def next_deadline(self) -> float | None:
        """When to send the next :class:`Tick` (None: nothing timed is pending)."""
        if self._state is _State.DONE:
            return None
        if self._state is _State.FIRING and self._next_probe is not None:
            return min(self._next_probe, self._window_end)
        return self._deadline

    def advance(self, event: PunchEvent) -> list[PunchEffect]:
        """Feed one event; the effects to carry out, in order."""
        if self._state is _State.DONE:
            if isinstance(event, FrameIn):
                self._count_frame(event.frame)
            elif isinstance(event, Malformed):
                self.stats.malformed_frames += 1
            return []
        match event:
            case Start(now=now, wall_ms=wall_ms):
                return self._start(now, wall_ms)
            case FrameIn(frame=frame, now=now):
                return self._frame(frame, now)
            case Malformed():
                self.stats.malformed_frames += 1
                return []
            case PathUp(addr=addr):
                return self._finish(Finish(addr, self._round, self._rtt))
            case Tick(now=now):
                return self._tick(now)
            case Cancel():
                return self._fail("cancelled")

    # ---- transitions

    def _start(self, now: float, wall_ms: int) -> list[PunchEffect]:
        if self._state is not _State.IDLE:
            return []
        if not self._local:
            return self._fail("no external address of our main socket to offer")
        self._deadline = now + self.limits.handshake_timeout_s
        if not self.initiator:
            self._state = _State.AWAIT_INIT
            return []
        self._state = _State.AWAIT_ACK
        self._init_ts = wall_ms
        self._init_sent_at = now
        init = Frame("punch-init", addrs=self._local, ts=wall_ms, nt=self._nat)
        return [SendFrame(init)]

    def _frame(self, frame: Frame, now: float) -> list[PunchEffect]:
        kind = frame.t
        state = self._state
        if kind not in PUNCH_FRAME_TYPES:
            self.stats.foreign_frames += 1
            return []
        if kind == "punch-init" and state is _State.AWAIT_INIT:
            return self._answer(frame, now, controlling=False)
        if kind == "punch-init" and state is _State.AWAIT_ACK:
            self.stats.glare += 1
            return self._answer(frame, now, controlling=False, glare=True)
        if kind == "punch-ack" and state in (_State.AWAIT_ACK, _State.GLARE):
            return self._acked(frame, now)
        if kind == "punch-go" and state is _State.GLARE:
            self._controlling = False
            return self._fire(now)
        if kind == "punch-go" and state is _State.AWAIT_GO:
            return self._fire(now)
        if (
            kind == "punch-go"
            and state is _State.FIRING
            and not self._controlling
            and self._round < self.limits.rounds
        ):  # the caller's next round overtook our window: start it now
            return self._fire(now)
        self.stats.unexpected_frames += 1
        return []

    def _answer(
        self, init: Frame, now: float, *, controlling: bool, glare: bool = False
    ) -> list[PunchEffect]:
        """Answer a ``punch-init`` with our ``punch-ack`` (ts echoed)."""
        self._targets = fire_targets(self._peer_addrs(init.addrs), init.nt, self.limits.spray)
        ack = Frame("punch-ack", addrs=self._local, ts=init.ts, nt=self._nat)
        out: list[PunchEffect] = [SendFrame(ack)]
        self._controlling = controlling
        if glare:
            self._peer_init = (init.ts, init.addrs)
            self._state = _State.GLARE
            # wait for the partner's punch-go (an a2ald caller) or a punch-ack to our init
            self._deadline = now + self.limits.handshake_timeout_s
        else:
            self._state = _State.AWAIT_GO
            self._deadline = now + self.limits.go_wait_s
        out.append(ExpectAccept(self._accept_until(now)))
        return out

    def _acked(self, ack: Frame, now: float) -> list[PunchEffect]:
        if ack.ts != self._init_ts:
            self.stats.ts_mismatch += 1
        self._rtt = max(0.0, now - self._init_sent_at)
        out: list[PunchEffect] = []
        if self._state is _State.GLARE:
            assert self._peer_init is not None
            # both answered both: the lower punch-init drives; the ack's addrs are the same
            # partner's, already known from its init
            ours = (self._init_ts, self._local)
            if ours == self._peer_init:
                self._controlling = False
                return self._fire(now)
            self._controlling = ours < self._peer_init
            if not self._controlling:
                self._state = _State.AWAIT_GO
                self._deadline = now + self.limits.go_wait_s
                return []
        else:
            self._targets = fire_targets(self._peer_addrs(ack.addrs), ack.nt, self.limits.spray)
            out.append(ExpectAccept(self._accept_until(now)))
        return out + self._go(now)

    def _go(self, now: float) -> list[PunchEffect]:
        """Controlling: send ``punch-go``, fire RTT/2 later."""
        half = (self._rtt or 0.0) / 2
        self._state = _State.AWAIT_FIRE
        self._deadline = now + half
        out: list[PunchEffect] = [SendFrame(Frame("punch-go"))]
        if half <= 0:
            out += self._fire(now)
        return out

    def _fire(self, now: float) -> list[PunchEffect]:
        self._round += 1
        self._state = _State.FIRING
        self._window_end = now + self.limits.fire_window_s
        self._deadline = self._window_end
        out: list[PunchEffect] = []
        if self.limits.probe_repeats:
            out += [SendProbe(a) for a in self._targets]
            self._probes_left = self.limits.probe_repeats - 1
            self._next_probe = now + self.limits.probe_interval_s if self._probes_left else None
        out += [Dial(a, self.limits.fire_window_s) for a in self._targets]
        return out

    def _tick(self, now: float) -> list[PunchEffect]:
        state = self._state
        if state is _State.FIRING:
            out: list[PunchEffect] = []
            if now >= self._window_end:
                self._next_probe = None
                return self._round_over(now)
            if self._next_probe is not None and now >= self._next_probe:
                out += [SendProbe(a) for a in self._targets]
                self._probes_left -= 1
                self._next_probe = (
                    self._next_probe + self.limits.probe_interval_s if self._probes_left else None
                )
            return out
        if self._deadline is None or now < self._deadline:
            return []
        if state is _State.AWAIT_FIRE:
            return self._fire(now)
        if state is _State.GAP:
            return self._go(now)
        if state in (_State.AWAIT_INIT, _State.AWAIT_ACK, _State.GLARE):
            return self._fail(f"punch handshake timed out ({state.value})")
        if state is _State.AWAIT_GO:
            return self._fail(f"no punch-go for round {self._round + 1}")
        return []

    def _round_over(self, now: float) -> list[PunchEffect]:
        if self._round >= self.limits.rounds:
            return self._fail(f"no path after {self._round} round(s)")
        if self._controlling:
            self._state = _State.GAP
            self._deadline = now + self.limits.round_gap_s
        else:
            self._state = _State.AWAIT_GO
            self._deadline = now + self.limits.round_gap_s + self.limits.go_wait_s
        return []

    def _finish(self, result: Finish) -> list[PunchEffect]:
        self._state = _State.DONE
        self._deadline = None
        self.result = result
        return [result]

    def _fail(self, reason: str) -> list[PunchEffect]:
        result = Fail(reason)
        self._state = _State.DONE
        self._deadline = None
        self.result = result
        return [result]

    # ---- helpers

    def _accept_until(self, now: float) -> float:
        """Until the last round's window could end."""
        lim = self.limits
        per_round = lim.go_wait_s + lim.round_gap_s + lim.fire_window_s
        return now + lim.handshake_timeout_s + lim.rounds * per_round

    def _peer_addrs(self, texts: tuple[str, ...]) -> tuple[Addr, ...]:
        out: list[Addr] = []
        for text in texts:
            addr = parse_addr(text)
            if addr in out:
                continue
            if addr is None or len(out) >= self.limits.max_addrs:
                self.stats.bad_addrs += 1
                continue
            out.append(addr)
        return tuple(out)

    def _count_frame(self, frame: Frame) -> None:
        if frame.t in PUNCH_FRAME_TYPES:
            self.stats.unexpected_frames += 1
        else:
            self.stats.foreign_frames += 1
