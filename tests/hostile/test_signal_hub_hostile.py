"""Hostile input for our signalling hub (issue 18), over real TCP and WebSocket on 127.0.0.1:
bad frames in a room, oversized messages however they are framed, bytes that are not HTTP or
not WebSocket, a room that never pairs, a flood of sockets from one address. Each is refused
and counted in :class:`~a2al_mcp.signal.hub_core.HubStats`, and the hub keeps serving: the
sockets it already had, and new ones.

(tests/signal/test_signal_loopback.py has the plain cases: a simple oversized frame, an
unknown and a malformed frame on ``/signal``, a silent connection, 1,000 sockets while another
address is served; tests/unit/signal/test_signal_hub_core.py the core's decisions.)
"""

from __future__ import annotations

import os
import socket

import anyio
import anyio.abc
import cbor2
import pytest
from anyio.abc import TaskGroup
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request

from a2al_mcp.config import SignalConfig
from a2al_mcp.errors import ConnectionClosed
from a2al_mcp.signal import frames
from a2al_mcp.signal.frames import Frame
from a2al_mcp.signal.rooms import SUBPROTOCOL, room_id
from a2al_mcp.signal.ws_client import WebSocket, open_websocket
from a2al_mcp.signal.ws_server import HubServer
from tests.signal.test_signal_loopback import until

pytestmark = pytest.mark.anyio

CALLER = "a08725FcbB74E85FFaa91c3f770978bDC7202A2e13"
CALLEE = "A0267183b0ecB1a4Cf41f11F5BcB631dC41CE07Ad6"
ROOM = room_id(CALLER, CALLEE)
CAND = Frame("cand", c="1 1 udp 2130706431 10.0.0.2 4121 typ host")
OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
MASK = b"\x5a\xa5\x3c\xc3"


async def _hub(tg: TaskGroup, **kw: object) -> tuple[HubServer, str, int]:
    server = HubServer(SignalConfig(**kw))  # type: ignore[arg-type]
    host, port = await tg.start(server.serve, "127.0.0.1", 0)
    return server, host, port


def _frame(opcode: int, payload: bytes, *, fin: bool = True, length: int | None = None,
           masked: bool = True) -> bytes:  # fmt: skip
    """One WebSocket frame as a client writes it; ``length`` declares another payload size."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


class _RawClient:
    """A WebSocket client that can write any bytes after its (proper) upgrade; what the hub
    sends back is read with wsproto."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)

    @classmethod
    async def open(cls, host: str, port: int, target: str, *, local_host: str | None = None
                   ) -> _RawClient:  # fmt: skip
        client = cls(await anyio.connect_tcp(host, port, local_host=local_host))
        request = Request(host=f"{host}:{port}", target=target, subprotocols=[SUBPROTOCOL])
        await client.stream.send(client.ws.send(request))
        assert isinstance(await client.event(), AcceptConnection)
        return client

    async def event(self) -> object:
        """The hub's next event (a message, its close, or the upgrade's answer)."""
        while True:
            for event in self.ws.events():
                return event
            self.ws.receive_data(await self.stream.receive())

    async def close_code(self) -> int:
        """Read until the hub's close frame; its code."""
        while True:
            event = await self.event()
            if isinstance(event, CloseConnection):
                await self.stream.aclose()
                return event.code


async def _registers(host: str, port: int, aid: str = CALLEE) -> None:
    """A legitimate client: ``reg`` on ``/signal`` is answered ``ack``."""
    ws = await open_websocket(f"ws://{host}:{port}", "/signal")
    try:
        await ws.send(frames.encode(Frame("reg", a=aid)))
        assert frames.decode(await ws.receive()) == Frame("ack")
    finally:
        await ws.aclose()


async def _pair(host: str, port: int, room: str) -> tuple[WebSocket, WebSocket]:
    url = f"ws://{host}:{port}"
    return await open_websocket(url, f"/ice?room={room}"), await open_websocket(
        url, f"/ice?room={room}"
    )


async def _relays(host: str, port: int, room: str) -> None:
    """A new room pairs and relays a frame each way."""
    a, b = await _pair(host, port, room)
    await a.send(frames.encode(CAND))
    assert frames.decode(await b.receive()) == CAND
    await b.send(frames.encode(Frame("eoc")))
    assert frames.decode(await a.receive()) == Frame("eoc")
    await a.aclose()
    await b.aclose()


async def _close_code(ws: WebSocket) -> int:
    with pytest.raises(ConnectionClosed) as info:
        await ws.receive()
    await ws.aclose()
    code = info.value.error_code
    assert code is not None
    return code


