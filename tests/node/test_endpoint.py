"""UdpEndpoint on real loopback sockets (127.0.0.1 only), driving small fake cores."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import pytest

from a2al_mcp._clock import SystemClock
from a2al_mcp._types import Addr, Datagram, DatagramCore
from a2al_mcp.errors import UsageError
from a2al_mcp.transport import udp_icmp
from a2al_mcp.transport.demux import Kind
from a2al_mcp.transport.endpoint import UdpEndpoint
from a2al_mcp.transport.udp_receive import DatagramReceiver
from a2al_mcp.transport.udp_send import DatagramSender
from tests.simos.a2al_simos import ProactorLikeEventLoop

LOOPBACK: Addr = ("127.0.0.1", 0)
DHT = 0xA4  # first byte of a DHT-classified datagram (CBOR map of 4)
QUIC = 0x41  # first byte with the QUIC fixed bit
REQUEST, REPLY, BOOM = b"Q", b"P", b"X"
WAIT_S = 5.0
_LOG = logging.getLogger(__name__)


@pytest.fixture
def clock() -> SystemClock:
    return SystemClock()


# ---------------------------------------------------------------------------- fakes


@dataclass(frozen=True)
class Received:
    data: bytes
    addr: Addr
    now: float


@dataclass(frozen=True)
class TimerFired:
    now: float
    deadline: float


@dataclass
class EchoCore:
    """A datagram core that answers every request (byte 1 = Q) with a reply (byte 1 = P).

    Datagrams whose byte 1 is X make it raise, like a core with a bug.
    """

    received: list[Received] = field(default_factory=list)
    outbox: list[Datagram] = field(default_factory=list)
    events: deque[object] = field(default_factory=deque)
    timer: float | None = None

    # ---- DatagramCore
    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        if data[1:2] == BOOM:
            raise RuntimeError("core bug")
        self.received.append(Received(data, addr, now))
        self.events.append(Received(data, addr, now))
        if data[1:2] == REQUEST:
            self.outbox.append((data[:1] + REPLY + data[2:], addr))

    def handle_timer(self, now: float) -> None:
        if self.timer is not None and now >= self.timer:
            self.events.append(TimerFired(now, self.timer))
            self.timer = None

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return self.timer

    def next_event(self) -> object | None:
        return self.events.popleft() if self.events else None

    # ---- commands (the caller flushes the endpoint afterwards)
    def send(self, data: bytes, addr: Addr) -> None:
        self.outbox.append((data, addr))


class Events:
    """An ``on_events`` sink that tests can wait on (replies are indexed as they arrive)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, object]] = []
        self._replies: dict[str, list[Received]] = {}
        self._changed = anyio.Event()

    def __call__(self, core: str, event: object) -> None:
        self.items.append((core, event))
        if isinstance(event, Received) and event.data[1:2] == REPLY:
            self._replies.setdefault(core, []).append(event)
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, core: str, kind: type) -> list[object]:
        return [ev for name, ev in self.items if name == core and isinstance(ev, kind)]

    def replies(self, core: str = "dht") -> list[Received]:
        return self._replies.get(core, [])

    async def wait_for(self, predicate: Callable[[], bool], limit_s: float = WAIT_S) -> None:
        with anyio.fail_after(limit_s):
            while not predicate():
                await self._changed.wait()


def msg(first: int, kind: bytes, body: bytes = b"") -> bytes:
    return bytes([first]) + kind + body


# ---------------------------------------------------------------------------- delivery


