from __future__ import annotations

import dataclasses

import pytest

from a2al_mcp._random import SeededRng
from a2al_mcp.errors import DecodeError, LimitExceeded, UsageError, VerificationError
from a2al_mcp.identity import Aid, DelegatedIdentity, DelegationProof, Identity, SigningKey
from a2al_mcp.protocol.payloads import (
    AgentProfilePayload,
    EndpointPayload,
    MailboxPayload,
    TopicPayload,
    topic_key,
)
from a2al_mcp.protocol.records import Category, SignedRecord, category_of

T0 = 1_700_000_000
EP = EndpointPayload(endpoints=("quic://127.0.0.1:4121",)).to_bytes()


def _rec(ident: Identity, **kw: object) -> SignedRecord:
    args: dict[str, object] = {"seq": 1, "timestamp": T0, "ttl": 3600}
    args.update(kw)
    rec_type = int(args.pop("rec_type", 1))  # type: ignore[call-overload]
    payload = args.pop("payload", EP)
    return SignedRecord.sign(ident, rec_type, payload, **args)  # type: ignore[arg-type]


def test_freshness_window(ident_a: Identity) -> None:
    rec = _rec(ident_a)
    rec.verify(T0)
    rec.verify(T0 - 60)  # 60 s of future skew tolerated
    with pytest.raises(VerificationError, match="in the future"):
        rec.verify(T0 - 61)
    rec.verify(T0 + 3600)
    with pytest.raises(VerificationError, match="expired"):
        rec.verify(T0 + 3601)


def test_wrong_signature(ident_a: Identity) -> None:
    rec = _rec(ident_a)
    for field, value in [("seq", 2), ("ttl", 7200), ("payload", EP + b"\x00"), ("timestamp", 1)]:
        with pytest.raises(VerificationError, match="signature"):
            dataclasses.replace(rec, **{field: value}).verify(T0)


def test_endpoint_payload_rules(ident_a: Identity) -> None:
    bad = EndpointPayload(endpoints=("quic://x:1",), nat_type=5).to_bytes()
    with pytest.raises(VerificationError, match="nat_type"):
        _rec(ident_a, payload=bad).verify(T0)
    many = EndpointPayload(signals=tuple(f"ws://h{i}" for i in range(9))).to_bytes()
    with pytest.raises(VerificationError, match="signal"):
        _rec(ident_a, payload=many).verify(T0)
    with pytest.raises(VerificationError, match="payload invalid"):
        _rec(ident_a, payload=b"\x01").verify(T0)


def test_topic_and_mailbox_caps(ident_a: Identity) -> None:
    with pytest.raises(LimitExceeded, match="limit is 512"):
        TopicPayload(topic="t", brief="x", meta={"k": "v" * 600}).to_bytes()
    with pytest.raises(LimitExceeded, match="140"):
        TopicPayload(topic="t", brief="é" * 141).to_bytes()
    TopicPayload(topic="t", brief="é" * 140).to_bytes()  # code points, not bytes
    big = _rec(ident_a, rec_type=0x10, payload=b"\xa0" * 513, seq=1)
    with pytest.raises(VerificationError, match="512"):
        big.verify(T0)
    empty_topic = _rec(ident_a, rec_type=0x10, payload=TopicPayload(topic="x").to_bytes())
    empty_topic.verify(T0)
    mail = _rec(ident_a, rec_type=0x80, payload=b"\x00" * 513)
    with pytest.raises(VerificationError, match="mailbox payload over 512"):
        mail.verify(T0)
    with pytest.raises(LimitExceeded, match="700"):
        AgentProfilePayload(brief="x" * 701).to_bytes()


def test_authority_native_and_delegated(ident_a: Identity, key_b: SigningKey) -> None:
    rec = _rec(ident_a)
    rec.validate(T0, key=bytes(ident_a.aid.node_id))
    with pytest.raises(VerificationError, match="NodeID"):
        rec.check_authority(T0, key=topic_key("x"))
    # a key that does not own the AID, without delegation
    stranger = Identity.from_key(key_b)
    forged = SignedRecord.sign(stranger, 1, EP, seq=1, timestamp=T0)
    forged = dataclasses.replace(forged, address=ident_a.aid)
    with pytest.raises(VerificationError, match="signature"):
        forged.verify(T0)  # the address is signed, so swapping it breaks the signature
    # a correctly signed record by the stranger claiming A's address
    claim = SignedRecord(
        address=ident_a.aid, rec_type=1, payload=EP, seq=1, timestamp=T0, ttl=3600,
        pubkey=bytes(key_b.public), signature=b"",
    )  # fmt: skip
    claim = dataclasses.replace(claim, signature=key_b.sign(claim.signed_bytes()))
    claim.verify(T0)
    with pytest.raises(VerificationError, match="does not own the AID"):
        claim.check_authority(T0)


def test_delegated_authority(key_a: SigningKey, key_b: SigningKey) -> None:
    proof = DelegationProof.create(key_a, key_b.public, issued_at=T0, expires_at=T0 + 100)
    agent = Identity.from_delegation(key_b, proof, now=T0)
    rec = SignedRecord.sign(agent, 1, EP, seq=1, timestamp=T0)
    assert rec.address == Aid.from_public_key(key_a.public)
    assert rec.delegation_proof() == proof
    rec.validate(T0, key=bytes(agent.aid.node_id))
    with pytest.raises(VerificationError, match="expired"):
        rec.check_authority(T0 + 160)
    # a proof for another op key does not authorise this one
    other = DelegationProof.create(key_a, key_a.public, issued_at=T0)
    wrong = dataclasses.replace(rec, delegation=other.to_bytes())
    with pytest.raises(VerificationError, match="different operational key"):
        wrong.check_authority(T0)
    with pytest.raises(VerificationError, match="malformed"):
        dataclasses.replace(rec, delegation=b"\xa0").check_authority(T0)


