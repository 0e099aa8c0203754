"""Ethereum and Paralism delegation proofs against a live a2ald 0.3.5 (a2al-wire §2.3, §7.2).

Both directions: proofs a2ald makes verify with our code (and are byte-identical to the ones
we make from the same keys, since both sides use RFC 6979 nonces and low s), and a2ald
registers agents whose proofs we made. The two implementations also agree on which
tampered proofs to refuse and which harmless message variants to accept.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from a2al_mcp._clock import SystemClock
from a2al_mcp.errors import VerificationError
from a2al_mcp.identity.aid import Aid
from a2al_mcp.identity.chain_text import bech32_encode_p2wpkh, paralism_bech32_encode
from a2al_mcp.identity.delegation import DelegationProof
from a2al_mcp.identity.keys import SigningKey
from a2al_mcp.identity.web3 import (
    btc_signmessage,
    delegation_message,
    eth_personal_sign,
    ethereum_aid,
    paralism_aid,
    sign_ethereum_delegation,
    sign_paralism_delegation,
)
from a2al_mcp.testing.a2ald import A2aldApiError, A2aldPeer

pytestmark = pytest.mark.interop


def now_s() -> int:
    return int(SystemClock().wall())


def wallet(label: str) -> bytes:
    return hashlib.sha256(f"a2al-mcp interop wallet {label}".encode()).digest()


def op_key(label: str) -> SigningKey:
    return SigningKey(hashlib.sha256(f"a2al-mcp interop op {label}".encode()).digest())


def register(a2ald: A2aldPeer, op: SigningKey, proof_bytes: bytes) -> dict[str, Any]:
    out: dict[str, Any] = a2ald.post(
        "/agents",
        {
            "operational_private_key_hex": op.go_bytes().hex(),
            "delegation_proof_hex": proof_bytes.hex(),
        },
    )
    return out


def resign(proof: DelegationProof, message: str, key: bytes) -> DelegationProof:
    if proof.agent.version == 0xA3:
        sig = eth_personal_sign(key, message)
    else:
        sig = btc_signmessage(key, message, compressed=proof.signature[0] >= 31)
    return dataclasses.replace(proof, message=message, signature=sig)


# -- a2ald's proofs, our verifier ----------------------------------------------------------


@pytest.mark.parametrize("chain", ["ethereum", "paralism"])
def test_generated_identity_verifies(a2ald: A2aldPeer, chain: str) -> None:
    out = a2ald.post("/agents/generate", {"chain": chain})
    raw = bytes.fromhex(out["delegation_proof_hex"])
    proof = DelegationProof.from_bytes(raw)
    agent = Aid.from_str(out["aid"])
    op = SigningKey.from_go_bytes(bytes.fromhex(out["operational_private_key_hex"]))
    owner = bytes.fromhex(out[f"{chain}_private_key_hex"])

    assert str(agent) == out["aid"]  # same display form (EIP-55 / bc1q…)
    assert proof.to_bytes() == raw  # same canonical CBOR
    proof.verify(now_s(), op_pub=bytes(op.public), agent=agent)
    assert proof.expires_at == 0
    assert proof.scope == 1

    if chain == "ethereum":
        assert ethereum_aid(owner) == agent
        ours = sign_ethereum_delegation(owner, op.public, issued_at=proof.issued_at)
    else:
        assert paralism_aid(owner) == agent  # a2ald uses the compressed key
        assert proof.signature[0] in range(31, 35)
        ours = sign_paralism_delegation(owner, op.public, issued_at=proof.issued_at)
    assert proof.message == delegation_message(
        chain,  # type: ignore[arg-type]
        op.public,
        agent,
        proof.scope,
        proof.issued_at,
        proof.expires_at,
    )
    assert ours.to_bytes() == raw  # byte-identical, signature included

    tampered = dataclasses.replace(proof, message=proof.message.replace("Authorize", "Allow"))
    with pytest.raises(VerificationError, match="not by the agent"):
        tampered.verify(now_s())


@pytest.mark.parametrize("chain", ["ethereum", "paralism"])
def test_proof_endpoint_matches_ours(a2ald: A2aldPeer, chain: str) -> None:
    key = wallet(f"proof-endpoint-{chain}")
    op = op_key(f"proof-endpoint-{chain}")
    t = now_s()
    out = a2ald.post(
        f"/agents/{chain}/proof",
        {
            f"{chain}_private_key_hex": key.hex(),
            "issued_at": t,
            "expires_at": t + 3600,
            "operational_private_key_seed_hex": op.seed.hex(),
        },
    )
    raw = bytes.fromhex(out["delegation_proof_hex"])
    sign = sign_ethereum_delegation if chain == "ethereum" else sign_paralism_delegation
    ours = sign(key, op.public, issued_at=t, expires_at=t + 3600)
    assert out["aid"] == str(ours.agent)
    assert raw == ours.to_bytes()
    DelegationProof.from_bytes(raw).verify(t, op_pub=bytes(op.public))


def test_delegation_message_endpoint_matches_ours(a2ald: A2aldPeer) -> None:
    op = op_key("message-endpoint")
    agent = ethereum_aid(wallet("message-endpoint"))
    t = now_s()
    for spelling in (str(agent), str(agent).lower()):
        out = a2ald.post(
            "/agents/ethereum/delegation-message",
            {
                "operational_public_key_hex": bytes(op.public).hex(),
                "agent": spelling,
                "issued_at": t,
                "expires_at": t + 60,
            },
        )
        assert out == {"message": delegation_message("ethereum", op.public, agent, 1, t, t + 60)}


# -- our proofs, a2ald's verifier ----------------------------------------------------------


def _eth(label: str, t: int) -> tuple[SigningKey, DelegationProof, bytes]:
    key, op = wallet(label), op_key(label)
    return op, sign_ethereum_delegation(key, op.public, issued_at=t, expires_at=t + 3600), key


def _par(
    label: str, t: int, *, compressed: bool = True
) -> tuple[SigningKey, DelegationProof, bytes]:
    key, op = wallet(label), op_key(label)
    proof = sign_paralism_delegation(
        key, op.public, compressed=compressed, issued_at=t, expires_at=t + 3600
    )
    return op, proof, key


def _v01(label: str, t: int) -> tuple[SigningKey, DelegationProof, bytes]:
    op, proof, key = _eth(label, t)
    low = proof.signature[:64] + bytes([proof.signature[64] - 27])
    return op, dataclasses.replace(proof, signature=low), key


MAKERS: dict[str, Callable[[str, int], tuple[SigningKey, DelegationProof, bytes]]] = {
    "eth": _eth,
    "eth-v01": _v01,
    "par": _par,
    "par-uncompressed": lambda label, t: _par(label, t, compressed=False),
}


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_a2ald_registers_our_proof(a2ald: A2aldPeer, kind: str) -> None:
    t = now_s()
    op, proof, _ = MAKERS[kind](f"register-{kind}", t)
    proof.verify(t)
    out = register(a2ald, op, proof.to_bytes())
    assert out == {"aid": str(proof.agent), "status": "registered"}
    exported = a2ald.get(f"/agents/{proof.agent}/export")
    assert exported["aid"] == str(proof.agent)
    assert bytes.fromhex(exported["delegation_proof_hex"]) == proof.to_bytes()
    assert exported["operational_private_key_hex"] == op.go_bytes().hex()


def test_a2ald_ethereum_register_with_our_wallet_signature(a2ald: A2aldPeer) -> None:
    """a2ald rebuilds the message itself and checks our personal_sign over it."""
    key, op = wallet("eth-register"), op_key("eth-register")
    t = now_s()
    agent = ethereum_aid(key)
    message = delegation_message("ethereum", op.public, agent, 1, t, t + 3600)
    out = a2ald.post(
        "/agents/ethereum/register",
        {
            "agent": str(agent),
            "issued_at": t,
            "expires_at": t + 3600,
            "eth_signature_hex": "0x" + eth_personal_sign(key, message).hex(),
            "operational_private_key_seed_hex": op.seed.hex(),
            "service_tcp": "",
        },
    )
    assert out == {"aid": str(agent), "status": "registered"}
    exported = a2ald.get(f"/agents/{agent}/export")
    ours = sign_ethereum_delegation(key, op.public, issued_at=t, expires_at=t + 3600)
    assert bytes.fromhex(exported["delegation_proof_hex"]) == ours.to_bytes()


# -- the two verifiers agree ---------------------------------------------------------------

Tamper = Callable[[DelegationProof, bytes, int], DelegationProof]


def _edit(proof: DelegationProof, key: str, value: str | None) -> str:
    out = []
    for line in proof.message.splitlines(keepends=True):
        if line.startswith(key + ":"):
            if value is None:
                continue
            line = f"{key}:{value}\n"
        out.append(line)
    return "".join(out)


def _other_agent(proof: DelegationProof) -> str:
    """An AID of the same kind as the proof's, owned by another wallet."""
    other = wallet("someone else")
    return str(ethereum_aid(other) if proof.agent.version == 0xA3 else paralism_aid(other))


