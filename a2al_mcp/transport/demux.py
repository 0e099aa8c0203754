"""Classify datagrams arriving on the shared DHT/QUIC socket (a2al-wire §4.1). Core: pure.

a2ald runs the DHT, QUIC and STUN over one UDP socket and tells them apart by their first
bytes, in this order:

1. ``len ≥ 2`` and ``00 EC`` → a UDP echo probe, answered verbatim (diagnostic only);
2. ``len ≥ 20``, the top two bits of byte 0 clear and bytes 4–7 equal to the STUN magic
   cookie ``21 12 A4 42`` → a STUN message (RFC 5389);
3. ``byte0 & 0x40`` (the QUIC fixed bit, RFC 9000 §17) → QUIC, long or short header;
4. anything else → the DHT decoder (an A2AL DHT message starts with ``A4``, a CBOR map of 4).
"""

from __future__ import annotations

from enum import Enum
from typing import Final

__all__ = ["ECHO_PREFIX", "STUN_MAGIC_COOKIE", "Kind", "classify", "echo_reply"]

ECHO_PREFIX: Final = b"\x00\xec"
"""The first two bytes of a UDP echo probe."""

STUN_MAGIC_COOKIE: Final = b"\x21\x12\xa4\x42"
"""RFC 5389 magic cookie, bytes 4–7 of every STUN message."""

_STUN_HEADER_LEN: Final = 20
_QUIC_FIXED_BIT: Final = 0x40
_STUN_TOP_BITS: Final = 0xC0


class Kind(Enum):
    """What a datagram on the shared socket is."""

    ECHO = "echo"
    """A UDP echo probe (``00 EC`` …)."""
    STUN = "stun"
    """A STUN message (RFC 5389 header)."""
    QUIC = "quic"
    """A QUIC packet (fixed bit 0x40 set)."""
    DHT = "dht"
    """Everything else: handed to the DHT decoder."""


def classify(data: bytes) -> Kind | None:
    """Classify one received datagram in a2ald's order.

    Args:
        data: the datagram as received.

    Returns:
        The kind of the datagram, or None for an empty datagram (which carries nothing).
    """
    if not data:
        return None
    first = data[0]
    if first == 0x00 and len(data) >= 2 and data[1] == 0xEC:
        return Kind.ECHO
    if (
        len(data) >= _STUN_HEADER_LEN
        and not first & _STUN_TOP_BITS
        and data[4:8] == STUN_MAGIC_COOKIE
    ):
        return Kind.STUN
    if first & _QUIC_FIXED_BIT:
        return Kind.QUIC
    return Kind.DHT


def echo_reply(data: bytes) -> bytes:
    """The answer to an echo probe: the probe itself, verbatim."""
    return bytes(data)
