"""A minimal STUN Binding client (RFC 5389/8489 + RFC 5780 CHANGE-REQUEST) for testbed checks.

Only what the testbed needs to prove coturn and the NATs behave: build a Binding request,
parse the addresses of a Binding success response, and one blocking query on a given socket.
"""

from __future__ import annotations

import secrets
import socket
import struct
from dataclasses import dataclass
from typing import Final

__all__ = ["StunResponse", "binding_request", "parse_binding_response", "stun_query"]

MAGIC_COOKIE: Final = 0x2112A442
_BINDING_REQUEST: Final = 0x0001
_BINDING_SUCCESS: Final = 0x0101
_HEADER: Final = struct.Struct("!HHI12s")
_ATTR: Final = struct.Struct("!HH")
_MAPPED_ADDRESS: Final = 0x0001
_CHANGE_REQUEST: Final = 0x0003
_XOR_MAPPED_ADDRESS: Final = 0x0020
_RESPONSE_ORIGIN: Final = 0x802B
_OTHER_ADDRESS: Final = 0x802C
_CHANGE_IP: Final = 0x04
_CHANGE_PORT: Final = 0x02
_FAMILY_V4: Final = 0x01
_V4_VALUE_LEN: Final = 8

Address = tuple[str, int]


@dataclass(frozen=True)
class StunResponse:
    """The addresses of a Binding success response (None when an attribute is absent)."""

    transaction_id: bytes
    xor_mapped: Address | None
    mapped: Address | None
    other: Address | None
    response_origin: Address | None


def binding_request(
    transaction_id: bytes, *, change_ip: bool = False, change_port: bool = False
) -> bytes:
    """A Binding request; with either flag it carries an RFC 5780 CHANGE-REQUEST."""
    body = b""
    if change_ip or change_port:
        flags = (_CHANGE_IP if change_ip else 0) | (_CHANGE_PORT if change_port else 0)
        body = _ATTR.pack(_CHANGE_REQUEST, 4) + struct.pack("!I", flags)
    return _HEADER.pack(_BINDING_REQUEST, len(body), MAGIC_COOKIE, transaction_id) + body


def _address(value: bytes, *, xor: bool) -> Address | None:
    if len(value) < _V4_VALUE_LEN or value[1] != _FAMILY_V4:
        return None  # IPv6 is not used in the testbed
    port = int.from_bytes(value[2:4], "big")
    raw = int.from_bytes(value[4:8], "big")
    if xor:
        port ^= MAGIC_COOKIE >> 16
        raw ^= MAGIC_COOKIE
    return socket.inet_ntoa(raw.to_bytes(4, "big")), port


def parse_binding_response(data: bytes) -> StunResponse | None:
    """Parse a Binding success response; None for anything else."""
    if len(data) < _HEADER.size:
        return None
    msg_type, length, cookie, txid = _HEADER.unpack_from(data)
    if msg_type != _BINDING_SUCCESS or cookie != MAGIC_COOKIE:
        return None
    attrs: dict[int, Address | None] = {}
    pos, end = _HEADER.size, min(len(data), _HEADER.size + length)
    while pos + _ATTR.size <= end:
        kind, size = _ATTR.unpack_from(data, pos)
        value = data[pos + _ATTR.size : pos + _ATTR.size + size]
        pos += _ATTR.size + (size + 3) // 4 * 4
        if kind in (_MAPPED_ADDRESS, _RESPONSE_ORIGIN, _OTHER_ADDRESS):
            attrs.setdefault(kind, _address(value, xor=False))
        elif kind == _XOR_MAPPED_ADDRESS:
            attrs.setdefault(kind, _address(value, xor=True))
    return StunResponse(
        txid,
        xor_mapped=attrs.get(_XOR_MAPPED_ADDRESS),
        mapped=attrs.get(_MAPPED_ADDRESS),
        other=attrs.get(_OTHER_ADDRESS),
        response_origin=attrs.get(_RESPONSE_ORIGIN),
    )


def stun_query(
    sock: socket.socket,
    server: Address,
    *,
    change_ip: bool = False,
    change_port: bool = False,
    timeout: float = 1.0,
    attempts: int = 2,
) -> tuple[StunResponse, Address] | None:
    """Send a Binding request from ``sock`` (a UDP socket); return (response, its source).

    Returns None when no matching response arrives (``attempts`` sends, ``timeout`` each).
    Datagrams that are not the matching response are ignored.
    """
    txid = secrets.token_bytes(12)
    request = binding_request(txid, change_ip=change_ip, change_port=change_port)
    sock.settimeout(timeout)
    for _ in range(attempts):
        sock.sendto(request, server)
        try:
            while True:
                data, source = sock.recvfrom(2048)
                response = parse_binding_response(data)
                if response is not None and response.transaction_id == txid:
                    return response, (source[0], source[1])
        except TimeoutError:
            continue
    return None
