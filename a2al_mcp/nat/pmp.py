"""PCP (RFC 6887) and NAT-PMP (RFC 6886) port mapping: the driver for gateways without UPnP.

Hand-written on purpose: PyPI has no maintained library for either. ``NAT-PMP`` (1.3.2, 2021)
and its fork ``py-natpmp`` (0.2.5, 2023) speak NAT-PMP only (no PCP), block the caller with
their own sockets and sleeps, and offer no async API; there is no PCP client package. The
protocol is two small fixed layouts, so the codec (:mod:`a2al_mcp.nat.pmp_codec`) is pure
functions tested against the RFCs' packet diagrams, and this module is the thin driver: one
connected UDP socket per exchange to the gateway's port 5351, retransmitting after 250 ms,
500 ms, … (RFC 6886 §3.1, RFC 6887 §8.1.1) for ``pmp_tries`` sends, the whole exchange bounded
by ``request_timeout_s``.

Which gateway: the configured ``nat.gateway``, else the default-route gateway
(:func:`~a2al_mcp.nat.portmap_gateway.default_gateway`); with neither, discovery fails without
sending anything. Which protocol: PCP first (an ANNOUNCE); a gateway that answers it with a
NAT-PMP "unsupported version" (RFC 6887 §9) or PCP ``UNSUPP_VERSION`` is then spoken to in
NAT-PMP. PCP picks the external port itself when the one suggested is taken, so there are no
conflicts to retry; mappings are renewed with the same nonce and deleted with lifetime 0.
Gateway epochs (a reboot loses every mapping) are not tracked: the next renewal maps again.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Final, Literal

import anyio
from anyio.abc import ConnectedUDPSocket, SocketAttribute

from .._random import Rng, SystemRng
from ..errors import DecodeError, NetworkError, RequestTimeout, Unreachable
from .pmp_codec import (
    NATPMP_VERSION,
    PCP_OP_ANNOUNCE,
    PCP_OP_MAP,
    PCP_VERSION,
    PMP_PORT,
    PROTO_UDP,
    decode_natpmp_address_response,
    decode_natpmp_map_response,
    decode_pcp_response,
    encode_natpmp_address_request,
    encode_natpmp_map_request,
    encode_pcp_announce_request,
    encode_pcp_map_request,
    natpmp_result_text,
    pcp_result_text,
    response_version,
)
from .portmap import PortMapConfig
from .portmap_client import Conflict, Granted
from .portmap_gateway import default_gateway

__all__ = ["PmpClient"]

_UNSUPPORTED_VERSION: Final = 1  # the same code in both protocols
_NONCE_LEN: Final = 12

Protocol = Literal["pcp", "nat-pmp"]


class PmpClient:
    """Port mapping by PCP, or NAT-PMP when the gateway speaks only that.

    ``gateway``: the gateway's address (None: the default route's). ``local_host``: the
    address to send from, which both protocols map to (None: the one the route to the gateway
    picks). ``prefer="nat-pmp"`` skips PCP. ``server_port`` is 5351 except in tests.
    ``find_gateway`` is the default-route lookup (blocking; run in a worker thread)."""

    def __init__(
        self,
        config: PortMapConfig,
        *,
        gateway: str | None = None,
        local_host: str | None = None,
        prefer: Protocol = "pcp",
        rng: Rng | None = None,
        server_port: int = PMP_PORT,
        find_gateway: Callable[[], str | None] = default_gateway,
    ) -> None:
        self._config = config
        self._configured = gateway or None
        self._local_host = local_host
        self._prefer: Protocol = prefer
        self._rng: Rng = rng if rng is not None else SystemRng()
        self._port = server_port
        self._find_gateway = find_gateway
        self._gateway: str | None = None
        self._spoken: Protocol = prefer
        self._nonces: dict[int, bytes] = {}  # internal port -> PCP mapping nonce
        self._mapped: dict[int, int] = {}  # external port -> internal port

    @property
    def protocol(self) -> str:
        return self._spoken

    # ----------------------------------------------------------------------- exchange

    def _socket(self, gateway: str) -> socket.socket:
        """A UDP socket connected to the gateway (by address: no name lookup, so also no
        AI_ADDRCONFIG surprise on a host with only loopback), from ``local_host`` if set."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if self._local_host:
                sock.bind((self._local_host, 0))
            sock.connect((gateway, self._port))
        except BaseException:
            sock.close()
            raise
        return sock

    async def _exchange(
        self,
        what: str,
        build: Callable[[str], bytes],
        accept: Callable[[bytes], bool],
    ) -> bytes:
        """Send ``build(our LAN address)`` to the gateway, resending with doubling timeouts,
        until a datagram ``accept`` takes arrives; return it."""
        gateway = self._gateway
        if gateway is None:
            raise NetworkError("PCP/NAT-PMP gateway not discovered", operation=what)
        try:
            with anyio.fail_after(self._config.request_timeout_s):
                async with await ConnectedUDPSocket.from_socket(self._socket(gateway)) as sock:
                    payload = build(str(sock.extra(SocketAttribute.local_address)[0]))
                    rto = self._config.pmp_initial_rto_s
                    for _ in range(self._config.pmp_tries):
                        await sock.send(payload)
                        with anyio.move_on_after(rto):
                            while True:
                                data = await sock.receive()
                                if accept(data):
                                    return data
                        rto *= 2
        except TimeoutError:
            pass
        except OSError as exc:  # ICMP port unreachable, no route, ...
            raise Unreachable(
                f"{what} to {gateway}:{self._port} failed: {exc}", operation=what
            ) from exc
        raise RequestTimeout(f"{what}: no answer from {gateway}:{self._port}", operation=what)

    # ----------------------------------------------------------------------- discovery

    async def discover(self) -> str:
        gateway = self._configured
        if gateway is None:
            gateway = await anyio.to_thread.run_sync(self._find_gateway)
        if gateway is None:
            raise Unreachable("no IPv4 default gateway", operation="pcp/nat-pmp discovery")
        self._gateway = gateway
        if self._prefer == "pcp" and await self._speaks_pcp():
            self._spoken = "pcp"
        else:
            await self._natpmp_address()
            self._spoken = "nat-pmp"
        return gateway

    async def _speaks_pcp(self) -> bool:
        """PCP ANNOUNCE: True if the gateway answers in PCP, False if it says it speaks only
        NAT-PMP (or PCP ``UNSUPP_VERSION``)."""
        data = await self._exchange(
            "pcp announce",
            encode_pcp_announce_request,
            lambda d: response_version(d) in (NATPMP_VERSION, PCP_VERSION) and len(d) >= 4,
        )
        if response_version(data) == NATPMP_VERSION:
            return False
        try:
            answer = decode_pcp_response(data)
        except DecodeError as exc:
            raise NetworkError(f"bad PCP answer: {exc}", operation="pcp announce") from exc
        return not (answer.opcode == PCP_OP_ANNOUNCE and answer.result == _UNSUPPORTED_VERSION)

    async def _natpmp_address(self) -> str:
        def accept(d: bytes) -> bool:
            return len(d) >= 4 and d[0] == NATPMP_VERSION and d[1] == 0x80

        data = await self._exchange(
            "nat-pmp external address", lambda _ip: encode_natpmp_address_request(), accept
        )
        try:
            answer = decode_natpmp_address_response(data)
        except DecodeError as exc:
            raise NetworkError(f"bad NAT-PMP answer: {exc}", operation="nat-pmp") from exc
        if answer.result != 0 or answer.external_ip in ("", "0.0.0.0"):
            raise NetworkError(
                f"NAT-PMP external address: {natpmp_result_text(answer.result)}",
                operation="nat-pmp external address",
            )
        return answer.external_ip

    # ------------------------------------------------------------------------ mapping

    async def add(self, external_port: int, internal_port: int, lease_s: int) -> Granted | Conflict:
        if self._spoken == "pcp":
            granted = await self._pcp_map(internal_port, external_port, lease_s)
        else:
            granted = await self._natpmp_map(internal_port, external_port, lease_s)
        self._mapped[granted.external_port] = internal_port
        return granted

    async def delete(self, external_port: int) -> None:
        internal_port = self._mapped.pop(external_port, None)
        if internal_port is None:
            return
        if self._spoken == "pcp":
            await self._pcp_map(internal_port, external_port, 0)
            self._nonces.pop(internal_port, None)
        else:
            await self._natpmp_map(internal_port, 0, 0)

    async def _pcp_map(self, internal_port: int, external_port: int, lease_s: int) -> Granted:
        nonce = self._nonces.get(internal_port)
        if nonce is None:
            nonce = self._nonces[internal_port] = self._rng.bytes(_NONCE_LEN)

        def build(client_ip: str) -> bytes:
            return encode_pcp_map_request(
                nonce=nonce,
                client_ip=client_ip,
                internal_port=internal_port,
                external_port=external_port,
                lifetime_s=lease_s,
            )

        def accept(d: bytes) -> bool:
            try:
                r = decode_pcp_response(d)
            except DecodeError:
                return False
            return r.opcode == PCP_OP_MAP and (
                r.map is None or (r.map.nonce == nonce and r.map.internal_port == internal_port)
            )

        what = "pcp map" if lease_s else "pcp delete"
        answer = decode_pcp_response(await self._exchange(what, build, accept))
        if answer.result != 0 or answer.map is None or answer.map.protocol != PROTO_UDP:
            raise NetworkError(f"{what}: {pcp_result_text(answer.result)}", operation=what)
        return Granted(answer.map.external_port, float(answer.lifetime_s), answer.map.external_ip)

    async def _natpmp_map(self, internal_port: int, external_port: int, lease_s: int) -> Granted:
        external_ip = await self._natpmp_address() if lease_s else ""

        def accept(d: bytes) -> bool:
            if len(d) < 4 or d[0] != NATPMP_VERSION or d[1] != 0x81:
                return False
            try:
                r = decode_natpmp_map_response(d)
            except DecodeError:
                return False
            return r.result != 0 or r.internal_port == internal_port

        request = encode_natpmp_map_request(internal_port, external_port, lease_s)
        what = "nat-pmp map" if lease_s else "nat-pmp delete"
        answer = decode_natpmp_map_response(await self._exchange(what, lambda _ip: request, accept))
        if answer.result != 0:
            raise NetworkError(f"{what}: {natpmp_result_text(answer.result)}", operation=what)
        return Granted(answer.external_port, float(answer.lifetime_s), external_ip)
