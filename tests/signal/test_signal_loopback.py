"""Our signalling client and our hub over real loopback WebSockets (wsproto both ways)."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.abc
import cbor2
import pytest
from anyio.abc import TaskGroup

from a2al_mcp.config import SignalConfig
from a2al_mcp.errors import ConnectionClosed, HandshakeFailed, NotFound
from a2al_mcp.signal import frames
from a2al_mcp.signal.client_service import SignalService, answer, call
from a2al_mcp.signal.effects import IncomingCall
from a2al_mcp.signal.frames import Frame
from a2al_mcp.signal.rooms import SUBPROTOCOL, room_id
from a2al_mcp.signal.ws_client import open_websocket
from a2al_mcp.signal.ws_server import HubServer

pytestmark = pytest.mark.anyio

CALLER = "a08725FcbB74E85FFaa91c3f770978bDC7202A2e13"
CALLEE = "A0267183b0ecB1a4Cf41f11F5BcB631dC41CE07Ad6"


async def _hub(tg: TaskGroup, **kw: object) -> tuple[HubServer, str]:
    server = HubServer(SignalConfig(**kw))  # type: ignore[arg-type]
    host, port = await tg.start(server.serve, "127.0.0.1", 0)
    return server, f"ws://{host}:{port}"


async def until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 (polls the hub's counters; no event per condition)
        await anyio.sleep(0.01)


async def test_register_call_answer_and_relay() -> None:
    async with anyio.create_task_group() as tg:
        server, url = await _hub(tg)
        callee = SignalService(SignalConfig(), hubs=[url])
        callee.set_identities([CALLEE])
        await tg.start(callee.run)
        with anyio.fail_after(10):
            await callee.wait_registered()
        assert callee.core.registered_hubs() == (url,)
        assert server.core.registered(CALLEE)

        with anyio.fail_after(10):
            caller_room = await call(url, CALLER, CALLEE)
            assert caller_room.ws.subprotocol == SUBPROTOCOL
            cred = Frame("cred", u="kYGSNAIcGbKkXgCt", p="ItfdoSBhgVrxyIjVFZKoprFaBWOOQDjO")
            await caller_room.send(cred)  # before the callee joins: the hub keeps it
            incoming = await callee.incoming.receive()
            room = room_id(CALLER, CALLEE)
            assert incoming == IncomingCall(url, room, CALLER, CALLEE)
            callee_room = await answer(url, incoming.room)
            assert await callee_room.receive() == cred
            init = Frame("punch-init", addrs=("203.0.113.12:4121",), ts=1796224562332, nt=1)
            await caller_room.send(init)
            assert await callee_room.receive() == init
            ack = Frame("punch-ack", addrs=("198.51.100.22:4121",), ts=init.ts, nt=1)
            await callee_room.send(ack)
            assert await caller_room.receive() == ack
            # a partner leaving closes the room
            await caller_room.aclose()
            with pytest.raises(ConnectionClosed):
                await callee_room.receive()
        assert server.core.stats.sessions_total == 1
        assert server.core.stats.frames_relayed == 3
        tg.cancel_scope.cancel()


async def test_noagent() -> None:
    async with anyio.create_task_group() as tg:
        server, url = await _hub(tg)
        with anyio.fail_after(10):
            room = await call(url, CALLER, CALLEE)
            with pytest.raises(NotFound):
                await room.receive()
        assert server.core.stats.noagent_total == 1
        tg.cancel_scope.cancel()


async def test_bad_paths_are_refused_and_oversized_frames_close() -> None:
    async with anyio.create_task_group() as tg:
        server, url = await _hub(tg, max_frame_bytes=1024)
        with anyio.fail_after(10):
            with pytest.raises(HandshakeFailed, match="HTTP 404"):
                await open_websocket(url, "/nope")
            with pytest.raises(HandshakeFailed, match="HTTP 400"):
                await open_websocket(url, "/ice")
            ws = await open_websocket(url, "/signal")
            await ws.send(frames.encode(Frame("cand", c="x" * 5000)))
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive()
            assert info.value.error_code == 1009
            # unknown and malformed frames: counted, the socket and the hub keep serving
            ws = await open_websocket(url, "/signal")
            await ws.send(cbor2.dumps({"t": "hello"}))
            await ws.send(b"\xff\xfe")
            await ws.send(frames.encode(Frame("reg", a=CALLEE)))
            assert frames.decode(await ws.receive()) == Frame("ack")
            await ws.aclose()
        assert server.core.stats.frames_oversized == 1
        assert (server.core.stats.frames_unknown, server.core.stats.frames_malformed) == (1, 1)
        assert server.core.stats.upgrades_refused == 2
        tg.cancel_scope.cancel()


async def test_thousand_sockets_from_one_address_are_refused() -> None:
    """1,000 TCP connections from 127.0.0.1: 16 are held (until the upgrade timeout), the
    rest refused at once and counted; the hub keeps serving."""
    async with anyio.create_task_group() as tg:
        server, url = await _hub(tg, hub_max_sockets_per_ip=16, hub_max_sockets=1024)
        host, port = url.removeprefix("ws://").split(":")
        with anyio.fail_after(60):
            held = [await anyio.connect_tcp(host, int(port)) for _ in range(1000)]
            await until(lambda: server.core.stats.sockets_refused_per_ip == 984)
            assert server.core.sockets == 16
            # another address is served while the flood is held open
            other = await anyio.connect_tcp(host, int(port), local_host="127.0.0.2")
            await _a2ald_upgrade_and_reg(other)
            await other.aclose()
            for stream in held:
                await stream.aclose()
            await until(lambda: server.core.sockets == 0)
            # and so is this one once its flood is gone
            ws = await open_websocket(url, "/signal")
            await ws.send(frames.encode(Frame("reg", a=CALLEE)))
            assert frames.decode(await ws.receive()) == Frame("ack")
            await ws.aclose()
        assert server.core.stats.sockets_refused_per_ip == 984
        assert server.core.stats.sockets_refused == 0
        tg.cancel_scope.cancel()


async def test_a2ald_request_bytes_are_accepted() -> None:
    """The upgrade exactly as a2ald 0.3.5 (Go) sent it in the testbed, on a raw socket."""
    async with anyio.create_task_group() as tg:
        _server, url = await _hub(tg)
        host, port = url.removeprefix("ws://").split(":")
        with anyio.fail_after(10):
            stream = await anyio.connect_tcp(host, int(port))
            await _a2ald_upgrade_and_reg(stream)
            await stream.aclose()
        tg.cancel_scope.cancel()


async def _a2ald_upgrade_and_reg(stream: anyio.abc.SocketStream) -> None:
    """Send a2ald's captured upgrade and (masked) reg frame; expect its captured answers."""
    request = (
        b"GET /signal HTTP/1.1\r\nHost: 203.0.113.11:4121\r\nUser-Agent: Go-http-client/1.1\r\n"
        b"Connection: Upgrade\r\nSec-Websocket-Key: 6p8j2LBCLPvkuaDNT8OeBw==\r\n"
        b"Sec-Websocket-Protocol: a2al.ice.v1\r\nSec-Websocket-Version: 13\r\n"
        b"Upgrade: websocket\r\nAccept-Encoding: gzip\r\n\r\n"
    )
    await stream.send(request)
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive()
    lines = head.split(b"\r\n\r\n")[0].decode().lower().split("\r\n")
    assert lines[0] == "http/1.1 101 switching protocols"
    assert "sec-websocket-accept: 6m4e+qrxk9gihd+oxdsfawm+jr8=" in lines
    assert "sec-websocket-protocol: a2al.ice.v1" in lines
    reg = bytes.fromhex("a26174637265676161782a61303232453336434134326531463535384430394532"
                        "4631413946463432453864443438303563313646")  # fmt: skip
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(reg))
    await stream.send(bytes([0x82, 0x80 | len(reg)]) + mask + masked)
    assert await stream.receive() == bytes([0x82, 7]) + bytes.fromhex("a161746361636b")


