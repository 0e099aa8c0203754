"""Issue 18, signalling hub: ours and a2ald 0.3.5's, each used by the other (sealed namespace).

* our client registers with a2ald's embedded hub and gets ``ack`` (also after an unknown and
  a malformed frame, which a2ald skips); a call through a2ald's hub
  reaches our registered client (``incoming``), the room pairs and relays our frames both ways;
  an unregistered target gets ``noagent``;
* a2ald registers its node identity with our hub (``ice_signal_urls``), and a call through our
  hub wakes it: it joins the room and starts its ICE/punch exchange (its ``cred`` arrives).

Run with ``bash .ci/test -q tests/interop/test_signal_hub.py`` (it seals a namespace itself).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import cbor2
import pytest

from a2al_mcp.config import SignalConfig
from a2al_mcp.errors import ConnectionClosed, HandshakeFailed, NetworkError, NotFound
from a2al_mcp.signal import frames
from a2al_mcp.signal.client_service import SignalService, answer, call
from a2al_mcp.signal.effects import IncomingCall
from a2al_mcp.signal.frames import Frame
from a2al_mcp.signal.rooms import SUBPROTOCOL, ice_target, room_id
from a2al_mcp.signal.ws_client import open_websocket
from a2al_mcp.signal.ws_server import HubServer
from a2al_mcp.testing.a2ald import A2aldPeer

pytestmark = [pytest.mark.interop, pytest.mark.anyio, pytest.mark.usefixtures("a2ald_available")]

CALLER = "a08725FcbB74E85FFaa91c3f770978bDC7202A2e13"
CALLEE = "A0267183b0ecB1a4Cf41f11F5BcB631dC41CE07Ad6"
NOBODY = "a0682694f297ccf6b17a881ee35c403f88296c55fd"


class HubPeer(A2aldPeer):
    """An a2ald whose ``config.toml`` also runs its hub on 127.0.0.1 (TCP port = its UDP port)
    and/or registers with ``signal_urls``; everything else as the harness writes it."""

    def __init__(
        self, data_dir: Path, *, hub: bool = False, signal_urls: Sequence[str] = (), **kw: Any
    ) -> None:
        super().__init__(data_dir, **kw)
        self.hub = hub
        self.signal_urls = tuple(signal_urls)

    def _prepare_data_dir(self) -> None:
        super()._prepare_data_dir()
        path = self.data_dir / "config.toml"
        text = path.read_text(encoding="utf-8")
        edits = {}
        if self.hub:
            edits['signal_listen_addr = "off"'] = (
                f'signal_listen_addr = "127.0.0.1:{self.udp_port}"'
            )
        if self.signal_urls:
            edits["ice_signal_urls = []"] = f"ice_signal_urls = {json.dumps(self.signal_urls)}"
        for old, new in edits.items():
            assert text.count(old) == 1, old
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")

    @property
    def hub_url(self) -> str:
        return f"ws://127.0.0.1:{self.udp_port}"


async def until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 (polls counters; no event per condition)
        await anyio.sleep(0.05)


async def started(peer: A2aldPeer) -> None:
    peer.start()
    await anyio.to_thread.run_sync(lambda: peer.wait_ready(30, require_peers=False))


async def test_our_client_uses_a2ald_s_hub(tmp_path: Path) -> None:
    async with anyio.create_task_group() as tg:
        peer = HubPeer(tmp_path / "a2ald", hub=True, name="a2ald-hub")
        try:
            await started(peer)
            url = peer.hub_url
            with anyio.fail_after(20):  # its hub comes up with the daemon
                while True:
                    try:
                        probe = await open_websocket(url, "/signal")
                    except NetworkError:
                        await anyio.sleep(0.1)
                        continue
                    assert probe.subprotocol == SUBPROTOCOL
                    await probe.aclose()
                    break

            # what it does not understand is skipped; the socket keeps working
            raw = await open_websocket(url, "/signal")
            await raw.send(cbor2.dumps({"t": "hello", "a": CALLER}))
            await raw.send(b"\xff\x00")
            await raw.send(frames.encode(Frame("reg", a=CALLER)))
            with anyio.fail_after(10):
                assert frames.decode(await raw.receive()) == Frame("ack")
            await raw.aclose()

            service = SignalService(SignalConfig(), hubs=[url])
            service.set_identities([CALLEE])
            await tg.start(service.run)
            with anyio.fail_after(10):
                await service.wait_registered()  # a2ald's hub answered our reg with ack
            assert service.core.registered_hubs() == (url,)

            with anyio.fail_after(20):
                caller = await call(url, CALLER, CALLEE)
                cred = Frame("cred", u="kYGSNAIcGbKkXgCt", p="ItfdoSBhgVrxyIjVFZKoprFaBWOOQDjO")
                await caller.send(cred)
                incoming = await service.incoming.receive()
                assert incoming == IncomingCall(url, room_id(CALLER, CALLEE), CALLER, CALLEE)
                callee = await answer(url, incoming.room)
                assert await callee.receive() == cred  # a2ald's hub kept it for the partner
                ack = Frame("punch-ack", addrs=("198.51.100.22:4121",), ts=1796224562332, nt=1)
                await callee.send(ack)
                assert await caller.receive() == ack
                await caller.aclose()
                await callee.aclose()

                lonely = await call(url, CALLER, NOBODY)
                with pytest.raises(NotFound):
                    await lonely.receive()
                # noagent, then the TCP connection ends without a closing handshake
                raw = await open_websocket(url, ice_target("r" * 32, caller=CALLER, target=NOBODY))
                assert frames.decode(await raw.receive()) == Frame("noagent")
                with pytest.raises(ConnectionClosed) as info:
                    await raw.receive()
                assert info.value.error_code == 0  # no close frame: EOF
                # the newest socket to register an AID takes it over
                newer = await open_websocket(url, "/signal")
                await newer.send(frames.encode(Frame("reg", a=CALLEE)))
                assert frames.decode(await newer.receive()) == Frame("ack")
                again = await call(url, CALLER, CALLEE)
                pushed = frames.decode(await newer.receive())
                assert pushed == Frame("incoming", r=room_id(CALLER, CALLEE), f=CALLER, g=CALLEE)
                assert service.core.stats.incoming == 1  # the older socket heard nothing
                await again.aclose()
                await newer.aclose()
                # bad /ice requests are HTTP 400
                for bad in ("/ice", "/ice?room=r&target=" + NOBODY):
                    with pytest.raises(HandshakeFailed, match="HTTP 400"):
                        await open_websocket(url, bad)
        finally:
            await anyio.to_thread.run_sync(peer.stop)
        tg.cancel_scope.cancel()


async def test_a2ald_uses_our_hub(tmp_path: Path) -> None:
    async with anyio.create_task_group() as tg:
        server = HubServer(SignalConfig())
        host, port = await tg.start(server.serve, "127.0.0.1", 0)
        url = f"ws://{host}:{port}"
        peer = HubPeer(tmp_path / "a2ald", signal_urls=[url], name="a2ald-client")
        try:
            await started(peer)
            node = peer.node_aid
            with anyio.fail_after(30):
                await until(lambda: server.core.registered(node))  # its reg, our ack
            with anyio.fail_after(30):
                room = await call(url, CALLER, node)
                first = await room.receive()  # a2ald took our incoming and joined the room
                assert first.t in ("cred", "punch-init", "cand")
                await room.aclose()
            assert server.core.stats.incoming_total == 1 and server.core.stats.sessions_total == 1
        finally:
            await anyio.to_thread.run_sync(peer.stop)
        tg.cancel_scope.cancel()
