"""What both QUIC stacks check in a hostile TLS handshake before their TLS code sees it. Core.

A QUIC stack turns only its own ``tls.Alert`` into a CONNECTION_CLOSE; anything else its TLS
raises on a hostile handshake message (a parse error, a bad point, a Rust panic in qh3) would
escape ``receive_datagram`` and leave the connection half-open (reading/issue 14). So both
adapters (:mod:`~a2al_mcp.transport.tls` for aioquic, :mod:`~a2al_mcp.transport.tls_qh3` for
qh3) run every handshake message through :func:`contain_handshake_failure`, refuse messages
longer than :data:`MAX_HANDSHAKE_MESSAGE` before they are buffered whole
(:func:`handshake_message_too_long`), and qh3's checks every key share's length before any
exchange (:func:`key_share_ok`). Nothing here knows a stack: each adapter passes its own
alert classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from .._containment import containable

__all__ = [
    "KEY_SHARE_LENGTHS",
    "MAX_HANDSHAKE_MESSAGE",
    "X25519MLKEM768",
    "X25519MLKEM768_CLIENT_SHARE",
    "X25519MLKEM768_SERVER_SHARE",
    "contain_handshake_failure",
    "handshake_message_too_long",
    "key_share_ok",
]

MAX_HANDSHAKE_MESSAGE: Final = 262_144
"""Longest TLS handshake message accepted from a peer (Go's crypto/tls, which a2ald uses,
takes Certificate messages up to 256 KiB; an A2AL certificate is about 500 bytes). Longer
ones are refused with unexpected_message before they are buffered whole."""

KEY_SHARE_LENGTHS: Final = {0x001D: 32, 0x0017: 65, 0x0018: 97, 0x0019: 133}
"""Key share length by group (RFC 8446 §4.2.8.2): X25519; P-256, P-384, P-521 uncompressed."""

X25519MLKEM768: Final = 0x11EC
X25519MLKEM768_CLIENT_SHARE: Final = 1184 + 32
"""ML-KEM-768 encapsulation key, then the X25519 share (draft-ietf-tls-ecdhe-mlkem §4.1)."""
X25519MLKEM768_SERVER_SHARE: Final = 1088 + 32
"""ML-KEM-768 ciphertext, then the X25519 share."""

_UNCOMPRESSED_GROUPS: Final = frozenset({0x0017, 0x0018, 0x0019})
"""Groups whose shares are uncompressed points: legacy_form 4 (RFC 8446 §4.2.8.2)."""


def contain_handshake_failure(
    handle: Callable[[], None],
    *,
    alert: type[BaseException],
    as_alert: Callable[[BaseException], BaseException],
) -> None:
    """Run ``handle`` (a TLS context's ``handle_message``) so that it fails only with an
    ``alert``, which the stack sends in a CONNECTION_CLOSE: any other failure is raised as
    ``as_alert(exc)`` from it (cancellation and exit propagate)."""
    try:
        handle()
    except alert:
        raise
    except BaseException as exc:
        if not containable(exc):
            raise
        raise as_alert(exc) from exc


def handshake_message_too_long(pending: bytes) -> bool:
    """Whether the partial handshake message a TLS context buffers announces more than
    :data:`MAX_HANDSHAKE_MESSAGE` bytes (its 24-bit length follows the type byte)."""
    return len(pending) >= 4 and int.from_bytes(pending[1:4], "big") > MAX_HANDSHAKE_MESSAGE


def key_share_ok(group: int, share: bytes, *, from_client: bool) -> bool:
    """Whether a key share's length (and point form) is right for its group; a group with
    no known length passes. X25519MLKEM768's differs by direction."""
    if group == X25519MLKEM768:
        want = X25519MLKEM768_CLIENT_SHARE if from_client else X25519MLKEM768_SERVER_SHARE
    else:
        want = KEY_SHARE_LENGTHS.get(group, len(share))
    return len(share) == want and (group not in _UNCOMPRESSED_GROUPS or share[:1] == b"\x04")