async def test_client_reconnects_and_registers_again_when_the_hub_comes_back() -> None:
    async with anyio.create_task_group() as tg:
        async with anyio.create_task_group() as hub_tg:
            first, url = await _hub(hub_tg)
            service = SignalService(
                SignalConfig(reconnect_initial_s=0.05, reconnect_max_s=0.2), hubs=[url]
            )
            service.set_identities([CALLEE])
            await tg.start(service.run)
            with anyio.fail_after(10):
                await until(lambda: first.core.registered(CALLEE))
            hub_tg.cancel_scope.cancel()  # the hub goes away
        with anyio.fail_after(10):
            await until(lambda: service.core.registered_hubs() == ())
        host, port = url.removeprefix("ws://").split(":")
        second = HubServer(SignalConfig())
        await tg.start(second.serve, host, int(port))  # back on the same address
        with anyio.fail_after(20):
            await until(lambda: second.core.registered(CALLEE))
            await until(lambda: service.core.registered_hubs() == (url,))
        assert service.core.stats.disconnects >= 1
        tg.cancel_scope.cancel()


async def test_silent_connection_and_lonely_room_are_closed_by_the_timers() -> None:
    async with anyio.create_task_group() as tg:
        server, url = await _hub(tg, hub_handshake_timeout_s=0.2, hub_pair_timeout_s=0.2)
        host, port = url.removeprefix("ws://").split(":")
        with anyio.fail_after(10):
            silent = await anyio.connect_tcp(host, int(port))  # never sends its upgrade
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await silent.receive()
            await silent.aclose()
            lonely = await open_websocket(url, "/ice?room=" + room_id(CALLER, CALLEE))
            with pytest.raises(ConnectionClosed) as info:
                await lonely.receive()
            assert info.value.error_code == 1001
            await lonely.aclose()
        assert server.core.stats.upgrade_timeouts == 1
        assert server.core.stats.rooms_unpaired == 1
        tg.cancel_scope.cancel()
