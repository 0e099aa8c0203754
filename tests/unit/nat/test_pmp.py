"""PmpClient (PCP, falling back to NAT-PMP) against a scripted gateway on 127.0.0.1.

The fake gateway builds its answers by hand from the RFC layouts (not with the codec under
test) and records every request it got."""

from __future__ import annotations

import dataclasses
import socket
import struct
from collections.abc import AsyncIterator

import anyio
import pytest
from anyio.abc import UDPSocket

from a2al_mcp._random import SeededRng
from a2al_mcp.errors import NetworkError, RequestTimeout, Unreachable
from a2al_mcp.nat.pmp import PmpClient
from a2al_mcp.nat.portmap import PortMapConfig
from a2al_mcp.nat.portmap_client import Granted

pytestmark = pytest.mark.anyio

EXT = bytes([198, 51, 99, 41])
CONFIG = PortMapConfig(pmp_initial_rto_s=0.05, pmp_tries=3, request_timeout_s=5.0)


@dataclasses.dataclass
class FakeGateway:
    mode: str  # "pcp", "natpmp" or "silent"
    drop_first: int = 0
    pcp_result: int = 0
    requests: list[bytes] = dataclasses.field(default_factory=list)
    port: int = 0

    def answer(self, req: bytes) -> bytes | None:
        if self.mode == "silent":
            return None
        epoch = struct.pack("!I", 42)
        if req[0] == 2 and self.mode == "natpmp":
            return bytes([0, 0x80 | req[1]]) + b"\x00\x01" + epoch  # unsupported version
        if req[0] == 2:  # PCP
            op = req[1]
            head = bytes([2, 0x80 | op, 0, self.pcp_result]) + req[4:8] + epoch + bytes(12)
            if op == 0 or self.pcp_result:
                return head
            nonce, _proto, internal, suggested = req[24:36], req[36], req[40:42], req[42:44]
            return (
                head
                + nonce
                + b"\x11"
                + bytes(3)
                + internal
                + suggested
                + bytes(10)
                + (b"\xff\xff" + EXT)
            )
        if req[1] == 0:  # NAT-PMP external address
            return b"\x00\x80\x00\x00" + epoch + EXT
        internal, suggested, lifetime = req[4:6], req[6:8], req[8:12]
        return b"\x00\x81\x00\x00" + epoch + internal + suggested + lifetime

    async def serve(self, sock: UDPSocket) -> None:
        async for data, addr in sock:
            self.requests.append(data)
            if len(self.requests) <= self.drop_first:
                continue
            reply = self.answer(data)
            if reply is not None:
                await sock.sendto(reply, addr[0], addr[1])


@pytest.fixture
async def gateway(request: pytest.FixtureRequest) -> AsyncIterator[FakeGateway]:
    fake = FakeGateway(**request.param)
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.1", 0))  # no anyio host lookup: it fails where only lo exists
    async with (
        await UDPSocket.from_socket(raw) as sock,
        anyio.create_task_group() as tg,
    ):
        fake.port = sock.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(fake.serve, sock)
        yield fake
        tg.cancel_scope.cancel()


def client(fake: FakeGateway, **kw: object) -> PmpClient:
    return PmpClient(
        CONFIG,
        gateway="127.0.0.1",
        server_port=fake.port,
        rng=SeededRng(1),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("gateway", [{"mode": "pcp"}], indirect=True)
async def test_pcp_map_renew_and_delete_with_one_nonce(gateway: FakeGateway) -> None:
    c = client(gateway)
    assert await c.discover() == "127.0.0.1"
    assert c.protocol == "pcp"
    assert gateway.requests[0][:2] == b"\x02\x00"  # ANNOUNCE
    granted = await c.add(4121, 4121, 3600)
    assert granted == Granted(4121, 3600.0, "198.51.99.41")
    await c.add(4121, 4121, 3600)  # renewal
    await c.delete(4121)
    maps = gateway.requests[1:]
    assert [m[1] for m in maps] == [1, 1, 1]
    # The client's address in the header is the one the request came from (RFC 6887 §8.1).
    assert maps[0][8:24] == bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])
    assert maps[0][24:36] == maps[1][24:36] == maps[2][24:36]  # same nonce throughout
    assert [int.from_bytes(m[4:8], "big") for m in maps] == [3600, 3600, 0]


@pytest.mark.parametrize("gateway", [{"mode": "pcp"}], indirect=True)
async def test_requests_go_from_the_configured_local_address(gateway: FakeGateway) -> None:
    c = client(gateway, local_host="127.0.0.2")  # loopback too, but not the default source
    await c.discover()
    await c.add(4121, 4121, 3600)
    assert gateway.requests[-1][8:24] == bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 2])


@pytest.mark.parametrize("gateway", [{"mode": "natpmp"}], indirect=True)
async def test_a_natpmp_only_gateway_is_spoken_to_in_natpmp(gateway: FakeGateway) -> None:
    c = client(gateway)
    await c.discover()
    assert c.protocol == "nat-pmp"
    granted = await c.add(4121, 4121, 3600)
    assert granted == Granted(4121, 3600.0, "198.51.99.41")
    await c.delete(4121)
    assert gateway.requests[-1] == b"\x00\x01\x00\x00\x10\x19" + bytes(6)  # RFC 6886 §3.4


@pytest.mark.parametrize("gateway", [{"mode": "pcp"}], indirect=True)
async def test_prefer_natpmp_skips_pcp(gateway: FakeGateway) -> None:
    c = client(gateway, prefer="nat-pmp")
    await c.discover()
    assert c.protocol == "nat-pmp"
    assert gateway.requests == [b"\x00\x00"]


@pytest.mark.parametrize("gateway", [{"mode": "pcp", "drop_first": 2}], indirect=True)
async def test_lost_requests_are_resent(gateway: FakeGateway) -> None:
    c = client(gateway)
    await c.discover()
    assert len(gateway.requests) == 3


@pytest.mark.parametrize("gateway", [{"mode": "silent"}], indirect=True)
async def test_a_silent_gateway_times_out_after_pmp_tries_sends(gateway: FakeGateway) -> None:
    c = client(gateway)
    with pytest.raises(RequestTimeout):
        await c.discover()
    assert len(gateway.requests) == CONFIG.pmp_tries


@pytest.mark.parametrize("gateway", [{"mode": "pcp", "pcp_result": 8}], indirect=True)
async def test_a_pcp_refusal_is_a_network_error(gateway: FakeGateway) -> None:
    c = client(gateway)
    await c.discover()
    with pytest.raises(NetworkError, match="NO_RESOURCES"):
        await c.add(4121, 4121, 3600)


async def test_no_default_gateway_sends_nothing() -> None:
    asked = []

    def no_route() -> str | None:
        asked.append(True)
        return None

    c = PmpClient(CONFIG, find_gateway=no_route)
    with pytest.raises(Unreachable, match="no IPv4 default gateway"):
        await c.discover()
    assert asked == [True]