async def test_bad_frames_in_a_room_are_not_relayed_and_too_many_close_their_sender() -> None:
    async with anyio.create_task_group() as tg:
        server, host, port = await _hub(tg, hub_max_bad_frames=3)
        stats = server.core.stats
        with anyio.fail_after(20):
            sender = await _RawClient.open(host, port, f"/ice?room={ROOM}")
            partner = await open_websocket(f"ws://{host}:{port}", f"/ice?room={ROOM}")
            await until(lambda: stats.sessions_total == 1)
            bad = [
                _frame(OP_BINARY, b"\xff\xfe\x00"),  # not CBOR
                _frame(OP_BINARY, cbor2.dumps({"t": "hello", "x": 1})),  # unknown type
                _frame(OP_TEXT, b'{"t":"cand"}'),  # a text message
            ]
            for data in bad:
                await sender.stream.send(data)
            await sender.stream.send(_frame(OP_BINARY, frames.encode(CAND)))
            # relayed in order: the partner's first message is the good frame
            assert frames.decode(await partner.receive()) == CAND
            assert (stats.frames_malformed, stats.frames_unknown, stats.frames_relayed) == (2, 1, 1)
            # one more is one too many: the sender is closed (1008), its partner with it
            await sender.stream.send(_frame(OP_BINARY, b"\xc1"))
            assert await sender.close_code() == 1008
            assert await _close_code(partner) == 1000
            assert stats.frames_malformed == 3
            await until(lambda: server.core.sockets == 0)
            assert server.core.rooms == 0
            # the hub keeps serving
            await _registers(host, port)
            await _relays(host, port, ROOM)
        assert stats.frames_relayed == 3
        tg.cancel_scope.cancel()


async def test_oversized_messages_close_1009_however_they_are_framed() -> None:
    """A frame declaring 64 MiB (the hub stops reading it past ``max_frame_bytes``), a message
    in fragments each under the cap, and an oversized message in a paired room."""
    async with anyio.create_task_group() as tg:
        server, host, port = await _hub(tg, max_frame_bytes=1024)
        stats = server.core.stats
        with anyio.fail_after(20):
            huge = await _RawClient.open(host, port, "/signal")
            await huge.stream.send(_frame(OP_BINARY, b"\xa1" * 2048, length=64 << 20))
            assert await huge.close_code() == 1009  # without the other 64 MiB
            assert stats.frames_oversized == 1

            pieces = await _RawClient.open(host, port, "/signal")
            await pieces.stream.send(_frame(OP_BINARY, b"\xa1" * 600, fin=False))
            await pieces.stream.send(_frame(OP_CONT, b"\x00" * 600, fin=False))
            assert await pieces.close_code() == 1009
            assert stats.frames_oversized == 2

            sender = await _RawClient.open(host, port, f"/ice?room={ROOM}")
            partner = await open_websocket(f"ws://{host}:{port}", f"/ice?room={ROOM}")
            await until(lambda: stats.sessions_total == 1)
            await sender.stream.send(_frame(OP_BINARY, b"\x00" * 1025))
            assert await sender.close_code() == 1009
            assert await _close_code(partner) == 1000
            assert (stats.frames_oversized, stats.frames_relayed) == (3, 0)
            await until(lambda: server.core.sockets == 0)
            await _registers(host, port)
            await _relays(host, port, ROOM)
        tg.cancel_scope.cancel()


async def test_bytes_that_are_not_http_or_not_websocket_are_dropped_and_counted() -> None:
    async with anyio.create_task_group() as tg:
        server, host, port = await _hub(tg)
        stats = server.core.stats
        with anyio.fail_after(20):
            tls = await anyio.connect_tcp(host, port)  # a TLS ClientHello, not HTTP
            await tls.send(bytes.fromhex("160301020001000200030300") + b"\x00" * 64)
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                while True:
                    await tls.receive()
            await tls.aclose()
            assert stats.protocol_errors == 1

            unmasked = await _RawClient.open(host, port, "/signal")  # a client must mask
            await unmasked.stream.send(_frame(OP_BINARY, frames.encode(CAND), masked=False))
            assert await unmasked.close_code() == 1002
            assert stats.protocol_errors == 2

            opcode = await _RawClient.open(host, port, "/signal")
            await opcode.stream.send(_frame(0x3, b"?"))  # a reserved opcode
            assert await opcode.close_code() == 1002
            assert stats.protocol_errors == 3

            await until(lambda: server.core.sockets == 0)
            await _registers(host, port)
        assert stats.upgrades_refused == 0
        tg.cancel_scope.cancel()


