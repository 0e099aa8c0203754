"""Only the connections that moved are asked (issue 15), and none that moved is missed.

Two :class:`~a2al_mcp.transport.peer.QuicService` in memory, wired host to host with a
frozen-then-stepped clock. After every ask of a host (``datagrams_to_send``), each of its
connections is asked again directly, at the same ``now``: anything it still had to send was
missed — a command, a received datagram or a fired timer that did not mark its connection,
which would then have waited for its next timer (a delayed ACK, a PTO: tens of ms). Every
command path of ``peer.py`` runs under that check, on both stacks. Then, on a bare tracked
:class:`~a2al_mcp.transport.quic_host.QuicHost`: idle connections are neither asked nor have
their timers read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from a2al_mcp._random import SeededRng
from a2al_mcp.config import LimitsConfig
from a2al_mcp.identity import Identity
from a2al_mcp.protocol import session_frames as sf
from a2al_mcp.transport import tls
from a2al_mcp.transport.peer import (
    QH3_AVAILABLE,
    InboundHandlers,
    PeerConnection,
    PeerStream,
    QuicService,
)
from a2al_mcp.transport.quic_host import ConnectionEvent, QuicHost
from tests.unit.transport.test_quic_host import _cert

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000
DIALER_ADDR, ACCEPTOR_ADDR = ("127.0.0.1", 1000), ("127.0.0.1", 2000)
STACKS = ["aioquic", *(["qh3"] if QH3_AVAILABLE else [])]
STEP_S = 0.0005
QUIET_STEPS = 100
"""50 ms of the wire's clock: past the delayed-ACK timers."""


class Wire:
    """A dialling and an accepting service, their hosts wired back to back; ``step`` does
    what the endpoint's flush and timer loop do, and records every missed send."""

    def __init__(self, stack: str, tg: anyio.abc.TaskGroup) -> None:
        rng = SeededRng(7)
        self.tg = tg
        self.now = 1.0
        self.misses: list[tuple[str, int]] = []
        self.sides_made: list[Identity] = []
        self.spied: dict[Any, Callable[[float], list[tuple[bytes, Any]]]] = {}
        self.asked: set[Any] = set()
        self.dialer_id, self.acceptor_id = Identity.generate(rng), Identity.generate(rng)
        self.served: list[bytes] = []
        self.notes: list[sf.MailboxFrame] = []
        self.read_gate = anyio.Event()
        """The service handler reads nothing before this is set (credit is given late)."""
        self.store_gate = anyio.Event()
        """The mailbox handler stores (and so acknowledges) only after this is set."""
        self.quiet_steps = 0
        """Steps in a row in which no datagram moved."""
        self.quiet_event = anyio.Event()
        # small windows: the reader's credit (after_read) must go out or the writer stalls
        limits = LimitsConfig(stream_receive_buffer=64 * 1024,
                              connection_receive_buffer=128 * 1024)  # fmt: skip
        handlers = InboundHandlers(
            route=lambda pc, route: self.acceptor_id.aid,
            service=self._serve,
            mailbox=self._store,
        )
        self.dialer = self._service(stack, self.dialer_id, None, limits)
        self.acceptor = self._service(stack, self.acceptor_id, handlers, limits)
        self.sides = (
            ("dialer", self.dialer, self.acceptor, DIALER_ADDR),
            ("acceptor", self.acceptor, self.dialer, ACCEPTOR_ADDR),
        )

    def _service(
        self, stack: str, ident: Identity, handlers: InboundHandlers | None, limits: LimitsConfig
    ) -> QuicService:
        certs = tls.CertificateStore.generate(ident, now=T0, rng=SeededRng(len(self.sides_made)))
        self.sides_made.append(ident)
        return QuicService(certificates=certs, flush=lambda: None, now=lambda: self.now,
                           wall=lambda: T0, spawn=self._spawn, handlers=handlers,
                           outbound_stack=stack, inbound_stack=stack,
                           limits=limits)  # fmt: skip

    def _spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        self.tg.start_soon(fn)

    async def _serve(self, pc: PeerConnection, stream: PeerStream, token: str | None) -> None:
        await self.read_gate.wait()
        while True:  # read everything, slowly enough that credit is given in steps
            try:
                data = await stream.receive(16 * 1024)
            except anyio.EndOfStream:
                break
            self.served.append(data)
        await stream.send(b"done")

    async def _store(self, pc: PeerConnection, frame: sf.MailboxFrame) -> bool:
        await self.store_gate.wait()
        self.notes.append(frame)
        return True

    def _spy(self, conn: Any) -> None:
        """Note when the host asks ``conn`` for datagrams (a test double on the instance)."""
        if conn in self.spied:
            return
        ask = self.spied[conn] = conn.datagrams_to_send

        def asked(now: float) -> list[tuple[bytes, Any]]:
            self.asked.add(conn)
            return ask(now)  # type: ignore[no-any-return]

        conn.datagrams_to_send = asked

    def step(self) -> None:
        for _, svc, _, _ in self.sides:
            while (event := svc.host.next_event()) is not None:
                svc.on_event(event)
        moved = False
        for name, svc, other, addr in self.sides:
            conns = list(svc.host.connections())
            for conn in conns:
                self._spy(conn)
            self.asked.clear()
            out = svc.host.datagrams_to_send(self.now)
            for conn in conns:
                if conn in self.asked:
                    continue  # it may have stopped short (a burst per call): asked again later
                left = self.spied[conn](self.now)
                if left:  # it had something to send and the host did not ask it
                    self.misses.append((name, len(left)))
                    out.extend(left)
            for data, _ in out:
                other.host.receive_datagram(data, addr, self.now)
            moved = moved or bool(out)
        self.quiet_steps = 0 if moved else self.quiet_steps + 1
        self.now += STEP_S
        for _, svc, _, _ in self.sides:
            timer = svc.host.get_timer()
            if timer is not None and timer <= self.now:
                svc.host.handle_timer(self.now)

    async def quiet(self) -> None:
        """Until nothing moved for 100 steps (50 ms, delayed ACKs included): a command
        issued now finds its connection unmarked and quiet, so a missing mark shows."""
        self.quiet_steps = 0
        self.quiet_event = anyio.Event()
        await self.quiet_event.wait()

    async def run(self) -> None:
        while True:
            self.step()
            if self.quiet_steps >= QUIET_STEPS:
                self.quiet_event.set()
            await anyio.lowlevel.checkpoint()

    async def dial(self) -> PeerConnection:
        cert = self.dialer.certificates.get(self.dialer_id.aid)
        pc = self.dialer.dial(cert, self.acceptor_id.aid, ACCEPTOR_ADDR)
        await pc.wait_ready()
        return pc


