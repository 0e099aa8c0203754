"""NAT-PMP (RFC 6886) and PCP (RFC 6887) messages as pure functions (core: no I/O).

Only what a client mapping one UDP port needs: NAT-PMP's external-address and UDP-mapping
requests and their responses, PCP's ANNOUNCE and MAP (IPv4 through the IPv4-mapped IPv6 form
the RFC prescribes), and PCP's way of saying "I speak only NAT-PMP" (a version-0 response with
result 1, RFC 6887 §9). Decoders take the bytes a gateway sent and raise
:class:`~a2al_mcp.errors.DecodeError` on anything malformed; result codes other than success
are returned, not raised, so the driver decides what they mean.

Layouts (network byte order)::

    NAT-PMP request, external address (2 B):    version=0 | opcode=0
    NAT-PMP response, external address (12 B):  0 | 128 | result u16 | epoch u32 | ipv4
    NAT-PMP request, map UDP (12 B):            0 | 1 | reserved u16 | internal u16 |
                                                suggested external u16 | lifetime u32
    NAT-PMP response, map UDP (16 B):           0 | 129 | result u16 | epoch u32 |
                                                internal u16 | external u16 | lifetime u32
    PCP header, request (24 B):                 version=2 | R=0,opcode | reserved u16 |
                                                lifetime u32 | client ip (16 B)
    PCP header, response (24 B):                2 | R=1,opcode | reserved u8 | result u8 |
                                                lifetime u32 | epoch u32 | reserved (12 B)
    PCP MAP body (36 B):                        nonce (12 B) | protocol u8 | reserved (3 B) |
                                                internal u16 | external u16 | external ip (16 B)
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from typing import Final

from ..errors import DecodeError

__all__ = [
    "NATPMP_VERSION",
    "PCP_OP_ANNOUNCE",
    "PCP_OP_MAP",
    "PCP_VERSION",
    "PMP_PORT",
    "PROTO_UDP",
    "NatPmpAddressResponse",
    "NatPmpMapResponse",
    "PcpMapResponse",
    "PcpResponse",
    "decode_natpmp_address_response",
    "decode_natpmp_map_response",
    "decode_pcp_response",
    "encode_natpmp_address_request",
    "encode_natpmp_map_request",
    "encode_pcp_announce_request",
    "encode_pcp_map_request",
    "natpmp_result_text",
    "pcp_result_text",
    "response_version",
]

PMP_PORT: Final = 5351
"""The gateway's NAT-PMP and PCP server port (both RFCs)."""
NATPMP_VERSION: Final = 0
PCP_VERSION: Final = 2
PROTO_UDP: Final = 17
PCP_OP_ANNOUNCE: Final = 0
PCP_OP_MAP: Final = 1
_NATPMP_OP_ADDRESS: Final = 0
_NATPMP_OP_MAP_UDP: Final = 1
_RESPONSE_BIT: Final = 0x80
_NONCE_LEN: Final = 12
_PCP_HEADER: Final = struct.Struct("!BBHI16s")  # request
_PCP_RESPONSE_HEADER: Final = struct.Struct("!BBBBII12s")
_PCP_MAP: Final = struct.Struct("!12sB3sHH16s")
_NATPMP_MAP_REQUEST: Final = struct.Struct("!BBHHHI")
_NATPMP_MAP_RESPONSE: Final = struct.Struct("!BBHIHHI")
_NATPMP_ADDRESS_RESPONSE: Final = struct.Struct("!BBHI4s")
_PCP_MAX: Final = 1100  # RFC 6887 §7: messages are at most 1100 octets

