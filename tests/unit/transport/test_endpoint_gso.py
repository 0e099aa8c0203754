"""UdpEndpoint sends runs of equal-sized datagrams with UDP GSO, receives them coalesced with UDP
GRO and splits them again, and falls back without either."""

from __future__ import annotations

import errno
import socket
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from a2al_mcp import _platform
from a2al_mcp._clock import SystemClock
from a2al_mcp._types import Addr, Datagram
from a2al_mcp.transport import udp_offload
from a2al_mcp.transport.endpoint import GSO_MAX_SEGMENTS, UdpEndpoint

LOOPBACK: Addr = ("127.0.0.1", 0)


@dataclass
class Core:
    """Sends what is put in ``outbox``; records what it receives."""

    received: list[bytes] = field(default_factory=list)
    outbox: list[Datagram] = field(default_factory=list)
    events: deque[object] = field(default_factory=deque)
    want: int = 0
    done: anyio.Event | None = None

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.received.append(data)
        if self.done is not None and len(self.received) >= self.want:
            self.done.set()

    def handle_timer(self, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return None

    def next_event(self) -> object | None:
        return self.events.popleft() if self.events else None


def _run(n: int, last: int) -> list[Datagram]:
    """``n`` QUIC-classified datagrams of 1200 bytes (the last ``last`` bytes long)."""
    out = []
    for i in range(n):
        size = last if i == n - 1 else 1200
        out.append(((bytes([0x41, i & 0xFF]) * size)[:size], ("0", 0)))
    return out


async def _exchange(
    *, gso: bool, count: int, gro: bool = True, first: int = 0x41
) -> tuple[list[bytes], list[bytes], Any, Any]:
    """``count`` datagrams from endpoint A (its ``quic`` core) to endpoint B, whose ``dht``
    and ``quic`` cores record what arrives; ``first`` is their first byte (0x41: QUIC)."""
    clock = SystemClock()
    a, b = Core(), Core(want=count, done=anyio.Event())
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, quic=a, gso=gso) as ep_a,
        UdpEndpoint(LOOPBACK, clock=clock, quic=b, dht=b, gro=gro) as ep_b,
    ):
        sent = [(bytes([first]) + d[1:], ep_b.local_addr) for d, _ in _run(count, 700)]
        a.outbox = list(sent)
        ep_a.flush()
        assert b.done is not None
        with anyio.fail_after(5):
            await b.done.wait()
        return [d for d, _ in sent], b.received, ep_a.statistics(), ep_b.statistics()


@pytest.mark.anyio
async def test_a_run_arrives_as_separate_datagrams_in_order() -> None:
    count = GSO_MAX_SEGMENTS + 10  # more than one GSO send
    sent, received, stats, _ = await _exchange(gso=True, count=count)
    assert received == sent
    assert stats.sent == count and stats.send_errors == 0
    if udp_offload.gso_supported():  # not on macOS or Windows, simulated ones included
        assert stats.gso_sends >= 2


@pytest.mark.anyio
async def test_without_gso_every_datagram_is_its_own_send() -> None:
    sent, received, stats, _ = await _exchange(gso=False, count=20)
    assert received == sent
    assert stats.sent == 20 and stats.gso_sends == 0


@pytest.mark.anyio
@pytest.mark.parametrize("first", [0x41, 0x00], ids=["quic", "not quic"])
async def test_a_coalesced_run_is_split_into_its_datagrams(first: int) -> None:
    # on loopback a GSO send reaches a GRO socket as one buffer: the receiver splits it
    count = GSO_MAX_SEGMENTS + 10
    sent, received, _, stats = await _exchange(gso=True, count=count, first=first)
    assert received == sent
    assert stats.received == count
    if udp_offload.gro_supported():
        assert stats.gro_reads >= 1


@pytest.mark.anyio
async def test_without_gro_every_datagram_is_its_own_read() -> None:
    sent, received, _, stats = await _exchange(gso=True, count=30, gro=False)
    assert received == sent
    assert stats.received == 30 and stats.gro_reads == 0


