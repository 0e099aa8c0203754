"""Datagram classification on the shared socket (a2al-wire §4.1)."""

from __future__ import annotations

import pytest

from a2al_mcp.transport.demux import STUN_MAGIC_COOKIE, Kind, classify, echo_reply
from tests.conftest import load_captures


def stun(first: int = 0x01, second: int = 0x01, length: int = 20) -> bytes:
    """A STUN-shaped header (type, length, magic cookie, transaction id), padded to length."""
    head = bytes([first, second, 0x00, 0x00]) + STUN_MAGIC_COOKIE + bytes(12)
    return (head + bytes(max(0, length - len(head))))[:length]


# ------------------------------------------------------------------------ empty / short


def test_empty_is_none() -> None:
    assert classify(b"") is None


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\x00", Kind.DHT),  # a lone 00: too short for an echo probe
        (b"\xec", Kind.QUIC),  # EC has bit 0x40 set
        (b"\x40", Kind.QUIC),  # smallest first byte with the fixed bit
        (b"\xa4", Kind.DHT),
        (b"\x3f", Kind.DHT),
    ],
)
def test_single_byte(data: bytes, kind: Kind) -> None:
    assert classify(data) is kind


# ------------------------------------------------------------------------ echo


@pytest.mark.parametrize("data", [b"\x00\xec", b"\x00\xec" + b"hello", b"\x00\xec" + bytes(1198)])
def test_echo_probe(data: bytes) -> None:
    assert classify(data) is Kind.ECHO


def test_echo_stats_reply_is_not_a_probe() -> None:
    # a2ald answers 00 ED + text; that is not a probe and must not be echoed back.
    assert classify(b"\x00\xed stats") is Kind.DHT


def test_echo_wins_over_stun_shape() -> None:
    data = b"\x00\xec\x00\x00" + STUN_MAGIC_COOKIE + bytes(12)
    assert classify(data) is Kind.ECHO


def test_echo_reply_is_verbatim() -> None:
    probe = b"\x00\xec" + bytes(range(200))
    assert echo_reply(probe) == probe
    assert type(echo_reply(memoryview(probe).tobytes())) is bytes


# ------------------------------------------------------------------------ STUN


@pytest.mark.parametrize(
    "data",
    [
        stun(0x01, 0x01),  # Binding success response
        stun(0x01, 0x11),  # Binding error response
        stun(0x00, 0x01),  # Binding request
        stun(0x01, 0x01, length=64),  # with attributes
        stun(0x3F, 0xFF),  # top two bits still clear
    ],
)
def test_stun(data: bytes) -> None:
    assert classify(data) is Kind.STUN


@pytest.mark.parametrize("first", [0x40, 0x80, 0xC0, 0xC1])
def test_stun_magic_with_top_bits_set_is_not_stun(first: int) -> None:
    data = stun(first, 0x01)
    assert classify(data) is not Kind.STUN
    assert classify(data) is (Kind.QUIC if first & 0x40 else Kind.DHT)


def test_stun_too_short() -> None:
    # 19 bytes: the header is incomplete, so not STUN (byte 0 = 01 has no fixed bit: DHT).
    assert classify(stun(length=19)) is Kind.DHT


def test_stun_wrong_cookie() -> None:
    data = bytearray(stun())
    data[7] ^= 0x01
    assert classify(bytes(data)) is Kind.DHT


# ------------------------------------------------------------------------ QUIC


@pytest.mark.parametrize(
    "first",
    [
        0xC0,  # long header, Initial
        0xC3,  # Initial with a 4-byte packet number
        0xD0,  # 0-RTT
        0xE0,  # Handshake
        0xF0,  # Retry
        0xFF,
        0x40,  # short header (1-RTT), key phase 0
        0x44,  # short header, key phase 1
        0x5F,
        0x7F,
    ],
)
def test_quic_first_bytes(first: int) -> None:
    assert classify(bytes([first]) + bytes(40)) is Kind.QUIC


def test_quic_long_header_with_version() -> None:
    initial = b"\xc3" + (1).to_bytes(4, "big") + b"\x08" + bytes(8) + b"\x08" + bytes(8)
    assert classify(initial + bytes(1200 - len(initial))) is Kind.QUIC


# ------------------------------------------------------------------------ DHT


@pytest.mark.parametrize(
    "first",
    [
        0xA4,  # the A2AL outer message: CBOR map of 4
        0xA0,
        0xBF,  # other CBOR maps
        0x80,
        0x9F,  # CBOR arrays
        0x01,  # no fixed bit, not STUN-shaped (too short)
        0x3F,
    ],
)
def test_dht_first_bytes(first: int) -> None:
    assert classify(bytes([first]) + bytes(10)) is Kind.DHT


def test_dht_map_with_stun_cookie_is_still_dht() -> None:
    # A4 has a top bit set, so even a cookie at bytes 4–7 cannot make it STUN.
    data = b"\xa4\x01\xa4\x01" + STUN_MAGIC_COOKIE + bytes(40)
    assert classify(data) is Kind.DHT


# ------------------------------------------------------------------------ real traffic


@pytest.mark.parametrize(
    ("kind", "expected"), [("dht", Kind.DHT), ("quic", Kind.QUIC)], ids=["dht", "quic"]
)
def test_captured_a2ald_datagrams(kind: str, expected: Kind) -> None:
    rows = load_captures(kind)
    assert rows
    for row in rows:
        assert classify(bytes.fromhex(row["hex"])) is expected, row["t"]