REJECTED: dict[str, Tamper] = {
    "op-key-line": lambda p, k, t: resign(p, _edit(p, "op_key", "11" * 32), k),
    "agent-line": lambda p, k, t: resign(p, _edit(p, "agent", _other_agent(p)), k),
    "scope-line": lambda p, k, t: resign(p, _edit(p, "scope", "2"), k),
    "issued-cbor": lambda p, k, t: dataclasses.replace(p, issued_at=p.issued_at + 1),
    "expires-cbor": lambda p, k, t: dataclasses.replace(p, expires_at=0),
    "missing-line": lambda p, k, t: resign(p, _edit(p, "expires_at", None), k),
    "bad-number": lambda p, k, t: resign(p, _edit(p, "issued_at", "+" + str(p.issued_at)), k),
    "tampered-text": lambda p, k, t: dataclasses.replace(p, message=p.message + "\n"),
    "other-wallet": lambda p, k, t: resign(p, p.message, wallet("someone else")),
    "expired": lambda p, k, t: resign(
        dataclasses.replace(p, expires_at=t - 120),
        _edit(p, "expires_at", str(t - 120)),
        k,
    ),
}

ACCEPTED: dict[str, Tamper] = {
    "op-key-0x": lambda p, k, t: resign(p, p.message.replace("op_key:", "op_key:0x"), k),
    "op-key-upper": lambda p, k, t: resign(
        p, p.message.replace(p.op_pub.hex(), p.op_pub.hex().upper()), k
    ),
    "spaces": lambda p, k, t: resign(p, p.message.replace("\nscope:1\n", "\n  scope :\t1 \r\n"), k),
    "header-lines": lambda p, k, t: resign(p, p.message.replace("Authorize", "Allow"), k),
    "duplicate-wins": lambda p, k, t: resign(
        p, p.message.replace("scope:1\n", "scope:9\nscope:1\n"), k
    ),
    "extra-lines": lambda p, k, t: resign(p, "x:y\nno colon\n" + p.message, k),
}