@pytest.mark.anyio
async def test_delivery_both_ways(clock: SystemClock) -> None:
    core_a, core_b = EchoCore(), EchoCore()
    events_a, events_b = Events(), Events()
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_a, on_events=events_a) as ep_a,
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_b, on_events=events_b) as ep_b,
    ):
        assert ep_a.local_addr[0] == "127.0.0.1" and ep_a.local_addr[1] > 0
        core_a.send(msg(DHT, REQUEST, b"from a"), ep_b.local_addr)
        ep_a.flush()
        core_b.send(msg(DHT, REQUEST, b"from b"), ep_a.local_addr)
        ep_b.flush()

        await events_a.wait_for(lambda: len(events_a.replies()) == 1)
        await events_b.wait_for(lambda: len(events_b.replies()) == 1)

        assert events_a.replies()[0].data == msg(DHT, REPLY, b"from a")
        assert events_a.replies()[0].addr == ep_b.local_addr
        assert events_b.replies()[0].data == msg(DHT, REPLY, b"from b")
        # each side saw the other's request, from the other's bound address
        assert [(r.data, r.addr) for r in core_b.received if r.data[1:2] == REQUEST] == [
            (msg(DHT, REQUEST, b"from a"), ep_a.local_addr)
        ]
        assert ep_a.statistics().sent == 2 and ep_a.statistics().received == 2


@pytest.mark.anyio
async def test_events_are_drained_without_a_callback(clock: SystemClock) -> None:
    core_a, core_b = EchoCore(), EchoCore()
    events_a = Events()
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_a, on_events=events_a) as ep_a,
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_b) as ep_b,
    ):
        core_a.send(msg(DHT, REQUEST), ep_b.local_addr)
        ep_a.flush()
        await events_a.wait_for(lambda: len(events_a.replies()) == 1)
        assert not core_b.events  # drained (and dropped) by the driver


# ---------------------------------------------------------------------------- timers


@pytest.mark.anyio
async def test_timer_fires(clock: SystemClock) -> None:
    core, events = EchoCore(), Events()
    async with UdpEndpoint(LOOPBACK, clock=clock, dht=core, on_events=events) as ep:
        deadline = clock.monotonic() + 0.05
        core.timer = deadline
        ep.flush()  # a command changed the timer: flush re-arms it
        await events.wait_for(lambda: bool(events.of("dht", TimerFired)))
        (fired,) = events.of("dht", TimerFired)
        assert isinstance(fired, TimerFired)
        assert fired.deadline == deadline and fired.now >= deadline
        assert ep.statistics().timer_fires == 1


@pytest.mark.anyio
async def test_timer_set_before_open_fires(clock: SystemClock) -> None:
    core, events = EchoCore(), Events()
    core.timer = clock.monotonic() + 0.02
    async with UdpEndpoint(LOOPBACK, clock=clock, dht=core, on_events=events):
        await events.wait_for(lambda: bool(events.of("dht", TimerFired)))


@pytest.mark.anyio
async def test_timer_rearmed_earlier(clock: SystemClock) -> None:
    core, events = EchoCore(), Events()
    async with UdpEndpoint(LOOPBACK, clock=clock, dht=core, on_events=events) as ep:
        core.timer = clock.monotonic() + 3600
        ep.flush()
        await anyio.wait_all_tasks_blocked()  # the timer loop now sleeps on the hour
        core.timer = clock.monotonic() + 0.02
        ep.flush()
        await events.wait_for(lambda: bool(events.of("dht", TimerFired)), limit_s=2)


@pytest.mark.anyio
async def test_wake_rereads_timers(clock: SystemClock) -> None:
    core, events = EchoCore(), Events()
    async with UdpEndpoint(LOOPBACK, clock=clock, dht=core, on_events=events) as ep:
        await anyio.wait_all_tasks_blocked()
        core.timer = clock.monotonic()  # already due
        ep.wake()
        await events.wait_for(lambda: bool(events.of("dht", TimerFired)), limit_s=2)