_NATPMP_RESULTS: Final = {
    0: "success",
    1: "unsupported version",
    2: "not authorized/refused",
    3: "network failure",
    4: "out of resources",
    5: "unsupported opcode",
}
_PCP_RESULTS: Final = {
    0: "SUCCESS",
    1: "UNSUPP_VERSION",
    2: "NOT_AUTHORIZED",
    3: "MALFORMED_REQUEST",
    4: "UNSUPP_OPCODE",
    5: "UNSUPP_OPTION",
    6: "MALFORMED_OPTION",
    7: "NETWORK_FAILURE",
    8: "NO_RESOURCES",
    9: "UNSUPP_PROTOCOL",
    10: "USER_EX_QUOTA",
    11: "CANNOT_PROVIDE_EXTERNAL",
    12: "ADDRESS_MISMATCH",
    13: "EXCESSIVE_REMOTE_PEERS",
}


def natpmp_result_text(code: int) -> str:
    return f"NAT-PMP result {code} ({_NATPMP_RESULTS.get(code, 'unknown')})"


def pcp_result_text(code: int) -> str:
    return f"PCP result {code} ({_PCP_RESULTS.get(code, 'unknown')})"


def _v4(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 address") from None


def _mapped(address: str) -> bytes:
    """IPv4 as the 16-byte IPv4-mapped IPv6 form (RFC 6887 §5); IPv6 as is."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv4Address):
        return b"\x00" * 10 + b"\xff\xff" + ip.packed
    return ip.packed


def _unmapped(raw: bytes) -> str:
    ip = ipaddress.IPv6Address(raw)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)


def _port(value: int, what: str) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} {value} is not 0-65535")


def _lifetime(value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"lifetime {value} does not fit 32 bits")


# ---------------------------------------------------------------------------------- NAT-PMP


def encode_natpmp_address_request() -> bytes:
    """RFC 6886 §3.2: ask for the gateway's external IPv4 address."""
    return bytes((NATPMP_VERSION, _NATPMP_OP_ADDRESS))


def encode_natpmp_map_request(internal_port: int, external_port: int, lifetime_s: int) -> bytes:
    """RFC 6886 §3.3: map UDP ``internal_port``, suggesting ``external_port``. Lifetime 0
    deletes (§3.4; the suggested external port must then be 0)."""
    _port(internal_port, "internal port")
    _port(external_port, "external port")
    _lifetime(lifetime_s)
    return _NATPMP_MAP_REQUEST.pack(
        NATPMP_VERSION, _NATPMP_OP_MAP_UDP, 0, internal_port, external_port, lifetime_s
    )


@dataclasses.dataclass(frozen=True, slots=True)
class NatPmpAddressResponse:
    result: int
    epoch: int
    external_ip: str


@dataclasses.dataclass(frozen=True, slots=True)
class NatPmpMapResponse:
    result: int
    epoch: int
    internal_port: int
    external_port: int
    lifetime_s: int


def response_version(data: bytes) -> int | None:
    """The version octet of a gateway's answer (0: NAT-PMP, 2: PCP), None if empty."""
    return data[0] if data else None


def _natpmp_head(data: bytes, opcode: int, size: int) -> None:
    if len(data) < 4:
        raise DecodeError(f"NAT-PMP response of {len(data)} bytes")
    if data[0] != NATPMP_VERSION or data[1] != _RESPONSE_BIT | opcode:
        raise DecodeError(f"not a NAT-PMP response to opcode {opcode}: {data[:2].hex()}")
    result = int.from_bytes(data[2:4], "big")
    if result == 0 and len(data) < size:
        raise DecodeError(f"NAT-PMP response of {len(data)} bytes, expected {size}")


def decode_natpmp_address_response(data: bytes) -> NatPmpAddressResponse:
    """Decode an answer to :func:`encode_natpmp_address_request` (an error answer may be
    short: only its result code is then meaningful)."""
    _natpmp_head(data, _NATPMP_OP_ADDRESS, _NATPMP_ADDRESS_RESPONSE.size)
    if len(data) < _NATPMP_ADDRESS_RESPONSE.size:
        return NatPmpAddressResponse(int.from_bytes(data[2:4], "big"), 0, "")
    _v, _op, result, epoch, ip = _NATPMP_ADDRESS_RESPONSE.unpack_from(data)
    return NatPmpAddressResponse(result, epoch, str(ipaddress.IPv4Address(ip)))


def decode_natpmp_map_response(data: bytes) -> NatPmpMapResponse:
    """Decode an answer to :func:`encode_natpmp_map_request`."""
    _natpmp_head(data, _NATPMP_OP_MAP_UDP, _NATPMP_MAP_RESPONSE.size)
    if len(data) < _NATPMP_MAP_RESPONSE.size:
        return NatPmpMapResponse(int.from_bytes(data[2:4], "big"), 0, 0, 0, 0)
    _v, _op, result, epoch, internal, external, lifetime = _NATPMP_MAP_RESPONSE.unpack_from(data)
    return NatPmpMapResponse(result, epoch, internal, external, lifetime)


# -------------------------------------------------------------------------------------- PCP


def _pcp_header(opcode: int, lifetime_s: int, client_ip: str) -> bytes:
    _lifetime(lifetime_s)
    return _PCP_HEADER.pack(PCP_VERSION, opcode, 0, lifetime_s, _mapped(client_ip))


def encode_pcp_announce_request(client_ip: str) -> bytes:
    """RFC 6887 §14.1: ANNOUNCE, which a PCP server answers (used to learn whether the
    gateway speaks PCP at all)."""
    return _pcp_header(PCP_OP_ANNOUNCE, 0, client_ip)


def encode_pcp_map_request(
    *,
    nonce: bytes,
    client_ip: str,
    internal_port: int,
    external_port: int,
    lifetime_s: int,
    external_ip: str = "0.0.0.0",
) -> bytes:
    """RFC 6887 §11.1: MAP UDP ``internal_port`` on ``client_ip`` (the address the request
    is sent from), suggesting ``external_ip:external_port`` (all zeros: no preference).
    Lifetime 0 deletes the mapping that has this ``nonce`` (§15)."""
    if len(nonce) != _NONCE_LEN:
        raise ValueError(f"PCP nonce must be {_NONCE_LEN} bytes")
    _port(internal_port, "internal port")
    _port(external_port, "external port")
    _v4(client_ip)
    body = _PCP_MAP.pack(
        nonce, PROTO_UDP, b"\x00" * 3, internal_port, external_port, _mapped(external_ip)
    )
    return _pcp_header(PCP_OP_MAP, lifetime_s, client_ip) + body


@dataclasses.dataclass(frozen=True, slots=True)
class PcpMapResponse:
    nonce: bytes
    protocol: int
    internal_port: int
    external_port: int
    external_ip: str


@dataclasses.dataclass(frozen=True, slots=True)
class PcpResponse:
    opcode: int
    result: int
    lifetime_s: int
    epoch: int
    map: PcpMapResponse | None
    """The MAP body (MAP responses that carry one; error answers may be header-only)."""


def decode_pcp_response(data: bytes) -> PcpResponse:
    """Decode a PCP response (header and, for MAP, its body; options are ignored)."""
    if len(data) < _PCP_RESPONSE_HEADER.size or len(data) > _PCP_MAX or len(data) % 4:
        raise DecodeError(f"PCP response of {len(data)} bytes")
    version, r_op, _res, result, lifetime, epoch, _rest = _PCP_RESPONSE_HEADER.unpack_from(data)
    if version != PCP_VERSION or not r_op & _RESPONSE_BIT:
        raise DecodeError(f"not a PCP response: {data[:2].hex()}")
    opcode = r_op & ~_RESPONSE_BIT
    body: PcpMapResponse | None = None
    if opcode == PCP_OP_MAP and len(data) >= _PCP_RESPONSE_HEADER.size + _PCP_MAP.size:
        nonce, proto, _r, internal, external, ext_ip = _PCP_MAP.unpack_from(
            data, _PCP_RESPONSE_HEADER.size
        )
        body = PcpMapResponse(nonce, proto, internal, external, _unmapped(ext_ip))
    elif opcode == PCP_OP_MAP and result == 0:
        raise DecodeError("PCP MAP success without its body")
    return PcpResponse(opcode, result, lifetime, epoch, body)