@dataclass
class BatchCore(Core):
    """A QUIC core that takes a batch at once, as QuicHost does."""

    def receive_datagrams(self, datagrams: list[tuple[bytes, Addr]], now: float) -> None:
        for data, addr in datagrams:
            self.receive_datagram(data, addr, now)


@pytest.mark.anyio
async def test_each_datagram_of_a_coalesced_run_goes_to_its_own_core() -> None:
    # one socket carries QUIC and the DHT: a short DHT datagram from the same sender may be
    # the last segment of a GRO run of QUIC datagrams
    clock = SystemClock()
    quic, dht = BatchCore(want=5, done=anyio.Event()), Core(want=1, done=anyio.Event())
    run = [b"\x41" * 1200] * 5 + [b"\xa4" + b"\x00" * 99]
    sender = Core()
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, quic=sender) as ep_a,
        UdpEndpoint(LOOPBACK, clock=clock, quic=quic, dht=dht) as ep_b,
    ):
        sender.outbox = [(d, ep_b.local_addr) for d in run]  # one run: the last is shorter
        ep_a.flush()
        assert quic.done is not None and dht.done is not None
        with anyio.fail_after(5):
            await quic.done.wait()
            await dht.done.wait()
        assert quic.received == run[:5] and dht.received == run[5:]


linux_only = pytest.mark.skipif(
    not udp_offload.gso_supported(),
    reason="UDP GSO exists only on Linux (not simulated macOS/Windows)",
)


class _NoGsoSocket(socket.socket):
    """A socket whose kernel refuses UDP_SEGMENT; records what it sends one by one."""

    def __init__(self, family: int, kind: int) -> None:
        super().__init__(family, kind)
        self.sent: list[bytes] = []
        self.gso_tries = 0

    def sendmsg(self, *args: Any) -> int:
        self.gso_tries += 1
        raise OSError(errno.EIO, "no GSO")

    def sendto(self, data: Any, addr: Any) -> int:  # type: ignore[override]
        self.sent.append(bytes(data))
        return len(data)


class _RecordingSocket(socket.socket):
    """Records each send: (datagrams in it, address)."""

    def __init__(self, family: int, kind: int) -> None:
        super().__init__(family, kind)
        self.calls: list[tuple[int, object]] = []

    def sendmsg(self, buffers: Any, anc: Any = (), flags: int = 0, addr: Any = None) -> int:
        self.calls.append((len(buffers), addr))
        return sum(map(len, buffers))

    def sendto(self, data: Any, addr: Any) -> int:  # type: ignore[override]
        self.calls.append((1, addr))
        return len(data)


def _made(factory: type[socket.socket]) -> tuple[Any, list[socket.socket]]:
    """``factory`` as a ``sock_factory``, and the list of sockets it made."""
    made: list[socket.socket] = []

    def make(family: socket.AddressFamily, kind: socket.SocketKind) -> socket.socket:
        made.append(factory(family, kind))
        return made[-1]

    return make, made


@linux_only
@pytest.mark.anyio
async def test_a_kernel_without_gso_turns_it_off_and_loses_nothing() -> None:
    core = Core()
    make, made = _made(_NoGsoSocket)
    async with UdpEndpoint(LOOPBACK, clock=SystemClock(), quic=core, sock_factory=make) as ep:
        (fake,) = made
        assert isinstance(fake, _NoGsoSocket)
        run = [(d, ("127.0.0.1", 9)) for d, _ in _run(5, 300)]
        for _ in range(2):
            core.outbox = list(run)
            ep.flush()
        assert fake.gso_tries == 1  # tried once, then off for good
        assert fake.sent == [d for d, _ in run] * 2
        assert ep.statistics().sent == 10 and ep.statistics().gso_sends == 0


@linux_only
@pytest.mark.anyio
async def test_runs_split_on_address_and_on_a_longer_datagram() -> None:
    core = Core()
    make, made = _made(_RecordingSocket)
    async with UdpEndpoint(LOOPBACK, clock=SystemClock(), quic=core, sock_factory=make) as ep:
        (sock,) = made
        assert isinstance(sock, _RecordingSocket)
        x, y = ("127.0.0.1", 1), ("127.0.0.1", 2)
        big, small = b"\x41" * 1200, b"\x41" * 100
        core.outbox = [(big, x), (big, x), (small, x), (big, x), (big, y), (big, y), (big, x)]
        ep.flush()
        # [big big small] to x, [big] to x, [big big] to y, [big] to x
        assert sock.calls == [(3, x), (1, x), (2, y), (1, x)]