@pytest.mark.anyio
async def test_timer_changed_by_received_datagram(clock: SystemClock) -> None:
    """A batch that moves a core's deadline earlier re-arms the timer loop."""

    class ArmOnReceive(EchoCore):
        def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
            super().receive_datagram(data, addr, now)
            self.timer = now + 0.02

    core_a, core_b, events_b = EchoCore(), ArmOnReceive(), Events()
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_a) as ep_a,
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_b, on_events=events_b) as ep_b,
    ):
        core_a.send(msg(DHT, b"-"), ep_b.local_addr)
        ep_a.flush()
        await events_b.wait_for(lambda: bool(events_b.of("dht", TimerFired)), limit_s=2)


# ---------------------------------------------------------------------------- batching


async def _ping_pong(
    core_a: EchoCore, ep_a: UdpEndpoint, to: Addr, events_a: Events, count: int
) -> None:
    before = len(events_a.replies())
    for i in range(count):
        core_a.send(msg(DHT, REQUEST, i.to_bytes(4, "big") + bytes(96)), to)
    ep_a.flush()  # all `count` datagrams leave in one go
    await events_a.wait_for(lambda: len(events_a.replies()) - before == count)


@pytest.mark.anyio
async def test_batch_of_200(clock: SystemClock) -> None:
    core_a, core_b, events_a = EchoCore(), EchoCore(), Events()
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_a, on_events=events_a) as ep_a,
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_b) as ep_b,
    ):
        await _ping_pong(core_a, ep_a, ep_b.local_addr, events_a, 200)
        seqs = sorted(int.from_bytes(r.data[2:6], "big") for r in events_a.replies())
        assert seqs == list(range(200))
        stats_b = ep_b.statistics()
        assert stats_b.received == 200 and stats_b.sent == 200
        assert stats_b.received_by_kind[Kind.DHT] == 200
        # the 200 datagrams were waiting together: read in a few batches, not one by one
        assert 4 <= stats_b.batches < 100, stats_b
        assert stats_b.send_dropped == stats_b.send_errors == stats_b.core_errors == 0


@pytest.mark.anyio
async def test_loopback_throughput(clock: SystemClock) -> None:
    """Round trips of 200-datagram bursts; prints datagrams/s (run with -s to see it)."""
    core_a, core_b, events_a = EchoCore(), EchoCore(), Events()
    rounds, burst = 25, 200
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_a, on_events=events_a) as ep_a,
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_b) as ep_b,
    ):
        start = clock.monotonic()
        for _ in range(rounds):
            await _ping_pong(core_a, ep_a, ep_b.local_addr, events_a, burst)
        elapsed = clock.monotonic() - start
        total = ep_a.statistics().received + ep_b.statistics().received
        assert total == 2 * rounds * burst
        print(
            f"\nloopback: {total} datagrams (100 B) in {elapsed * 1000:.1f} ms = "
            f"{total / elapsed:,.0f} datagrams/s received; "
            f"batches A={ep_a.statistics().batches} B={ep_b.statistics().batches}"
        )


@pytest.mark.anyio
async def test_max_batch_one_still_delivers_everything(clock: SystemClock) -> None:
    core_a, core_b, events_a = EchoCore(), EchoCore(), Events()
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_a, on_events=events_a) as ep_a,
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_b, max_batch=1, gro=False) as ep_b,
    ):
        await _ping_pong(core_a, ep_a, ep_b.local_addr, events_a, 50)
        assert ep_b.statistics().batches == 50  # (one GRO read may hold several)


# ---------------------------------------------------------------------------- robustness


@pytest.mark.anyio
async def test_core_error_does_not_stop_the_loop(
    clock: SystemClock, caplog: pytest.LogCaptureFixture
) -> None:
    core_a, core_b, events_a = EchoCore(), EchoCore(), Events()
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_a, on_events=events_a) as ep_a,
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_b) as ep_b,
    ):
        for body in (b"1", b"2", b"3"):
            core_a.send(msg(DHT, BOOM, body), ep_b.local_addr)
            core_a.send(msg(DHT, REQUEST, body), ep_b.local_addr)
        ep_a.flush()
        await events_a.wait_for(lambda: len(events_a.replies()) == 3)
        stats = ep_b.statistics()
        assert stats.core_errors == 3
        assert stats.received == 6
        # counted every time, logged once per 30 s
        logged = [r for r in caplog.records if r.getMessage().startswith("endpoint.core_error")]
        assert len(logged) == 1 and logged[0].exc_info is not None