async def test_a_room_that_never_pairs_is_closed_and_the_hub_keeps_pairing() -> None:
    async with anyio.create_task_group() as tg:
        server, host, port = await _hub(tg, hub_pair_timeout_s=0.5)
        stats = server.core.stats
        with anyio.fail_after(20):
            lonely = await open_websocket(f"ws://{host}:{port}", f"/ice?room={ROOM}")
            await lonely.send(frames.encode(CAND))  # held for a partner who never comes
            await until(lambda: server.core.rooms == 1)
            await _relays(host, port, "other-room")  # served while the lonely one waits
            assert await _close_code(lonely) == 1001
            assert stats.rooms_unpaired == 1
            await until(lambda: server.core.rooms == 0)
            # the room is free again, and what the lonely socket sent is gone with it
            first, second = await _pair(host, port, ROOM)
            await second.send(frames.encode(Frame("eoc")))
            assert frames.decode(await first.receive()) == Frame("eoc")
            await first.send(frames.encode(Frame("eoc")))
            assert frames.decode(await second.receive()) == Frame("eoc")
            await first.aclose()
            await second.aclose()
        assert (stats.sessions_total, stats.frames_relayed) == (2, 4)
        tg.cancel_scope.cancel()


async def test_a_thousand_sockets_from_one_address_leave_its_registered_client_served() -> None:
    """A client registered from 127.0.0.1 keeps being answered while 1,000 more connections
    from 127.0.0.1 arrive: those beyond ``hub_max_sockets_per_ip`` are refused at once and
    counted; other addresses are served meanwhile, and 127.0.0.1 again afterwards."""
    async with anyio.create_task_group() as tg:
        server, host, port = await _hub(tg, hub_max_sockets_per_ip=16, hub_max_sockets=1024)
        stats = server.core.stats
        with anyio.fail_after(60):
            legit = await open_websocket(f"ws://{host}:{port}", "/signal")
            await legit.send(frames.encode(Frame("reg", a=CALLEE)))
            assert frames.decode(await legit.receive()) == Frame("ack")
            flood = [await anyio.connect_tcp(host, port) for _ in range(1000)]
            await until(lambda: stats.sockets_refused_per_ip == 985)
            assert server.core.sockets == 16
            # during the flood: the registered socket is answered, another address served
            await legit.send(frames.encode(Frame("reg", a=CALLEE)))
            assert frames.decode(await legit.receive()) == Frame("ack")
            assert server.core.registered(CALLEE)
            other = await _RawClient.open(host, port, "/signal", local_host="127.0.0.2")
            await other.stream.send(
                other.ws.send(BytesMessage(frames.encode(Frame("reg", a=CALLER))))
            )
            ack = await other.event()
            assert isinstance(ack, BytesMessage) and frames.decode(bytes(ack.data)) == Frame("ack")
            await other.stream.aclose()
            await until(lambda: server.core.sockets == 16)
            for stream in flood:
                await stream.aclose()
            await until(lambda: server.core.sockets == 1)
            await _registers(host, port, CALLER)  # 127.0.0.1 is served again
            await legit.aclose()
        assert (stats.sockets_refused_per_ip, stats.sockets_refused) == (985, 0)
        tg.cancel_scope.cancel()


async def test_out_of_descriptors_the_hub_waits_and_then_serves_what_queued() -> None:
    """With the process's descriptor table full, accepting fails (EMFILE): the hub counts it,
    backs off instead of ending, and serves the connections the kernel queued meanwhile once
    descriptors are free again."""
    resource = pytest.importorskip("resource")
    async with anyio.create_task_group() as tg:
        server, host, port = await _hub(tg)
        with anyio.fail_after(20):
            clients = [socket.socket() for _ in range(3)]  # their descriptors exist already
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            lowest_free = os.open(os.devnull, os.O_RDONLY)  # the lowest free number
            os.close(lowest_free)
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
            try:
                for client in clients:
                    client.connect((host, port))  # queued by the kernel: no descriptor here
                await until(lambda: server.accept_errors >= 1)
                assert server.core.sockets == 0
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            await until(lambda: server.core.sockets == 3)
            streams = [await anyio.abc.SocketStream.from_socket(c) for c in clients]
            for stream in streams:
                await stream.aclose()
            await until(lambda: server.core.sockets == 0)
            await _registers(host, port)
        tg.cancel_scope.cancel()
