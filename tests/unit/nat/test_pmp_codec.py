"""NAT-PMP (RFC 6886) and PCP (RFC 6887) codec against the RFCs' packet layouts, byte for
byte: the expected bytes are written out field by field from the RFC diagrams, not produced
by the code under test."""

from __future__ import annotations

import pytest

from a2al_mcp.errors import DecodeError
from a2al_mcp.nat.pmp_codec import (
    PCP_OP_ANNOUNCE,
    PCP_OP_MAP,
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

NONCE = bytes(range(1, 13))
MAPPED_10_7_0_2 = bytes(10) + b"\xff\xff" + bytes([10, 7, 0, 2])
MAPPED_ANY = bytes(10) + b"\xff\xff" + bytes(4)
MAPPED_EXT = bytes(10) + b"\xff\xff" + bytes([198, 51, 99, 41])


def test_natpmp_external_address_request_is_two_bytes() -> None:
    # RFC 6886 §3.2: Vers = 0, OP = 0
    assert encode_natpmp_address_request() == b"\x00\x00"


def test_natpmp_external_address_response() -> None:
    # §3.2: Vers 0 | OP 128 | Result 0 | Seconds Since Start of Epoch | External IPv4
    data = b"\x00\x80" + b"\x00\x00" + (1234).to_bytes(4, "big") + bytes([198, 51, 99, 41])
    r = decode_natpmp_address_response(data)
    assert (r.result, r.epoch, r.external_ip) == (0, 1234, "198.51.99.41")


def test_natpmp_map_udp_request() -> None:
    # §3.3: Vers 0 | OP 1 (UDP) | Reserved 0 | Internal Port | Suggested External Port |
    # Requested Port Mapping Lifetime in Seconds
    expected = b"\x00\x01\x00\x00" + b"\x10\x19" + b"\x10\x1a" + b"\x00\x00\x0e\x10"
    assert encode_natpmp_map_request(4121, 4122, 3600) == expected
    # §3.4: deletion is lifetime 0 with suggested external port 0
    assert encode_natpmp_map_request(4121, 0, 0) == b"\x00\x01\x00\x00\x10\x19" + bytes(6)


def test_natpmp_map_udp_response() -> None:
    # §3.3: Vers 0 | OP 129 | Result | Epoch | Internal Port | Mapped External Port | Lifetime
    data = (
        b"\x00\x81\x00\x00"
        + (77).to_bytes(4, "big")
        + b"\x10\x19"
        + b"\x10\x1b"
        + (7200).to_bytes(4, "big")
    )
    r = decode_natpmp_map_response(data)
    assert (r.result, r.epoch, r.internal_port, r.external_port, r.lifetime_s) == (
        0,
        77,
        4121,
        4123,
        7200,
    )


def test_natpmp_error_answers_may_be_short() -> None:
    # §3.5: an "Unsupported Version" answer carries the result and the epoch only.
    r = decode_natpmp_map_response(b"\x00\x81\x00\x01" + (5).to_bytes(4, "big"))
    assert r.result == 1
    assert "unsupported version" in natpmp_result_text(r.result)
    with pytest.raises(DecodeError):
        decode_natpmp_map_response(b"\x00\x81\x00\x00\x00")  # success, truncated
    with pytest.raises(DecodeError):
        decode_natpmp_map_response(b"\x00\x82\x00\x00" + bytes(12))  # TCP, not asked
    with pytest.raises(DecodeError):
        decode_natpmp_address_response(b"\x00")


def test_pcp_map_request() -> None:
    # RFC 6887 §7.1 common request header: Version 2 | R=0, Opcode 1 | Reserved (16) |
    # Requested Lifetime (32) | PCP Client's IP Address (128, IPv4-mapped)
    header = b"\x02\x01\x00\x00" + (3600).to_bytes(4, "big") + MAPPED_10_7_0_2
    # §11.1 MAP opcode: Mapping Nonce (96) | Protocol 17 | Reserved (24) | Internal Port |
    # Suggested External Port | Suggested External IP Address (128; all zeros: no preference)
    body = NONCE + b"\x11" + bytes(3) + b"\x10\x19" + b"\x10\x19" + MAPPED_ANY
    data = encode_pcp_map_request(
        nonce=NONCE, client_ip="10.7.0.2", internal_port=4121, external_port=4121, lifetime_s=3600
    )
    assert data == header + body
    assert len(data) == 60


def test_pcp_announce_request() -> None:
    # §14.1: ANNOUNCE is opcode 0 with lifetime 0 and no opcode data.
    assert encode_pcp_announce_request("10.7.0.2") == b"\x02\x00\x00\x00" + bytes(4) + (
        MAPPED_10_7_0_2
    )


def test_pcp_map_response() -> None:
    # §7.2 response header: Version 2 | R=1, Opcode 1 | Reserved (8) | Result Code (8) |
    # Lifetime (32) | Epoch Time (32) | Reserved (96); then the MAP body with the assigned
    # external port and address.
    header = b"\x02\x81\x00\x00" + (1800).to_bytes(4, "big") + (99).to_bytes(4, "big") + bytes(12)
    body = NONCE + b"\x11" + bytes(3) + b"\x10\x19" + b"\x10\x20" + MAPPED_EXT
    r = decode_pcp_response(header + body)
    assert (r.opcode, r.result, r.lifetime_s, r.epoch) == (PCP_OP_MAP, 0, 1800, 99)
    assert r.map is not None
    assert (r.map.nonce, r.map.protocol, r.map.internal_port, r.map.external_port) == (
        NONCE,
        17,
        4121,
        4128,
    )
    assert r.map.external_ip == "198.51.99.41"


def test_pcp_error_and_announce_responses() -> None:
    header = b"\x02\x80\x00\x00" + bytes(4) + (3).to_bytes(4, "big") + bytes(12)
    r = decode_pcp_response(header)
    assert (r.opcode, r.result, r.map) == (PCP_OP_ANNOUNCE, 0, None)
    refused = b"\x02\x81\x00\x08" + bytes(20)  # MAP, NO_RESOURCES, header only
    r = decode_pcp_response(refused)
    assert r.result == 8 and r.map is None
    assert "NO_RESOURCES" in pcp_result_text(8)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x02\x81\x00\x00" + bytes(19),  # short
        b"\x02\x81\x00\x00" + bytes(21),  # not a multiple of 4
        b"\x01\x81\x00\x00" + bytes(20),  # version 1
        b"\x02\x01\x00\x00" + bytes(20),  # a request, not a response
        b"\x02\x81\x00\x00" + bytes(20),  # MAP success without its body
        b"\x02\x81\x00\x00" + bytes(1100),  # over the 1100-octet limit
    ],
)
def test_pcp_malformed_responses_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_pcp_response(data)


def test_a_natpmp_only_gateway_answering_pcp_is_recognised_by_its_version() -> None:
    # RFC 6887 §9 / RFC 6886 §3.5: version 0, opcode 128 + request opcode, result 1.
    answer = b"\x00\x81\x00\x01" + (12).to_bytes(4, "big")
    assert response_version(answer) == 0
    assert decode_natpmp_map_response(answer).result == 1
    assert response_version(b"") is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"nonce": b"short"},
        {"internal_port": 70000},
        {"lifetime_s": -1},
        {"client_ip": "fe80::1"},
    ],
)
def test_pcp_encoder_refuses_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "nonce": NONCE,
        "client_ip": "10.7.0.2",
        "internal_port": 4121,
        "external_port": 4121,
        "lifetime_s": 3600,
    }
    args.update(kwargs)
    with pytest.raises(ValueError):
        encode_pcp_map_request(**args)  # type: ignore[arg-type]