@pytest.mark.anyio
async def test_callback_error_is_counted(clock: SystemClock) -> None:
    core_a, core_b, events_a = EchoCore(), EchoCore(), Events()
    calls: list[object] = []

    def broken(core: str, event: object) -> None:
        calls.append(event)
        raise ValueError("callback bug")

    async with (
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_a, on_events=events_a) as ep_a,
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_b, on_events=broken) as ep_b,
    ):
        core_a.send(msg(DHT, REQUEST), ep_b.local_addr)
        core_a.send(msg(DHT, REQUEST), ep_b.local_addr)
        ep_a.flush()
        await events_a.wait_for(lambda: len(events_a.replies()) == 2)
        assert len(calls) == 2
        assert ep_b.statistics().callback_errors == 2


@pytest.mark.anyio
async def test_unsendable_addresses_are_counted_not_resolved(clock: SystemClock) -> None:
    core = EchoCore()
    async with UdpEndpoint(LOOPBACK, clock=clock, dht=core) as ep:
        core.send(msg(DHT, REQUEST), ("::1", 9))  # IPv6 on an IPv4 socket
        core.send(msg(DHT, REQUEST), ("localhost", 9))  # a name: never resolved
        ep.flush()
        stats = ep.statistics()
        assert stats.send_errors == 2 and stats.sent == 0


# ---------------------------------------------------------------------------- demux routing


@pytest.mark.anyio
async def test_quic_and_dht_go_to_their_cores(clock: SystemClock) -> None:
    dht, quic, sender = EchoCore(), EchoCore(), EchoCore()
    events = Events()
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, dht=dht, quic=quic, on_events=events) as ep,
        UdpEndpoint(LOOPBACK, clock=clock, dht=sender) as ep_s,
    ):
        sender.send(msg(QUIC, b"-", b"quic"), ep.local_addr)
        sender.send(msg(0xC3, b"-", b"long header"), ep.local_addr)
        sender.send(msg(DHT, b"-", b"dht"), ep.local_addr)
        ep_s.flush()
        await events.wait_for(lambda: len(events.items) == 3)
        assert [r.data for r in quic.received] == [
            msg(QUIC, b"-", b"quic"),
            msg(0xC3, b"-", b"long header"),
        ]
        assert [r.data for r in dht.received] == [msg(DHT, b"-", b"dht")]
        assert {name for name, _ in events.items} == {"dht", "quic"}
        stats = ep.statistics()
        assert stats.received_by_kind[Kind.QUIC] == 2 and stats.received_by_kind[Kind.DHT] == 1


@pytest.mark.anyio
async def test_kind_without_core_is_dropped(clock: SystemClock) -> None:
    dht, sender, events = EchoCore(), EchoCore(), Events()
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, dht=dht, on_events=events) as ep,
        UdpEndpoint(LOOPBACK, clock=clock, dht=sender) as ep_s,
    ):
        sender.send(msg(QUIC, b"-"), ep.local_addr)
        sender.send(msg(DHT, b"-"), ep.local_addr)  # arrives after the QUIC one
        ep_s.flush()
        await events.wait_for(lambda: len(events.items) == 1)
        assert ep.statistics().dropped[Kind.QUIC] == 1


