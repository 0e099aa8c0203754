"""Room ids and the hub's request targets (a2al-wire §6.4).

A room is named by both AIDs, so caller and callee compute the same one without talking:
:func:`room_id`. The caller opens ``/ice?caller=…&room=…&target=…`` (Go sorts the query keys),
the callee ``/ice?room=…``, the registration socket is ``/signal``. :func:`parse_target`
turns a request target into a :class:`SignalRequest` or :class:`IceRequest` for the hub, or
refuses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import urllib.parse
from typing import Final

from ..errors import DecodeError

__all__ = [
    "ICE_PATH",
    "MAX_ID_CHARS",
    "SIGNAL_PATH",
    "SUBPROTOCOL",
    "IceRequest",
    "SignalRequest",
    "ice_target",
    "parse_target",
    "room_id",
]

SUBPROTOCOL: Final = "a2al.ice.v1"
"""The WebSocket subprotocol of both paths."""
SIGNAL_PATH: Final = "/signal"
ICE_PATH: Final = "/ice"
MAX_ID_CHARS: Final = 128
"""Longest room or AID string the hub accepts (rooms are 32 hex characters, AIDs 42)."""
_MAX_TARGET_CHARS: Final = 1024


def room_id(aid_a: str, aid_b: str) -> str:
    """32 lowercase hex characters: the first 16 bytes of SHA-256(min ‖ "\\n" ‖ max) of the
    two AIDs' display strings (checksummed hex), compared byte-wise. Direction does not matter,
    so two nodes dialling each other at once meet in one room (glare, nat-testbed D15)."""
    low, high = sorted((aid_a, aid_b), key=lambda s: s.encode())
    return hashlib.sha256(f"{low}\n{high}".encode()).digest()[:16].hex()


def ice_target(room: str, *, caller: str = "", target: str = "") -> str:
    """The request target of an ``/ice`` socket: the caller's names ``caller`` and ``target``
    (the hub then tells the target, or answers ``noagent``), the callee's only ``room``."""
    if bool(caller) != bool(target):
        raise ValueError("caller and target go together")
    query = {"room": room} | ({"caller": caller, "target": target} if target else {})
    return ICE_PATH + "?" + urllib.parse.urlencode(sorted(query.items()))


@dataclasses.dataclass(frozen=True, slots=True)
class SignalRequest:
    """``GET /signal``: a registration socket."""


@dataclasses.dataclass(frozen=True, slots=True)
class IceRequest:
    """``GET /ice``: join ``room``; with ``target``, wake that registered AID first."""

    room: str
    caller: str = ""
    target: str = ""


def parse_target(target: str) -> SignalRequest | IceRequest:
    """Parse an HTTP request target for the hub.

    Raises:
        DecodeError: not ``/signal`` or ``/ice``, no ``room`` on ``/ice``, ``target`` without
            ``caller``, a repeated or over-long parameter (the hub answers 400 or 404).
    """
    if len(target) > _MAX_TARGET_CHARS:
        raise DecodeError("request target too long")
    path, _, query = target.partition("?")
    if path == SIGNAL_PATH:
        return SignalRequest()
    if path != ICE_PATH:
        raise DecodeError(f"no such path {path[:64]!r}", path=path[:64])
    try:
        pairs = urllib.parse.parse_qsl(query, strict_parsing=False, max_num_fields=8)
    except ValueError as exc:
        raise DecodeError(f"bad query: {exc}") from exc
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise DecodeError(f"repeated query parameter {key[:16]!r}")
        if len(value) > MAX_ID_CHARS or not value.isprintable():
            raise DecodeError(f"query parameter {key[:16]!r} too long or not printable")
        params[key] = value
    room = params.get("room", "")
    if not room:
        raise DecodeError("missing room")
    caller, wanted = params.get("caller", ""), params.get("target", "")
    if wanted and not caller:
        raise DecodeError("missing caller")
    return IceRequest(room, caller if wanted else "", wanted)