def test_record_is_newer_order(key_a: SigningKey, key_b: SigningKey) -> None:
    old = Identity.from_delegation(
        key_b, DelegationProof.create(key_a, key_b.public, issued_at=T0), now=T0
    )
    new = Identity.from_delegation(
        key_b, DelegationProof.create(key_a, key_b.public, issued_at=T0 + 1), now=T0
    )
    high_seq_old_delegation = SignedRecord.sign(old, 1, EP, seq=99, timestamp=T0)
    low_seq_new_delegation = SignedRecord.sign(new, 1, EP, seq=1, timestamp=T0)
    assert low_seq_new_delegation.is_newer_than(high_seq_old_delegation)
    assert not high_seq_old_delegation.is_newer_than(low_seq_new_delegation)
    a = SignedRecord.sign(old, 1, EP, seq=2, timestamp=T0)
    b = SignedRecord.sign(old, 1, EP, seq=2, timestamp=T0 + 1)
    assert b.is_newer_than(a) and not a.is_newer_than(b) and not a.is_newer_than(a)


def test_sign_rejects_misuse(ident_a: Identity) -> None:
    with pytest.raises(UsageError, match="ttl"):
        _rec(ident_a, ttl=0)
    with pytest.raises(UsageError, match="cannot be signed"):
        _rec(ident_a, rec_type=0x20)
    with pytest.raises(UsageError, match="unsigned 64-bit"):
        _rec(ident_a, seq=-1)


def test_decode_shape_errors(ident_a: Identity) -> None:
    import cbor2

    m = _rec(ident_a).to_map()
    for key, value, message in [
        (1, b"\xa0" * 20, "21 bytes"),
        (7, b"\x00" * 31, "32 bytes"),
        (8, b"\x00" * 63, "64 bytes"),
        (2, 256, "uint8"),
        (6, 2**32, "uint32"),
        (4, "1", "unsigned"),
    ]:
        bad = dict(m)
        bad[key] = value
        with pytest.raises(DecodeError, match=message):
            SignedRecord.from_bytes(cbor2.dumps(bad, canonical=True))
    with pytest.raises(DecodeError, match="trailing"):
        SignedRecord.from_bytes(_rec(ident_a).to_bytes() + b"\x00")


def test_categories_and_ids(ident_a: Identity) -> None:
    assert category_of(0x01) is Category.SOVEREIGN
    assert category_of(0x45) is Category.SOVEREIGN
    assert category_of(0x10) is Category.TOPIC
    assert category_of(0x8F) is Category.MAILBOX
    rec = _rec(ident_a)
    import hashlib

    assert rec.msg_id == hashlib.sha256(EP).digest()
    assert rec.expires_at == T0 + 3600
    assert rec.default_key() == bytes(ident_a.aid.node_id)


def test_mailbox_payload_shape() -> None:
    with pytest.raises(DecodeError, match="12 bytes"):
        MailboxPayload.from_bytes(
            MailboxPayload(
                recipient=Aid(b"\xa0" * 21), sender=Aid(b"\xa0" * 21),
                ephemeral_pk=bytes(32), ciphertext=b"x", nonce=bytes(11),
            ).to_bytes()
        )  # fmt: skip


def test_generated_agent_records_verify() -> None:
    made = DelegatedIdentity.generate(SeededRng(7), issued_at=T0)
    rec = SignedRecord.sign(made.identity, 0x02, AgentProfilePayload(name="x").to_bytes(),
                            seq=1, timestamp=T0)  # fmt: skip
    rec.validate(T0, key=bytes(made.identity.aid.node_id))


def test_a_delegation_verified_once_per_record_object(
    key_a: SigningKey, key_b: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached record is checked on every resolve: its delegation proof (immutable) is
    verified once, then only its expiry is checked again; a bad proof is never cached."""
    proof = DelegationProof.create(key_a, key_b.public, issued_at=T0, expires_at=T0 + 100)
    agent = Identity.from_delegation(key_b, proof, now=T0)
    rec = SignedRecord.sign(agent, 1, EP, seq=1, timestamp=T0)
    calls: list[float] = []
    verify = DelegationProof.verify

    def counted(self: DelegationProof, now: float, **kw: object) -> None:
        calls.append(now)
        verify(self, now, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(DelegationProof, "verify", counted)
    for _ in range(3):
        rec.check_authority(T0 + 10)
    assert calls == [T0 + 10]
    with pytest.raises(VerificationError, match="expired"):
        rec.check_authority(T0 + 160)  # the cached path still checks the expiry
    forged = dataclasses.replace(
        rec, delegation=dataclasses.replace(proof, signature=bytes(64)).to_bytes()
    )
    for _ in range(2):
        with pytest.raises(VerificationError, match="signature"):
            forged.check_authority(T0 + 10)
    assert len(calls) == 3  # each forged check verified again: failures are not cached