@pytest.mark.anyio
async def test_echo_probe_answered(clock: SystemClock) -> None:
    probe = b"\x00\xec" + b"probe-123"
    # a plain socket: anyio's UDP helper resolves with AI_ADDRCONFIG, which finds nothing
    # in a network namespace that has only `lo`
    async with UdpEndpoint(LOOPBACK, clock=clock, echo=True) as ep:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.setblocking(False)
            client.sendto(probe, ep.local_addr)
            with anyio.fail_after(WAIT_S):
                await anyio.wait_readable(client)
            data, addr = client.recvfrom(2048)
        assert data == probe and addr == ep.local_addr
        assert ep.statistics().received_by_kind[Kind.ECHO] == 1
        assert ep.statistics().dropped[Kind.ECHO] == 0


@pytest.mark.anyio
async def test_echo_probe_ignored_by_default_stun_and_empty_dropped(clock: SystemClock) -> None:
    dht, events = EchoCore(), Events()
    stun = b"\x01\x01\x00\x00\x21\x12\xa4\x42" + bytes(12)
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, dht=dht, on_events=events) as ep,
    ):
        # a plain socket: asyncio's datagram transport silently skips empty datagrams
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.bind(LOOPBACK)
            for data in (b"\x00\xecprobe", stun, b"", msg(DHT, b"-", b"last")):
                raw.sendto(data, ep.local_addr)
        await events.wait_for(lambda: len(events.items) == 1)
        stats = ep.statistics()
        assert stats.dropped[Kind.ECHO] == 1 and stats.dropped[Kind.STUN] == 1
        assert stats.dropped_empty == 1
        assert stats.received == 4 and stats.sent == 0
        assert [r.data for r in dht.received] == [msg(DHT, b"-", b"last")]


@pytest.mark.anyio
async def test_dual_stack_reports_plain_ipv4(clock: SystemClock) -> None:
    dual, v4, events_v4 = EchoCore(), EchoCore(), Events()
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.close()
    except OSError:
        pytest.skip("no IPv6 on this host")
    async with (
        UdpEndpoint(("::", 0), clock=clock, dht=dual) as ep_dual,
        UdpEndpoint(LOOPBACK, clock=clock, dht=v4, on_events=events_v4) as ep_v4,
    ):
        v4.send(msg(DHT, REQUEST), ("127.0.0.1", ep_dual.local_addr[1]))
        ep_v4.flush()
        await events_v4.wait_for(lambda: len(events_v4.replies()) == 1)
        # the dual-stack core saw the sender as plain IPv4, and could answer it
        assert [r.addr for r in dual.received] == [ep_v4.local_addr]
        assert events_v4.replies()[0].addr == ("127.0.0.1", ep_dual.local_addr[1])


# ---------------------------------------------------------------------------- Windows


class _IcmpResetSocket(socket.socket):
    """A socket whose reads fail as Windows reports an ICMP "port unreachable" for an earlier
    send (WSAECONNRESET) on the calls numbered in ``resets`` (1-based)."""

    def __init__(self, family: int, kind: int, resets: frozenset[int] = frozenset()) -> None:
        super().__init__(family, kind)
        self.resets = resets
        self.reads = 0

    def recvfrom(self, size: int, flags: int = 0) -> tuple[bytes, Any]:
        self.reads += 1
        if self.reads in self.resets:  # WSAECONNRESET, then WSAENETRESET (a plain OSError)
            if self.reads == min(self.resets):
                raise ConnectionResetError(10054, "An existing connection was forcibly closed")
            raise OSError(10052, "The connection has been broken due to keep-alive activity")
        return super().recvfrom(size, flags)


@pytest.mark.anyio
async def test_a_connection_reset_on_read_is_counted_and_read_past(clock: SystemClock) -> None:
    made: list[_IcmpResetSocket] = []

    def factory(family: socket.AddressFamily, kind: socket.SocketKind) -> socket.socket:
        made.append(_IcmpResetSocket(family, kind, resets=frozenset({1, 3})))
        return made[-1]

    core_a, core_b, events_a = EchoCore(), EchoCore(), Events()
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_a, on_events=events_a) as ep_a,
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_b, gro=False, sock_factory=factory) as ep_b,
    ):
        for body in (b"1", b"2", b"3"):
            core_a.send(msg(DHT, REQUEST, body), ep_b.local_addr)
        ep_a.flush()
        await events_a.wait_for(lambda: len(events_a.replies()) == 3)
        stats = ep_b.statistics()
        bodies = (b"1", b"2", b"3")
        assert [r.data for r in core_b.received] == [msg(DHT, REQUEST, b) for b in bodies]
        assert stats.recv_resets == 2 and stats.recv_errors == 0 and stats.received == 3


