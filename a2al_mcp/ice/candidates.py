"""pion's ICE candidate grammar, both ways (a2al-wire §6.4 ``cand``, testbed README §4 D1).

a2ald 0.3.5 (pion/ice v3) sends ``c`` as pion's ``Candidate.Marshal()``: **no** ``candidate:``
prefix, lowercase ``udp``, a decimal foundation, the related address always ``0.0.0.0``::

    1906588769 1 udp 2130706431 10.5.0.2 46169 typ host
    1596354072 1 udp 1694498815 203.0.113.12 37514 typ srflx raddr 0.0.0.0 rport 37514
    2151461983 1 udp 16777215 203.0.113.3 49655 typ relay raddr 0.0.0.0 rport 51971

:func:`parse_candidate` reads such a string into an aioice :class:`~aioice.Candidate`;
:func:`render_candidate` writes one of ours the way pion's ``UnmarshalCandidate`` reads it.

The parser is stricter than pion and bounded: at most ``max_chars`` printable ASCII
characters, eight fixed fields then ``name value`` pairs (at most :data:`MAX_TOKENS` tokens),
numbers as plain decimal digits within their Go types (component 1-256, priority uint32,
port 1-65535), the address an IP literal, the sixth token ``typ``.  Malformed input raises
:class:`~a2al_mcp.errors.DecodeError`; input that is well-formed but that this node cannot
use (TCP candidates, mDNS ``.local`` names, IPv6 addresses with a zone) raises
:class:`UnsupportedCandidate` (a ``DecodeError`` too), which a session counts and ignores as
pion ignores what it cannot pair.  Like pion, an optional ``candidate:`` prefix is tolerated
on input and never written; ``tcptype`` is read and dropped on a UDP candidate, and unknown
extensions (``generation``, ``network-id`` …) are skipped.  What :func:`render_candidate`
writes also satisfies pion v4's stricter tokenizer (single spaces, a foundation of at most
32 ice-chars).

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from aioice import Candidate

from ..errors import DecodeError, UsageError

__all__ = [
    "CANDIDATE_TYPES",
    "MAX_CANDIDATE_CHARS",
    "MAX_TOKENS",
    "UnsupportedCandidate",
    "parse_candidate",
    "render_candidate",
]

MAX_CANDIDATE_CHARS: Final = 256
"""Default length cap of one candidate string (pion's longest, IPv6 with raddr, is ~130)."""

MAX_TOKENS: Final = 24
"""Tokens in one candidate: 8 fixed, then at most 8 ``name value`` extension pairs."""

CANDIDATE_TYPES: Final = frozenset({"host", "srflx", "prflx", "relay"})
"""The candidate types of RFC 8445 (pion's ``CandidateType`` strings)."""

_PREFIX: Final = "candidate:"
_OPERATION: Final = "parse ICE candidate"
_ICE_CHARS: Final = re.compile(r"[A-Za-z0-9+/]{1,32}")
"""RFC 8445 foundation: 1*32 ice-char."""
_EXTENSION_NAME: Final = re.compile(r"[A-Za-z0-9+/._-]{1,32}")
"""RFC 8839 extension-att-name (a token; ``network-id``, ``generation`` …), bounded."""
_DIGITS: Final = re.compile(r"[0-9]{1,10}")
_PRINTABLE: Final = re.compile(r"[\x20-\x7e]*")
_TCP_TYPES: Final = frozenset({"active", "passive", "so"})


class UnsupportedCandidate(DecodeError):
    """A well-formed candidate this node cannot use (TCP, an mDNS name): ignore and count."""


def _fail(text: str, why: str) -> DecodeError:
    return DecodeError(f"malformed ICE candidate ({why}): {text[:80]!r}", operation=_OPERATION)


def _number(text: str, token: str, what: str, low: int, high: int) -> int:
    """A Go ``strconv.ParseUint(token, 10, …)`` with a range: plain digits only."""
    if _DIGITS.fullmatch(token) is None:
        raise _fail(text, f"{what} is not a decimal number")
    value = int(token)
    if not low <= value <= high:
        raise _fail(text, f"{what} {value} is outside {low}..{high}")
    return value


def _address(text: str, token: str, what: str) -> str:
    """An IP literal, canonical form (pion's ``net.ParseIP``; no zone, no mDNS name)."""
    if token.endswith(".local"):
        raise UnsupportedCandidate(
            f"ICE candidate with an mDNS name ({what}): {text[:80]!r}", operation=_OPERATION
        )
    if "%" in token:
        # pion strips an IPv6 zone and keeps the link-local address; useless off-link
        raise UnsupportedCandidate(
            f"ICE candidate with a zoned {what}: {text[:80]!r}", operation=_OPERATION
        )
    try:
        return str(ipaddress.ip_address(token))
    except ValueError:
        raise _fail(text, f"{what} is not an IP address") from None


def parse_candidate(text: str, *, max_chars: int = MAX_CANDIDATE_CHARS) -> Candidate:
    """Parse one candidate string as a2ald sends it (pion ``Marshal`` format).

    Returns an aioice :class:`~aioice.Candidate` with transport ``"udp"``; raises
    :class:`~a2al_mcp.errors.DecodeError` for malformed input and
    :class:`UnsupportedCandidate` for a TCP or mDNS candidate.
    """
    if not isinstance(text, str):
        raise DecodeError(
            f"ICE candidate is a {type(text).__name__}, not text", operation=_OPERATION
        )
    if len(text) > max_chars:
        raise DecodeError(
            f"ICE candidate of {len(text)} characters (at most {max_chars})",
            operation=_OPERATION,
        )
    if _PRINTABLE.fullmatch(text) is None:
        raise _fail(text, "not printable ASCII")
    body = text.removeprefix(_PREFIX)
    tokens = body.split()
    if len(tokens) < 8:
        raise _fail(text, f"{len(tokens)} fields, at least 8 needed")
    if len(tokens) > MAX_TOKENS:
        raise _fail(text, f"{len(tokens)} fields, at most {MAX_TOKENS}")
    foundation, component, transport, priority, host, port, typ_word, typ = tokens[:8]
    if _ICE_CHARS.fullmatch(foundation) is None:
        raise _fail(text, "foundation is not 1-32 ice-chars")
    component_n = _number(text, component, "component", 1, 256)
    transport_l = transport.lower()
    if transport_l == "tcp":
        raise UnsupportedCandidate(f"TCP ICE candidate: {text[:80]!r}", operation=_OPERATION)
    if transport_l != "udp":
        raise _fail(text, f"transport {transport[:8]!r} is neither udp nor tcp")
    priority_n = _number(text, priority, "priority", 0, 0xFFFFFFFF)
    host_ip = _address(text, host, "address")
    port_n = _number(text, port, "port", 1, 0xFFFF)
    if typ_word != "typ":
        raise _fail(text, "the sixth field is not 'typ'")
    if typ not in CANDIDATE_TYPES:
        raise _fail(text, f"unknown candidate type {typ[:8]!r}")
    related_address, related_port = _extensions(text, tokens[8:])
    return Candidate(
        foundation=foundation,
        component=component_n,
        transport="udp",
        priority=priority_n,
        host=host_ip,
        port=port_n,
        type=typ,
        related_address=related_address,
        related_port=related_port,
    )


def _extensions(text: str, rest: list[str]) -> tuple[str | None, int | None]:
    """``raddr``/``rport`` (both or neither), ``tcptype`` checked then dropped, others skipped."""
    if len(rest) % 2:
        raise _fail(text, "an extension name without a value")
    related_address: str | None = None
    related_port: int | None = None
    seen: set[str] = set()
    for name, value in zip(rest[0::2], rest[1::2], strict=True):
        if name in seen:
            raise _fail(text, f"{name[:12]!r} given twice")
        seen.add(name)
        if name == "raddr":
            related_address = _address(text, value, "raddr")
        elif name == "rport":
            # pion writes rport 0 never, but reads it; 0 is "no port" (RFC 8839 uses 9).
            related_port = _number(text, value, "rport", 0, 0xFFFF)
        elif name == "tcptype":
            if value not in _TCP_TYPES:
                raise _fail(text, f"tcptype {value[:8]!r}")
        elif _EXTENSION_NAME.fullmatch(name) is None:
            raise _fail(text, "extension name is not a token")
    if (related_address is None) != (related_port is None):
        raise _fail(text, "raddr and rport must come together")
    return related_address, related_port


def render_candidate(candidate: Candidate) -> str:
    """Write one of our candidates as pion's ``Marshal`` does (what pion parses).

    ``foundation component udp priority address port typ type [raddr A rport P]``: no
    ``candidate:`` prefix, lowercase ``udp``, the related address only when it has a port
    (pion omits ``raddr`` when the port is 0). Raises :class:`~a2al_mcp.errors.UsageError`
    for a candidate pion could not read (not UDP, unknown type, bad foundation).
    """
    if candidate.transport.lower() != "udp":
        raise UsageError(f"only UDP candidates are signalled, not {candidate.transport!r}")
    if candidate.type not in CANDIDATE_TYPES:
        raise UsageError(f"unknown candidate type {candidate.type!r}")
    if _ICE_CHARS.fullmatch(candidate.foundation) is None:
        raise UsageError(f"foundation {candidate.foundation!r} is not 1-32 ice-chars")
    if not 1 <= candidate.component <= 256 or not 0 <= candidate.priority <= 0xFFFFFFFF:
        raise UsageError(f"component or priority out of range in {candidate!r}")
    if not 1 <= candidate.port <= 0xFFFF:
        raise UsageError(f"port out of range in {candidate!r}")
    host = str(ipaddress.ip_address(candidate.host))
    text = (
        f"{candidate.foundation} {candidate.component} udp {candidate.priority} "
        f"{host} {candidate.port} typ {candidate.type}"
    )
    if candidate.related_address is not None and candidate.related_port:
        related = str(ipaddress.ip_address(candidate.related_address))
        text += f" raddr {related} rport {candidate.related_port}"
    return text