async def _with_wire(stack: str, body: Callable[[Wire], Awaitable[None]]) -> Wire:
    async with anyio.create_task_group() as tg:
        wire = Wire(stack, tg)
        tg.start_soon(wire.run)
        with anyio.fail_after(20):
            await body(wire)
        tg.cancel_scope.cancel()
    return wire


@pytest.mark.parametrize("stack", STACKS)
async def test_every_command_path_is_sent_without_waiting_for_a_timer(stack: str) -> None:
    """Dial, route, admission, writes larger than the windows (credit from after_read),
    FIN, STOP_SENDING, reset, mailbox and its acknowledgement, ping, close: nothing any
    connection had to send was left for a timer."""

    async def body(wire: Wire) -> None:
        pc = await wire.dial()
        await wire.quiet()
        stream = await pc.open_stream()  # the stream and its admission preamble
        await wire.quiet()
        await stream.send(b"x" * 300_000)  # beyond the windows: waits for credit
        await wire.quiet()  # ... which the reader gives only once it reads
        wire.read_gate.set()
        await wire.quiet()
        assert b"".join(wire.served) == b"x" * 300_000
        await stream.send_eof()
        await wire.quiet()
        assert await stream.receive() == b"done"
        await wire.quiet()
        await stream.aclose()
        await wire.quiet()
        other = await pc.open_stream()
        await wire.quiet()
        other.reset()
        await wire.quiet()
        third = await pc.open_stream()
        await wire.quiet()
        await third.aclose()  # FIN, and STOP_SENDING: the peer has not finished
        await wire.quiet()
        frame = sf.MailboxFrame(msg_id=bytes(range(32)), record=b"note")
        async with anyio.create_task_group() as tg:
            tg.start_soon(pc.send_mailbox, frame)
            await wire.quiet()
            wire.store_gate.set()  # the acknowledgement is written now
        assert [n.record for n in wire.notes] == [b"note"]
        await wire.quiet()
        pc.ping()
        await wire.quiet()
        pc.close(0, "bye")
        await wire.quiet()

    wire = await _with_wire(stack, body)
    assert wire.misses == []