def test_a_socket_that_keeps_resetting_ends_the_batch() -> None:
    class AlwaysReset:
        def recvfrom(self, size: int) -> tuple[bytes, Any]:
            raise ConnectionResetError(10054, "reset")

    sock: Any = AlwaysReset()
    sender = DatagramSender(sock, socket.AF_INET, gso=False, log_limited=print, logger=_LOG)
    receiver = DatagramReceiver(sock, socket.AF_INET, gro=False, max_batch=8, dht=None,
                                quic=None, echo=False, sender=sender,
                                core_failed=print, log_limited=print)  # fmt: skip
    assert receiver.drain(0.0) == 0  # returns: the loop waits for readiness again
    assert receiver.recv_resets == 8 and receiver.recv_errors == 0


class _WindowsSocket(socket.socket):
    """A socket with the ``ioctl`` method only Windows sockets have."""

    def ioctl(self, control: int, option: object) -> None:
        raise ValueError(f"invalid ioctl command {control}")  # as Python's, for these codes


@pytest.mark.anyio
@pytest.mark.parametrize("accepted", [True, False], ids=["accepted", "refused"])
async def test_icmp_reports_are_turned_off_on_a_windows_socket(
    clock: SystemClock, monkeypatch: pytest.MonkeyPatch, accepted: bool
) -> None:
    calls: list[tuple[int, int, bool]] = []

    def wsaioctl(handle: int, code: int, on: bool) -> bool:
        calls.append((handle, code, on))
        return accepted

    monkeypatch.setattr(udp_icmp, "_find_wsaioctl", lambda: wsaioctl)
    made: list[socket.socket] = []

    def factory(family: socket.AddressFamily, kind: socket.SocketKind) -> socket.socket:
        made.append(_WindowsSocket(family, kind))
        return made[-1]

    core_a, core_b, events_a = EchoCore(), EchoCore(), Events()
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_a, on_events=events_a) as ep_a,
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_b, sock_factory=factory) as ep_b,
    ):
        (sock,) = made
        handle = sock.fileno()
        off = [
            (handle, udp_icmp.SIO_UDP_CONNRESET, False),
            (handle, udp_icmp.SIO_UDP_NETRESET, False),
        ]
        # ep_a's socket is asked too only where every socket is a Windows one (simulated win32)
        assert [c for c in calls if c[0] == handle] == off
        core_a.send(msg(DHT, REQUEST), ep_b.local_addr)  # refused or not, the endpoint works
        ep_a.flush()
        await events_a.wait_for(lambda: len(events_a.replies()) == 1)


