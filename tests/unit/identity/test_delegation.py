from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from a2al_mcp._random import SeededRng
from a2al_mcp.errors import DecodeError, UsageError, VerificationError
from a2al_mcp.identity import Aid, DelegatedIdentity, DelegationProof, Identity, SigningKey

T0 = 1_700_000_000


@pytest.fixture
def proof(key_a: SigningKey, key_b: SigningKey) -> DelegationProof:
    return DelegationProof.create(key_a, key_b.public, issued_at=T0)


def test_vector(vectors: dict[str, Any], proof: DelegationProof) -> None:
    v = vectors["delegation"]
    assert proof.signed_bytes() == b"a2al-del\x00" + bytes.fromhex(v["signed_fields"])
    assert proof.signature.hex() == v["signature"]
    assert proof.to_bytes().hex() == v["proof"]
    assert DelegationProof.from_bytes(bytes.fromhex(v["proof"])) == proof


def test_verifies_and_checks_op_key_and_agent(proof: DelegationProof, key_b: SigningKey) -> None:
    proof.verify(T0, op_pub=bytes(key_b.public), agent=proof.agent)
    with pytest.raises(VerificationError, match="different operational key"):
        proof.verify(T0, op_pub=bytes(32))
    other = Aid(b"\xa0" + bytes(20))
    with pytest.raises(VerificationError, match="proof is for"):
        proof.verify(T0, agent=other)


def test_wrong_scope(key_a: SigningKey, key_b: SigningKey) -> None:
    p = DelegationProof.create(key_a, key_b.public, issued_at=T0, scope=2)
    with pytest.raises(VerificationError, match="scope 2"):
        p.verify(T0)


def test_expiry_has_60s_grace(key_a: SigningKey, key_b: SigningKey) -> None:
    p = DelegationProof.create(key_a, key_b.public, issued_at=T0, expires_at=T0 + 100)
    p.verify(T0 + 159)
    with pytest.raises(VerificationError, match="expired"):
        p.verify(T0 + 160)
    never = DelegationProof.create(key_a, key_b.public, issued_at=T0)
    never.verify(T0 + 10**9)


def test_bad_signature_and_foreign_master(proof: DelegationProof, key_b: SigningKey) -> None:
    tampered = dataclasses.replace(proof, issued_at=T0 + 1)
    with pytest.raises(VerificationError, match="signature"):
        tampered.verify(T0)
    # a master key that does not own the AID claimed
    forged = dataclasses.replace(proof, master_pub=bytes(key_b.public))
    with pytest.raises(VerificationError, match="does not own"):
        forged.verify(T0)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.update({3: b"\xa0" * 20}), "21 bytes"),
        (lambda m: m.update({2: b"\x00" * 31}), "32 bytes"),
        (lambda m: m.pop(1), "master_pub"),
        (lambda m: m.update({7: b"\x00" * 65}), "64 bytes"),
        (lambda m: m.update({8: "hello"}), "must not carry a message"),
        (lambda m: m.update({3: b"\xa5" + b"\x00" * 20}), "unsupported AID version"),
        (lambda m: m.update({3: b"\xa3" + b"\x00" * 20}), "must not carry master_pub"),
        (lambda m: m.update({4: -1}), "unsigned"),
        (lambda m: m.update({4: "x"}), "unsigned"),
    ],
)
def test_parse_rejections(proof: DelegationProof, mutate: Any, message: str) -> None:
    import cbor2

    m = cbor2.loads(proof.to_bytes())
    mutate(m)
    with pytest.raises(DecodeError, match=message):
        DelegationProof.from_bytes(cbor2.dumps(m, canonical=True))


def test_identity_invariants(key_a: SigningKey, key_b: SigningKey, proof: DelegationProof) -> None:
    native = Identity.from_key(key_a)
    assert not native.is_delegated
    delegated = Identity.from_delegation(key_b, proof, now=T0)
    assert delegated.aid == native.aid
    assert delegated.is_delegated
    with pytest.raises(UsageError):
        Identity(key_b, native.aid)  # native identity with a foreign key
    with pytest.raises(UsageError, match="different operational key"):
        Identity.from_delegation(key_a, proof, now=T0)


def test_generated_delegated_identity() -> None:
    made = DelegatedIdentity.generate(SeededRng(1), issued_at=T0)
    assert made.identity.delegation is not None
    made.identity.delegation.verify(T0, op_pub=bytes(made.identity.key.public))
    assert Aid.from_public_key(made.master.public) == made.identity.aid