@pytest.mark.parametrize("stack", STACKS)
async def test_a_command_is_sent_by_the_next_send_at_the_same_instant(stack: str) -> None:
    """Straight after a command, without any timer: its connection's host has datagrams."""
    async with anyio.create_task_group() as outer:
        wire = Wire(stack, outer)
        async with anyio.create_task_group() as pump:
            wire.tg = pump
            pump.start_soon(wire.run)
            with anyio.fail_after(20):
                pc = await wire.dial()
                await anyio.sleep(0.01)
            pump.cancel_scope.cancel()
        host = wire.dialer.host
        while host.datagrams_to_send(wire.now):  # everything left goes: a quiet host
            pass
        assert host.datagrams_to_send(wire.now) == []
        pc.ping()
        assert host.datagrams_to_send(wire.now)  # the PING, without a timer
        pc.close(0, "bye")
        assert host.datagrams_to_send(wire.now)  # the CONNECTION_CLOSE
        outer.cancel_scope.cancel()


# ------------------------------------------------------------------------ idle connections


CERT, KEY = _cert()  # test_quic_host's self-signed certificate
CALLS: Counter[tuple[str, int]] = Counter()


class _Counted(QuicConnection):
    """Counts the host's ``datagrams_to_send`` and ``get_timer`` calls, per connection."""

    def __init__(self, number: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.number = number

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        CALLS["send", self.number] += 1
        return super().datagrams_to_send(now)

    def get_timer(self) -> float | None:
        CALLS["timer", self.number] += 1
        return super().get_timer()


N = 12


def _idle_hosts() -> tuple[QuicHost, QuicHost, list[_Counted], float]:
    """N handshaken aioquic connections from one tracked host to another, all quiet."""

    def factory(dcid: bytes, addr: tuple[str, int]) -> QuicConnection:
        cfg = QuicConfiguration(is_client=False, alpn_protocols=["a2al-quic-1"])
        cfg.certificate, cfg.private_key = CERT, KEY
        return _Counted(100, configuration=cfg, original_destination_connection_id=dcid)

    server, client = QuicHost(factory, tracked=True), QuicHost(tracked=True)
    conns = []
    now = 1.0
    for i in range(N):
        cfg = QuicConfiguration(is_client=True, alpn_protocols=["a2al-quic-1"])
        cfg.verify_mode = 0
        conns.append(_Counted(i, configuration=cfg))
        client.connect(conns[-1], ACCEPTOR_ADDR, now)
    for _ in range(200):  # handshakes, then delayed ACKs and HANDSHAKE_DONE settle
        for host in (client, server):
            timer = host.get_timer()
            if timer is not None and timer <= now:
                host.handle_timer(now)
        for src, dst, addr in ((client, server, DIALER_ADDR), (server, client, ACCEPTOR_ADDR)):
            for data, _ in src.datagrams_to_send(now):
                dst.receive_datagram(data, addr, now)
        for host in (client, server):
            while (event := host.next_event()) is not None:
                assert not isinstance(event, ConnectionEvent) or event.event is not None
        now += 0.005
    assert all(c._handshake_confirmed for c in conns)
    assert client.datagrams_to_send(now) == [] and server.datagrams_to_send(now) == []
    client.get_timer(), server.get_timer()
    CALLS.clear()
    return server, client, conns, now


def test_idle_connections_are_neither_asked_nor_read() -> None:
    _, client, _, now = _idle_hosts()
    deadline = client.get_timer()
    assert deadline is not None and deadline > now  # the idle timeout, far away
    for _ in range(5):
        assert client.datagrams_to_send(now) == []
        client.get_timer()
        client.handle_timer(now)
    assert not CALLS  # no connection was asked anything


def test_a_send_on_one_connection_asks_only_that_one() -> None:
    server, client, conns, now = _idle_hosts()
    conn = conns[5]
    conn.send_stream_data(conn.get_next_available_stream_id(), b"x" * 3000, end_stream=True)
    client.touch(conn)
    out = client.datagrams_to_send(now)
    assert out
    client.get_timer()
    assert {number for _, number in CALLS} == {5}
    CALLS.clear()
    for data, _ in out:
        server.receive_datagram(data, DIALER_ADDR, now)
    server.datagrams_to_send(now)
    server.get_timer()
    assert {number for _, number in CALLS} == {100}  # the server side, one connection
    assert len(list(server.connections())) == N


def test_a_connection_whose_timer_fired_is_asked_and_resends() -> None:
    _, client, conns, now = _idle_hosts()
    conn = conns[0]
    conn.send_stream_data(conn.get_next_available_stream_id(), b"y" * 1000)
    client.touch(conn)
    assert client.datagrams_to_send(now)  # lost: loss detection must resend
    CALLS.clear()
    deadline = client.get_timer()
    assert deadline is not None
    client.handle_timer(deadline)
    assert client.datagrams_to_send(deadline)  # the probe, without another mark
    assert {number for _, number in CALLS} == {0}
