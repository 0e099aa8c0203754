from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from a2al_mcp._random import SeededRng
from a2al_mcp.errors import LimitExceeded, VerificationError
from a2al_mcp.identity import Identity, SigningKey
from a2al_mcp.protocol import limits
from a2al_mcp.protocol.mailbox_crypto import open_note, seal_note


class FixedRng:
    """Hands out the vector's ephemeral key, then its nonce."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def bytes(self, n: int) -> bytes:
        chunk = self.chunks.pop(0)
        assert len(chunk) == n
        return chunk

    def randrange(self, stop: int) -> int:
        return 0

    def random(self) -> float:
        return 0.0


def test_vector(vectors: dict[str, Any], ident_a: Identity, ident_b: Identity) -> None:
    v = vectors["mailbox"]
    rng = FixedRng(bytes.fromhex(v["ephemeral_private"]), bytes.fromhex(v["nonce"]))
    payload = seal_note(
        sender=ident_a.aid, recipient=ident_b.aid, recipient_key=ident_b.key.public,
        body=b"hello", rng=rng,
    )  # fmt: skip
    assert payload.to_bytes().hex() == v["payload"]


def test_body_limit(ident_a: Identity, ident_b: Identity, key_b: SigningKey) -> None:
    rng = SeededRng(1)
    ok = seal_note(sender=ident_a.aid, recipient=ident_b.aid, recipient_key=key_b.public,
                   body=b"x" * limits.MAILBOX_BODY_MAX, rng=rng)  # fmt: skip
    assert len(ok.to_bytes()) == limits.MAILBOX_PAYLOAD_MAX
    assert open_note(ok, own_aid=ident_b.aid, own_key=key_b).body == b"x" * 389
    with pytest.raises(LimitExceeded, match="389"):
        seal_note(sender=ident_a.aid, recipient=ident_b.aid, recipient_key=key_b.public,
                  body=b"x" * 390, rng=rng)  # fmt: skip


def test_refusals(
    ident_a: Identity, ident_b: Identity, key_a: SigningKey, key_b: SigningKey
) -> None:
    payload = seal_note(sender=ident_a.aid, recipient=ident_b.aid, recipient_key=key_b.public,
                        body=b"secret", rng=SeededRng(2))  # fmt: skip
    with pytest.raises(VerificationError, match="another AID"):
        open_note(payload, own_aid=ident_a.aid, own_key=key_a)
    with pytest.raises(VerificationError, match="does not decrypt"):
        open_note(payload, own_aid=ident_b.aid, own_key=key_a)  # wrong key
    tampered = dataclasses.replace(payload, ciphertext=bytes([payload.ciphertext[0] ^ 1])
                                   + payload.ciphertext[1:])  # fmt: skip
    with pytest.raises(VerificationError, match="does not decrypt"):
        open_note(tampered, own_aid=ident_b.aid, own_key=key_b)
    spoofed_sender = dataclasses.replace(payload, sender=ident_b.aid)  # changes the HKDF info
    with pytest.raises(VerificationError, match="does not decrypt"):
        open_note(spoofed_sender, own_aid=ident_b.aid, own_key=key_b)
    low_order = dataclasses.replace(payload, ephemeral_pk=bytes(32))
    with pytest.raises(VerificationError):
        open_note(low_order, own_aid=ident_b.aid, own_key=key_b)