# ---------------------------------------------------------------------------- off Linux


class _NoOffloadSocket(socket.socket):
    """A socket as on Windows: any ``sendmsg``/``recvmsg`` call is recorded (there are none
    there); sends and reads go through ``sendto``/``recvfrom``."""

    def __init__(self, family: int, kind: int) -> None:
        super().__init__(family, kind)
        self.offload_calls: list[str] = []

    def sendmsg(self, *args: Any) -> int:
        self.offload_calls.append("sendmsg")
        raise OSError(errno.EOPNOTSUPP, "no sendmsg")

    def recvmsg(self, *args: Any) -> Any:
        self.offload_calls.append("recvmsg")
        raise OSError(errno.EOPNOTSUPP, "no recvmsg")


@pytest.fixture
def not_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    """The offload helpers see another platform: the package's platform name (what the
    simulated-OS mode sets) and their own view of ``sys`` (their type-checking guard)."""
    monkeypatch.setattr(_platform, "IS_LINUX", False)
    monkeypatch.setattr(udp_offload, "sys", SimpleNamespace(platform="win32"))


@pytest.mark.anyio
@pytest.mark.usefixtures("not_linux")
async def test_off_linux_the_endpoint_sends_and_reads_without_offload() -> None:
    assert not udp_offload.gso_supported() and not udp_offload.gro_supported()
    clock = SystemClock()
    count = GSO_MAX_SEGMENTS + 10
    a, b = Core(), Core(want=count, done=anyio.Event())
    make_a, made_a = _made(_NoOffloadSocket)
    make_b, made_b = _made(_NoOffloadSocket)
    async with (
        UdpEndpoint(LOOPBACK, clock=clock, quic=a, sock_factory=make_a) as ep_a,
        UdpEndpoint(LOOPBACK, clock=clock, quic=b, sock_factory=make_b) as ep_b,
    ):
        sent = [(d, ep_b.local_addr) for d, _ in _run(count, 700)]
        a.outbox = list(sent)
        ep_a.flush()
        assert b.done is not None
        with anyio.fail_after(5):
            await b.done.wait()
        assert b.received == [d for d, _ in sent]
        assert ep_a.statistics().sent == count and ep_a.statistics().gso_sends == 0
        assert ep_b.statistics().gro_reads == 0
    for sock in (*made_a, *made_b):
        assert isinstance(sock, _NoOffloadSocket) and sock.offload_calls == []


@pytest.mark.usefixtures("not_linux")
def test_off_linux_the_offload_calls_fail_like_a_kernel_without_them() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(OSError) as sent:
            udp_offload.send_segments(sock, [b"x" * 10, b"y" * 10], 10, ("127.0.0.1", 9))
        assert sent.value.errno in udp_offload.GSO_UNSUPPORTED  # the endpoint turns GSO off
        with pytest.raises(OSError) as read:
            udp_offload.recv_coalesced(sock, 100)
        assert read.value.errno == errno.EOPNOTSUPP


def test_runs_are_cut_at_the_segment_and_byte_limits() -> None:
    to = ("127.0.0.1", 1)
    small = [(b"\x41" * 100, to)] * (GSO_MAX_SEGMENTS + 1)
    assert list(udp_offload.gso_runs(small)) == [
        (0, GSO_MAX_SEGMENTS, 100),
        (GSO_MAX_SEGMENTS, GSO_MAX_SEGMENTS + 1, 100),
    ]
    # 54 datagrams of 1200 bytes fit in GSO_MAX_BYTES (65,000), the 55th would not
    assert list(udp_offload.gso_runs([(b"\x41" * 1200, to)] * 60)) == [
        (0, 54, 1200),
        (54, 60, 1200),
    ]