@pytest.mark.parametrize("chain", ["eth", "par"])
@pytest.mark.parametrize("case", sorted(REJECTED))
def test_both_reject(a2ald: A2aldPeer, chain: str, case: str) -> None:
    t = now_s()
    op, proof, key = MAKERS[chain](f"reject-{chain}-{case}", t)
    bad = REJECTED[case](proof, key, t)
    with pytest.raises(VerificationError):
        DelegationProof.from_bytes(bad.to_bytes()).verify(t)
    with pytest.raises(A2aldApiError) as info:
        register(a2ald, op, bad.to_bytes())
    assert info.value.status == 400, info.value
    assert "delegation verify" in info.value.body, info.value


@pytest.mark.parametrize("chain", ["eth", "par"])
@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_both_accept(a2ald: A2aldPeer, chain: str, case: str) -> None:
    t = now_s()
    op, proof, key = MAKERS[chain](f"accept-{chain}-{case}", t)
    variant = ACCEPTED[case](proof, key, t)
    assert variant.message != proof.message
    DelegationProof.from_bytes(variant.to_bytes()).verify(t)
    assert register(a2ald, op, variant.to_bytes()) == {
        "aid": str(proof.agent),
        "status": "registered",
    }


def _base58check_p2pkh(hash20: bytes) -> str:
    payload = b"\x00" + hash20
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(data, "big")
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = alphabet[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\x00"))) + out


def test_paralism_text_forms_agree(a2ald: A2aldPeer) -> None:
    """a2ald spells Paralism AIDs as bech32 of 0x00 ‖ hash (not BIP-173), as we now do."""
    d1 = (1).to_bytes(32, "big")
    out = a2ald.post("/agents/paralism/proof", {"paralism_private_key_hex": d1.hex()})
    assert out["aid"] == "bc1qp63uahgrxged4z5jswyt5dn5v3lzsem6c0qqhg8"
    assert out["aid"] == str(paralism_aid(d1))
    t = now_s()
    op, proof, key = _par("text-forms", t)
    h = proof.agent.hash20
    accepted = [
        paralism_bech32_encode("pr", h),
        str(proof.agent).upper(),
        _base58check_p2pkh(h),
    ]
    for text in accepted:
        variant = resign(proof, _edit(proof, "agent", text), key)
        variant.verify(t)
        assert register(a2ald, op, variant.to_bytes())["aid"] == str(proof.agent), text
    bip173 = resign(proof, _edit(proof, "agent", bech32_encode_p2wpkh("bc", h)), key)
    with pytest.raises(VerificationError, match="BIP-173"):
        bip173.verify(t)
    with pytest.raises(A2aldApiError) as info:
        register(a2ald, op, bip173.to_bytes())
    assert info.value.status == 400
    assert "delegation verify" in info.value.body