def test_icmp_reports_have_nothing_to_turn_off_elsewhere() -> None:
    def wsaioctl(handle: int, code: int, on: bool) -> bool:
        raise AssertionError("not on a socket without ioctl")

    if not hasattr(socket.socket, "ioctl"):  # not Windows, nor simulated Windows
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            assert not udp_icmp.disable_icmp_resets(sock, wsaioctl)
    with _WindowsSocket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # Windows without Winsock?
        assert udp_icmp._find_wsaioctl() is None  # this is not Windows: no ctypes.windll
        assert not udp_icmp.disable_icmp_resets(sock)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("asyncio", {"loop_factory": ProactorLikeEventLoop}), id="proactor-like")],
)
async def test_a_loop_without_add_reader_still_delivers(clock: SystemClock) -> None:
    """As on Windows' ProactorEventLoop: anyio waits for readiness in its selector thread."""
    with pytest.raises(NotImplementedError):
        asyncio.get_running_loop().add_reader(0, print)
    core_a, core_b = EchoCore(), EchoCore()
    events_a, events_b = Events(), Events()
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_a, on_events=events_a) as ep_a,
        UdpEndpoint(LOOPBACK, clock=clock, dht=core_b, on_events=events_b) as ep_b,
    ):
        for i in range(20):
            core_a.send(msg(DHT, REQUEST, b"%d" % i), ep_b.local_addr)
        ep_a.flush()
        core_b.send(msg(DHT, REQUEST, b"back"), ep_a.local_addr)
        ep_b.flush()
        await events_a.wait_for(lambda: len(events_a.replies()) == 20)
        await events_b.wait_for(lambda: len(events_b.replies()) == 1)
        assert any(t.name == "AnyIO socket selector" for t in threading.enumerate())
    assert ep_a.statistics().received == 21 and ep_b.statistics().received == 21


# ---------------------------------------------------------------------------- lifetime


@pytest.mark.anyio
async def test_aclose_idempotent_and_socket_released(clock: SystemClock) -> None:
    ep = UdpEndpoint(LOOPBACK, clock=clock, dht=EchoCore())
    with pytest.raises(UsageError):
        _ = ep.local_addr
    with pytest.raises(UsageError):
        ep.flush()
    async with ep:
        addr = ep.local_addr
        await ep.aclose()
        await ep.aclose()
        ep.flush()  # a no-op once closed
        ep.wake()
    await ep.aclose()
    with pytest.raises(UsageError):
        async with ep:
            pass
    # the port is free again: the socket really was closed
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(addr)
    finally:
        sock.close()


@pytest.mark.anyio
async def test_aclose_before_open(clock: SystemClock) -> None:
    ep = UdpEndpoint(LOOPBACK, clock=clock)
    await ep.aclose()
    with pytest.raises(UsageError):
        await ep.__aenter__()


@pytest.mark.anyio
async def test_no_task_left_after_exit(clock: SystemClock) -> None:
    before = {task.id for task in anyio.get_running_tasks()}
    core = EchoCore()
    async with UdpEndpoint(LOOPBACK, clock=clock, dht=core) as ep:
        core.timer = clock.monotonic() + 3600
        ep.flush()
        assert {task.id for task in anyio.get_running_tasks()} > before
        await ep.aclose()
        assert {task.id for task in anyio.get_running_tasks()} == before
    assert {task.id for task in anyio.get_running_tasks()} == before
    async with UdpEndpoint(LOOPBACK, clock=clock, dht=EchoCore()):
        pass
    assert {task.id for task in anyio.get_running_tasks()} == before


@pytest.mark.anyio
async def test_outer_cancellation_leaves_nothing_behind(clock: SystemClock) -> None:
    before = {task.id for task in anyio.get_running_tasks()}
    with anyio.move_on_after(0.05) as scope:
        async with UdpEndpoint(LOOPBACK, clock=clock, dht=EchoCore()):
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert {task.id for task in anyio.get_running_tasks()} == before


def test_constructor_validates_and_needs_no_loop() -> None:
    UdpEndpoint(("::", 4121), clock=SystemClock())  # no event loop, no socket
    with pytest.raises(ValueError, match="IP literal"):
        UdpEndpoint(("localhost", 0), clock=SystemClock())
    with pytest.raises(ValueError, match="max_batch"):
        UdpEndpoint(LOOPBACK, clock=SystemClock(), max_batch=0)
    with pytest.raises(ValueError, match="port"):
        UdpEndpoint(("127.0.0.1", 70000), clock=SystemClock())


def _is_datagram_core(core: DatagramCore[object]) -> None:
    """Type-level check that the fake satisfies the contract (mypy)."""


_is_datagram_core(EchoCore())
