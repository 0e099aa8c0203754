"""Ethereum (0xA3) and Paralism (0xA2) delegation proofs: a2al-wire §2.3.

Known-answer vectors come from published sources (cited at each constant); everything else
uses fixed keys, so the suite is deterministic and never touches the network.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import sys
from collections.abc import Callable
from typing import Any

import cbor2
import pytest

from a2al_mcp.errors import DecodeError, ExtraMissing, UsageError, VerificationError
from a2al_mcp.identity import _ripemd160
from a2al_mcp.identity.aid import Aid
from a2al_mcp.identity.chain_text import bech32_decode_p2wpkh, paralism_bech32_encode
from a2al_mcp.identity.delegation import DelegationProof
from a2al_mcp.identity.keys import SigningKey
from a2al_mcp.identity.web3 import (
    btc_signmessage,
    delegation_message,
    eip191_hash,
    eth_personal_sign,
    ethereum_aid,
    ethereum_signer,
    hash160,
    paralism_aid,
    paralism_signer,
    sign_ethereum_delegation,
    sign_paralism_delegation,
    signmessage_hash,
    verify_blockchain_delegation,
)

NOW = 1_800_000_000
ISSUED = NOW - 3600
EXPIRES = NOW + 86_400

WALLET_A = hashlib.sha256(b"a2al-mcp test wallet A").digest()
WALLET_B = hashlib.sha256(b"a2al-mcp test wallet B").digest()
OP_KEY = SigningKey(hashlib.sha256(b"a2al-mcp test op key").digest())
OP_PUB = bytes(OP_KEY.public)
OTHER_OP_PUB = bytes(SigningKey(hashlib.sha256(b"a2al-mcp other op key").digest()).public)

Signer = Callable[..., DelegationProof]

# The key hash of private key 1 (compressed): BIP-173's P2WPKH vector, and a2al's spelling of
# the same Paralism AID (bech32 of 0x00 ‖ hash, as a2ald 0.3.5 prints it).
BIP173_D1 = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
D1_PARALISM = "bc1qp63uahgrxged4z5jswyt5dn5v3lzsem6c0qqhg8"


def sign_eth(
    key: bytes = WALLET_A, *, issued_at: int = ISSUED, expires_at: int = EXPIRES
) -> DelegationProof:
    return sign_ethereum_delegation(key, OP_PUB, issued_at=issued_at, expires_at=expires_at)


def sign_par(
    key: bytes = WALLET_A, *, issued_at: int = ISSUED, expires_at: int = EXPIRES
) -> DelegationProof:
    return sign_paralism_delegation(key, OP_PUB, issued_at=issued_at, expires_at=expires_at)


def sign_par_uncompressed(
    key: bytes = WALLET_A, *, issued_at: int = ISSUED, expires_at: int = EXPIRES
) -> DelegationProof:
    return sign_paralism_delegation(
        key, OP_PUB, compressed=False, issued_at=issued_at, expires_at=expires_at
    )


SIGNERS = pytest.mark.parametrize(
    "sign", [sign_eth, sign_par, sign_par_uncompressed], ids=["eth", "par", "par-unc"]
)


def resign(proof: DelegationProof, message: str, key: bytes = WALLET_A) -> DelegationProof:
    """The same proof with ``message`` in place of the original, validly signed by ``key``."""
    if proof.agent.version == 0xA3:
        sig = eth_personal_sign(key, message)
    else:
        sig = btc_signmessage(key, message, compressed=proof.signature[0] >= 31)
    return dataclasses.replace(proof, message=message, signature=sig)


def edit_line(proof: DelegationProof, key: str, value: str | None) -> str:
    """The proof's message with the ``key:`` line set to ``value`` (None drops the line)."""
    out = []
    for line in proof.message.splitlines(keepends=True):
        if line.startswith(key + ":"):
            if value is None:
                continue
            line = f"{key}:{value}\n"
        out.append(line)
    return "".join(out)


# -- the signed text ---------------------------------------------------------------------


def test_ethereum_message_text() -> None:
    agent = Aid.from_str("0x5ce9454909639D2D17A3F753ce7d93fa0b9aB12E")
    msg = delegation_message("ethereum", bytes(range(32)), agent, 1, 1700000000, 0)
    assert msg == (
        "A2AL Delegation Authorization\n"
        "Authorize this Ed25519 key to operate on behalf of your Ethereum address.\n"
        "\n"
        "op_key:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
        "agent:0x5ce9454909639D2D17A3F753ce7d93fa0b9aB12E\n"
        "scope:1\n"
        "issued_at:1700000000\n"
        "expires_at:0\n"
    )


def test_paralism_message_text() -> None:
    agent = Aid.from_str(D1_PARALISM)
    msg = delegation_message("paralism", OP_KEY.public, agent, 1, 5, 99)
    assert msg == (
        "A2AL Delegation Authorization\n"
        "Authorize this Ed25519 key to operate on behalf of your Paralism address.\n"
        "\n"
        f"op_key:{OP_PUB.hex()}\n"
        f"agent:{D1_PARALISM}\n"
        "scope:1\n"
        "issued_at:5\n"
        "expires_at:99\n"
    )


def test_message_argument_checks() -> None:
    eth = ethereum_aid(WALLET_A)
    with pytest.raises(UsageError, match="0xa2 AID"):
        delegation_message("paralism", OP_PUB, eth, 1, 0, 0)
    with pytest.raises(UsageError, match="unknown chain"):
        delegation_message("bitcoin", OP_PUB, eth, 1, 0, 0)  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match="32 bytes"):
        delegation_message("ethereum", OP_PUB[:31], eth, 1, 0, 0)
    with pytest.raises(UsageError, match="scope"):
        delegation_message("ethereum", OP_PUB, eth, 256, 0, 0)
    with pytest.raises(UsageError, match="issued_at"):
        delegation_message("ethereum", OP_PUB, eth, 1, -1, 0)


# -- round trips -------------------------------------------------------------------------


@SIGNERS
def test_round_trip(sign: Signer) -> None:
    proof = sign()
    wire = proof.to_bytes()
    fields = cbor2.loads(wire)
    assert sorted(fields) == [2, 3, 4, 5, 6, 7, 8]  # no master_pub for blockchain owners
    assert fields[8] == proof.message
    back = DelegationProof.from_bytes(wire)
    assert back == proof
    assert back.to_bytes() == wire
    back.verify(NOW, op_pub=OP_PUB, agent=proof.agent)
    assert back.is_valid(NOW)
    verify_blockchain_delegation(back)


def test_owner_aids() -> None:
    eth = sign_eth().agent
    par = sign_par().agent
    par_unc = sign_par_uncompressed().agent
    assert str(eth).startswith("0x")
    assert str(par).startswith("bc1q")
    assert par != par_unc  # compressed and uncompressed keys are different addresses
    assert par.hash20 != eth.hash20
    # the same AIDs from the public keys, in every accepted encoding
    from coincurve import PrivateKey

    pub = PrivateKey(WALLET_A).public_key
    compressed, uncompressed = pub.format(compressed=True), pub.format(compressed=False)
    for key in (compressed, uncompressed, uncompressed[1:]):
        assert ethereum_aid(key) == eth
    assert paralism_aid(compressed) == par
    assert paralism_aid(uncompressed) == par_unc
    assert paralism_aid(uncompressed[1:]) == par
    assert paralism_aid(WALLET_A, compressed=False) == par_unc
    assert paralism_aid(uncompressed, compressed=True) == par
    assert par == Aid(b"\xa2" + hash160(compressed))


def test_owner_aid_rejects_bad_keys() -> None:
    with pytest.raises(DecodeError, match="out of range"):
        ethereum_aid(bytes(32))
    with pytest.raises(DecodeError, match="got 20"):
        paralism_aid(bytes(20))
    with pytest.raises(DecodeError, match="not a valid secp256k1 public key"):
        ethereum_aid(b"\x02" + b"\xff" * 32)
    with pytest.raises(TypeError):
        ethereum_aid("00" * 32)  # type: ignore[arg-type]


def test_signatures_are_deterministic_and_low_s() -> None:
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    for sign in (sign_eth, sign_par, sign_par_uncompressed):
        p1, p2 = sign(), sign()
        assert p1.signature == p2.signature
    eth = sign_eth().signature
    assert eth[64] in (27, 28)
    assert int.from_bytes(eth[32:64], "big") <= n // 2
    assert sign_par().signature[0] in range(31, 35)
    assert sign_par_uncompressed().signature[0] in range(27, 31)


# -- v / header normalisation ------------------------------------------------------------


def test_ethereum_v_zero_one_accepted() -> None:
    proof = sign_eth()
    v = proof.signature[64]
    low = dataclasses.replace(proof, signature=proof.signature[:64] + bytes([v - 27]))
    DelegationProof.from_bytes(low.to_bytes()).verify(NOW)
    flipped = dataclasses.replace(proof, signature=proof.signature[:64] + bytes([(v - 27) ^ 1]))
    with pytest.raises(VerificationError, match="not by the agent"):
        flipped.verify(NOW)


@pytest.mark.parametrize("v", [2, 3, 26, 29, 30, 35, 255])
def test_ethereum_bad_v(v: int) -> None:
    proof = sign_eth()
    bad = dataclasses.replace(proof, signature=proof.signature[:64] + bytes([v]))
    with pytest.raises(VerificationError, match=f"v = {v} is not a recovery id"):
        bad.verify(NOW)


@pytest.mark.parametrize("header", [0, 1, 26, 35, 36, 40, 42])
def test_paralism_bad_header(header: int) -> None:
    proof = sign_par()
    bad = dataclasses.replace(proof, signature=bytes([header]) + proof.signature[1:])
    with pytest.raises(VerificationError, match=f"header byte {header} is outside 27-34"):
        bad.verify(NOW)


def test_paralism_compression_flag_selects_the_address() -> None:
    proof = sign_par()
    unc = dataclasses.replace(
        proof, signature=bytes([proof.signature[0] - 4]) + proof.signature[1:]
    )
    with pytest.raises(VerificationError, match="not by the agent"):
        unc.verify(NOW)
    # ... and the uncompressed header recovers the owner's uncompressed-key address
    assert paralism_signer(proof.message, unc.signature) == paralism_aid(WALLET_A, compressed=False)


@pytest.mark.parametrize(("sign", "r_at"), [(sign_eth, 0), (sign_par, 1)], ids=["eth", "par"])
@pytest.mark.parametrize("bad_r", [bytes(32), b"\xff" * 32], ids=["zero", "over-n"])
def test_unrecoverable_signature(sign: Signer, r_at: int, bad_r: bytes) -> None:
    proof = sign()
    sig = proof.signature
    bad = sig[:r_at] + bad_r + sig[r_at + 32 :]
    with pytest.raises(VerificationError, match="no public key can be recovered"):
        dataclasses.replace(proof, signature=bad).verify(NOW)


@pytest.mark.parametrize("sign", [sign_eth, sign_par], ids=["eth", "par"])
def test_signature_length(sign: Signer) -> None:
    proof = dataclasses.replace(sign(), signature=bytes(64))
    with pytest.raises(VerificationError, match="must be 65 bytes, got 64"):
        verify_blockchain_delegation(proof)


# -- rejections ----------------------------------------------------------------------------


@SIGNERS
def test_reject_wrong_op_key_in_message(sign: Signer) -> None:
    proof = sign()
    bad = resign(proof, edit_line(proof, "op_key", OTHER_OP_PUB.hex()))
    with pytest.raises(VerificationError, match=r"op_key .* is not the proof's op_pub"):
        bad.verify(NOW)
    # the same signed message with the matching CBOR op_pub is fine
    dataclasses.replace(bad, op_pub=OTHER_OP_PUB).verify(NOW)


@SIGNERS
def test_reject_cbor_op_pub_not_in_message(sign: Signer) -> None:
    bad = dataclasses.replace(sign(), op_pub=OTHER_OP_PUB)
    with pytest.raises(VerificationError, match=r"op_key .* is not the proof's op_pub"):
        bad.verify(NOW)


@SIGNERS
def test_reject_agent_line_for_another_aid(sign: Signer) -> None:
    proof = sign()
    other = sign(WALLET_B).agent
    bad = resign(proof, edit_line(proof, "agent", str(other)))
    with pytest.raises(VerificationError, match=r"agent .* is not the proof's agent"):
        bad.verify(NOW)


def test_reject_agent_line_of_other_chain() -> None:
    proof = sign_eth()
    par = sign_par().agent  # a Paralism AID over a different hash
    bad = resign(proof, edit_line(proof, "agent", str(par)))
    with pytest.raises(VerificationError, match="is not the proof's agent"):
        bad.verify(NOW)


def test_reject_agent_line_not_an_aid() -> None:
    proof = sign_eth()
    text = str(proof.agent)
    swapped = text[:2] + text[2:].swapcase()  # bad EIP-55 checksum
    bad = resign(proof, edit_line(proof, "agent", swapped))
    with pytest.raises(VerificationError, match="is not an AID"):
        bad.verify(NOW)


@pytest.mark.parametrize(
    ("field", "value"),
    [("issued_at", ISSUED + 1), ("expires_at", EXPIRES + 1), ("expires_at", 0)],
)
@SIGNERS
def test_reject_time_field_mismatch(sign: Signer, field: str, value: int) -> None:
    changes: dict[str, Any] = {field: value}
    bad = dataclasses.replace(sign(), **changes)
    with pytest.raises(VerificationError, match=f"{field} .* differs from the proof's {value}"):
        DelegationProof.from_bytes(bad.to_bytes()).verify(NOW)


@SIGNERS
def test_reject_scope_mismatch(sign: Signer) -> None:
    proof = sign()
    bad = resign(proof, edit_line(proof, "scope", "2"))
    with pytest.raises(VerificationError, match="scope 2 differs from the proof's 1"):
        bad.verify(NOW)
    # a CBOR scope other than 1 is refused by DelegationProof.verify before the wallet check,
    # and the wallet check on its own still sees the mismatch
    cbor_scope = dataclasses.replace(proof, scope=2)
    with pytest.raises(VerificationError, match="scope 2 is not 1"):
        cbor_scope.verify(NOW)
    with pytest.raises(VerificationError, match="scope 1 differs from the proof's 2"):
        verify_blockchain_delegation(cbor_scope)


@SIGNERS
def test_reject_signature_by_another_wallet(sign: Signer) -> None:
    proof = sign()
    other = sign(WALLET_B)
    bad = dataclasses.replace(other, agent=proof.agent, message=proof.message)
    bad = resign(bad, proof.message, key=WALLET_B)
    with pytest.raises(VerificationError, match=f"signed by {other.agent}, not by the agent"):
        DelegationProof.from_bytes(bad.to_bytes()).verify(NOW)


@pytest.mark.parametrize("field", ["op_key", "agent", "scope", "issued_at", "expires_at"])
@SIGNERS
def test_reject_missing_line(sign: Signer, field: str) -> None:
    proof = sign()
    bad = resign(proof, edit_line(proof, field, None))
    with pytest.raises(VerificationError, match=f"missing line\\(s\\) {field}:"):
        bad.verify(NOW)


def test_reject_several_missing_lines() -> None:
    proof = sign_eth()
    bad = resign(proof, "A2AL Delegation Authorization\nagent:" + str(proof.agent) + "\n")
    with pytest.raises(
        VerificationError, match="missing line\\(s\\) op_key:, scope:, issued_at:, expires_at:"
    ):
        bad.verify(NOW)


@SIGNERS
def test_reject_tampered_message(sign: Signer) -> None:
    proof = sign()
    for tampered in (
        proof.message.replace(f"issued_at:{ISSUED}", f"issued_at:{ISSUED - 1}"),
        proof.message.replace("Authorize", "authorize"),
        proof.message + "\n",
        proof.message[:-1],
    ):
        bad = dataclasses.replace(proof, message=tampered)
        with pytest.raises(VerificationError, match="not by the agent"):
            DelegationProof.from_bytes(bad.to_bytes()).verify(NOW)


@SIGNERS
def test_expiry(sign: Signer) -> None:
    proof = DelegationProof.from_bytes(sign().to_bytes())
    proof.verify(EXPIRES + 59)
    with pytest.raises(VerificationError, match=f"expired at {EXPIRES}"):
        proof.verify(EXPIRES + 60)
    with pytest.raises(VerificationError, match="expired"):
        proof.verify(EXPIRES + 3600)
    # the wallet check itself never looks at the clock
    verify_blockchain_delegation(proof)
    never = sign(expires_at=0)
    never.verify(NOW + 10**9)


@SIGNERS
def test_op_pub_and_agent_arguments(sign: Signer) -> None:
    proof = sign()
    proof.verify(NOW, op_pub=OP_PUB, agent=proof.agent)
    with pytest.raises(VerificationError, match="different operational key"):
        proof.verify(NOW, op_pub=OTHER_OP_PUB)
    with pytest.raises(VerificationError, match="delegation proof is for"):
        proof.verify(NOW, agent=sign(WALLET_B).agent)


def test_non_blockchain_aid_rejected() -> None:
    proof = dataclasses.replace(sign_eth(), agent=Aid(b"\xa0" + bytes(20)))
    with pytest.raises(VerificationError, match="not a blockchain owner"):
        verify_blockchain_delegation(proof)


def test_message_not_utf8() -> None:
    proof = dataclasses.replace(sign_eth(), message="op_key:\ud800")
    with pytest.raises(VerificationError, match="not valid UTF-8"):
        verify_blockchain_delegation(proof)


# -- message parsing: a2ald's rules (ParseDelegationMessageFields) ------------------------


@pytest.mark.parametrize(
    "edit",
    [
        lambda m, p: m.replace("op_key:", "op_key:0x"),
        lambda m, p: m.replace("op_key:", "op_key:0X"),
        lambda m, p: m.replace(p.op_pub.hex(), p.op_pub.hex().upper()),
        lambda m, p: m.replace("\nscope:1\n", "\n  scope :\t1 \r\n"),
        lambda m, p: m.replace("\nscope:1\n", "\nscope:001\n"),
        lambda m, p: m.replace("Ethereum address", "whatever"),  # header lines are not checked
        lambda m, p: "no colon here\nextra:ignored\n" + m,
        lambda m, p: m.replace("scope:1\n", "scope:7\nscope:1\n"),  # a later duplicate wins
        lambda m, p: m.replace(str(p.agent), str(p.agent).lower()),
    ],
    ids=["0x", "0X", "upper-hex", "spaces", "leading-zeros", "header", "extra", "dup", "lower"],
)
def test_message_variants_accepted(edit: Callable[[str, DelegationProof], str]) -> None:
    proof = sign_eth()
    variant = resign(proof, edit(proof.message, proof))
    assert variant.message != proof.message
    variant.verify(NOW)


def test_paralism_agent_alternative_spellings() -> None:
    d1 = (1).to_bytes(32, "big")
    proof = sign_par(d1)
    assert str(proof.agent) == D1_PARALISM
    for agent_text in (
        paralism_bech32_encode("pr", proof.agent.hash20),  # pr HRP, same AID
        D1_PARALISM.upper(),  # bech32 upper case
        "1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH",  # Base58Check P2PKH of the same key hash
    ):
        assert Aid.from_str(agent_text) == proof.agent
        resign(proof, edit_line(proof, "agent", agent_text), key=d1).verify(NOW)
    # Bitcoin's own (BIP-173) spelling of that key hash is not an a2al AID; a2ald refuses it too
    bad = resign(proof, edit_line(proof, "agent", BIP173_D1), key=d1)
    with pytest.raises(VerificationError, match=r"is not an AID .*BIP-173"):
        bad.verify(NOW)


@pytest.mark.parametrize(
    ("line", "value", "error"),
    [
        ("scope", "+1", "scope '\\+1' is not a decimal uint8"),
        ("scope", "256", "scope '256' is not a decimal uint8"),
        ("scope", "", "scope '' is not a decimal uint8"),
        ("issued_at", "1_000", "issued_at '1_000' is not a decimal uint64"),
        ("issued_at", "-5", "issued_at '-5' is not a decimal uint64"),
        ("expires_at", str(1 << 64), "expires_at '18446744073709551616' is not a decimal uint64"),
        ("expires_at", "\u0661", "is not a decimal uint64"),  # Arabic-Indic digit one
        ("op_key", "abc", "op_key 'abc' is not hex"),
        ("op_key", "zz" * 32, "is not hex"),
        ("op_key", "00 11", "is not hex"),
        ("op_key", OP_PUB.hex()[:-2], "is not the proof's op_pub"),
    ],
)
def test_malformed_lines(line: str, value: str, error: str) -> None:
    proof = sign_eth()
    bad = resign(proof, edit_line(proof, line, value))
    with pytest.raises(VerificationError, match=error):
        bad.verify(NOW)


def test_bad_number_in_an_earlier_duplicate_still_fails() -> None:
    proof = sign_eth()
    bad = resign(proof, proof.message.replace("scope:1\n", "scope:x\nscope:1\n"))
    with pytest.raises(VerificationError, match="scope 'x'"):
        bad.verify(NOW)


# -- the web3 extra ------------------------------------------------------------------------


def test_without_coincurve_extra_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    proof = DelegationProof.from_bytes(sign_eth().to_bytes())
    par = sign_par()
    monkeypatch.setitem(sys.modules, "coincurve", None)
    with pytest.raises(ExtraMissing) as info:
        proof.verify(NOW)
    assert info.value.code == "EXTRA_MISSING"
    assert isinstance(info.value, VerificationError)
    assert str(info.value) == (
        "verifying Ethereum/Paralism delegation proofs needs the web3 extra: "
        'pip install "a2al-mcp[web3]"'
    )
    with pytest.raises(ExtraMissing):
        par.verify(NOW)
    with pytest.raises(ExtraMissing):  # "cannot check" is not "invalid"
        proof.is_valid(NOW)
    with pytest.raises(ExtraMissing, match=r"signing .* needs the web3 extra"):
        sign_eth()
    # the text helpers need no extra
    assert delegation_message("ethereum", OP_PUB, proof.agent, 1, ISSUED, EXPIRES) == proof.message
    assert len(eip191_hash("x")) == len(signmessage_hash("x")) == 32


def test_ed25519_proofs_need_no_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    owner = SigningKey(hashlib.sha256(b"a2al-mcp native owner").digest())
    proof = DelegationProof.create(owner, OP_PUB, issued_at=ISSUED)
    monkeypatch.setitem(sys.modules, "coincurve", None)
    proof.verify(NOW)


# -- known-answer vectors ------------------------------------------------------------------

# eth-account, eth_account/account.py, Account.sign_message doctest (also web3.py docs,
# "Sign a Message"): private key b25c…b364 signs "I♥SF" (6 UTF-8 bytes, so the EIP-191
# length is the byte count "6", not the character count 4).
ETH_ACCOUNT_KEY = bytes.fromhex("b25c7db31feed9122727bf0939dc769a96564b2de4c4726d035b36ecf1e5b364")
ETH_ACCOUNT_ADDRESS = "0x5ce9454909639D2D17A3F753ce7d93fa0b9aB12E"
ETH_ACCOUNT_HASH = "1476abb745d423bf09273f1afd887d951181d25adc66c4834a70491911b7f750"
ETH_ACCOUNT_SIG = bytes.fromhex(
    "e6ca9bba58c88611fad66a6ce8f996908195593807c4b38bd528d2cff09d4eb3"
    "3e5bfbbf4d3e39b1a2fd816a7680c19ebebaf3a141b239934ad43cb33fcec8ce1c"
)

# web3.js docs, web3.eth.accounts.sign('Some data', '0x4c08…2318') (docs.web3js.org,
# api/web3-eth-accounts/function/sign).
WEB3JS_KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
WEB3JS_HASH = "1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655"
WEB3JS_SIG = bytes.fromhex(
    "b91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd"
    "6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c"
)

# go-ethereum personal_ecRecover example (gethr docs; ex_web3_ec_recover docs): "hello world".
GETH_SIG = bytes.fromhex(
    "1dd3657c91d95f350ab25f17ee7cbcdbccd3f5bc52976bfd4dd03bd6bc29d2ac"
    "23e656bee509ca33b921e0e6b53eb64082be1bb3c69c3a4adccd993b1d667f8d1b"
)
GETH_ADDRESS = "0xb117a8bc3ecf2c3f006b89da6826e49b4193977a"


def test_eip191_known_answer_eth_account() -> None:
    assert eip191_hash("I♥SF").hex() == ETH_ACCOUNT_HASH
    assert str(ethereum_signer("I♥SF", ETH_ACCOUNT_SIG)) == ETH_ACCOUNT_ADDRESS
    assert str(ethereum_aid(ETH_ACCOUNT_KEY)) == ETH_ACCOUNT_ADDRESS
    assert eth_personal_sign(ETH_ACCOUNT_KEY, "I♥SF") == ETH_ACCOUNT_SIG  # RFC 6979


def test_eip191_known_answer_web3js() -> None:
    assert eip191_hash("Some data").hex() == WEB3JS_HASH
    assert ethereum_signer("Some data", WEB3JS_SIG) == ethereum_aid(WEB3JS_KEY)
    assert str(ethereum_aid(WEB3JS_KEY)) == "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
    assert eth_personal_sign(WEB3JS_KEY, "Some data") == WEB3JS_SIG


def test_eip191_known_answer_geth_recover() -> None:
    assert ethereum_signer("hello world", GETH_SIG) == Aid.from_str(GETH_ADDRESS)
    assert ethereum_signer("hello world!", GETH_SIG) != Aid.from_str(GETH_ADDRESS)


# bitcoinjs/bitcoinjs-message, test/fixtures.json ("valid.magicHash", "valid.sign",
# "valid.verify", "invalid.verify").
BITCOINJS_MAGIC_HASHES = {
    "": "80e795d4a4caadd7047af389d9f7f220562feb6196032e2131e10563352c4bcc",
    "Vires is Numeris": "f8a5affbef4a3241b19067aa694562f64f513310817297089a8929a930f4f933",
}
BITCOINJS_MESSAGE = "vires is numeris"
BITCOINJS_VERIFY = [
    # (address, base64 signature)
    (
        "16UwLL9Risc3QfPqBUvKofHmBQ7wMtjvM",
        "G8JawPtQOrybrSP1WHQnQPr67B9S3qrxBrl1mlzoTJOSHEpmnF7D3+t+LX0Xei9J20B5AIdPbeL3AaTBZ4N3bY0=",
    ),
    (
        "1PMycacnJaSqwwJqjawXBErnLsZ7RkXUAs",
        "H8JawPtQOrybrSP1WHQnQPr67B9S3qrxBrl1mlzoTJOSHEpmnF7D3+t+LX0Xei9J20B5AIdPbeL3AaTBZ4N3bY0=",
    ),
]
# d = 1: its compressed key hashes to 751e76e8…, BIP-173's P2WPKH test vector.
BITCOINJS_SIGN_UNCOMPRESSED = (
    "HF8nHqFr3K2UKYahhX3soVeoW8W1ECNbr0wfck7lzyXjCS5Q16Ek45zyBuy1Fiy9sTPKVgsqqOuPvbycuVSSVl8="
)
BITCOINJS_SIGN_COMPRESSED = (
    "IF8nHqFr3K2UKYahhX3soVeoW8W1ECNbr0wfck7lzyXjCS5Q16Ek45zyBuy1Fiy9sTPKVgsqqOuPvbycuVSSVl8="
)
BITCOINJS_SIGN_SEGWIT_BECH32 = (
    "KF8nHqFr3K2UKYahhX3soVeoW8W1ECNbr0wfck7lzyXjCS5Q16Ek45zyBuy1Fiy9sTPKVgsqqOuPvbycuVSSVl8="
)


@pytest.mark.parametrize(("message", "digest"), sorted(BITCOINJS_MAGIC_HASHES.items()))
def test_signmessage_hash_known_answer(message: str, digest: str) -> None:
    assert signmessage_hash(message).hex() == digest


@pytest.mark.parametrize(("address", "signature"), BITCOINJS_VERIFY)
def test_signmessage_recover_known_answer(address: str, signature: str) -> None:
    sig = base64.b64decode(signature)
    assert paralism_signer(BITCOINJS_MESSAGE, sig) == Aid.from_str(address)
    assert paralism_signer("foobar", sig) != Aid.from_str(address)  # "wrong message"


def test_signmessage_no_cross_verification() -> None:
    (unc_addr, unc_sig), (comp_addr, comp_sig) = BITCOINJS_VERIFY
    assert paralism_signer(BITCOINJS_MESSAGE, base64.b64decode(comp_sig)) != Aid.from_str(unc_addr)
    assert paralism_signer(BITCOINJS_MESSAGE, base64.b64decode(unc_sig)) != Aid.from_str(comp_addr)


def test_signmessage_sign_known_answer() -> None:
    d1 = (1).to_bytes(32, "big")
    unc = base64.b64decode(BITCOINJS_SIGN_UNCOMPRESSED)
    comp = base64.b64decode(BITCOINJS_SIGN_COMPRESSED)
    assert btc_signmessage(d1, BITCOINJS_MESSAGE, compressed=False) == unc
    assert btc_signmessage(d1, BITCOINJS_MESSAGE) == comp
    assert paralism_signer(BITCOINJS_MESSAGE, comp) == Aid(
        b"\xa2" + bech32_decode_p2wpkh(BIP173_D1, ("bc",))
    )
    assert paralism_signer(BITCOINJS_MESSAGE, unc) == paralism_aid(d1, compressed=False)
    # bitcoinjs' segwit headers (35-42) are not signmessage headers; a2ald refuses them too
    with pytest.raises(VerificationError, match="header byte 40"):
        paralism_signer(BITCOINJS_MESSAGE, base64.b64decode(BITCOINJS_SIGN_SEGWIT_BECH32))


# RIPEMD-160 test vectors from the algorithm's authors (Bosselaers, "The hash function
# RIPEMD-160", homes.esat.kuleuven.be/~bosselae/ripemd160.html).
RIPEMD160_VECTORS = [
    (b"", "9c1185a5c5e9fc54612808977ee8f548b2258d31"),
    (b"a", "0bdc9d2d256b3ee9daae347be6f4dc835a467ffe"),
    (b"abc", "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"),
    (b"message digest", "5d0689ef49d2fae572b881b123a85ffa21595f36"),
    (b"abcdefghijklmnopqrstuvwxyz", "f71c27109c692c1b56bbdceb5b9d2865b3708dbc"),
    (
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "12a053384a9c0c88e405a06c27dcf49ada62eb2b",
    ),
    (
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        "b0e20b6e3116640286ed3a87a5713079b21f5189",
    ),
    (b"1234567890" * 8, "9b752e45573d4b39f4dbd3323cab82bf63326bfb"),
]


@pytest.mark.parametrize(("data", "digest"), RIPEMD160_VECTORS)
def test_ripemd160_fallback_known_answer(data: bytes, digest: str) -> None:
    assert _ripemd160.ripemd160_py(data).hex() == digest


def test_ripemd160_fallback_matches_openssl_at_block_edges() -> None:
    try:
        hashlib.new("ripemd160")
    except ValueError:
        pytest.skip("this OpenSSL has no RIPEMD-160")
    for n in range(200):
        data = hashlib.sha512(n.to_bytes(2, "big")).digest() * 4
        data = data[:n]
        assert _ripemd160.ripemd160_py(data) == hashlib.new("ripemd160", data).digest(), n


def test_paralism_round_trip_with_fallback_ripemd(monkeypatch: pytest.MonkeyPatch) -> None:
    with_openssl = sign_par()
    monkeypatch.setattr(_ripemd160, "_HAVE_OPENSSL_RIPEMD160", False)
    assert sign_par() == with_openssl
    with_openssl.verify(NOW)
    assert hash160(b"\x02" + bytes(32)) == _ripemd160.ripemd160_py(
        hashlib.sha256(b"\x02" + bytes(32)).digest()
    )


# -- recorded from a live a2ald 0.3.5 (POST /agents/generate, sealed namespace) ---------------

A2ALD_GENERATED = {
    "paralism": {
        "paralism_private_key_hex": (
            "7f763ba30f067830b3b7d8b5de5105f2beb60eeef3a26d2ce6e055b7da4bc691"
        ),
        "operational_private_key_hex": (
            "e314371fc595ab845a76eca2f62627ce6d19f67905707548cbb3fa7c6bf71ab8"
            "dcd90a3b439e5ab91835ce2fc9e04a6f726b34ba9c9feaafbe4a05c101009aeb"
        ),
        "delegation_proof_hex": (
            "a7025820dcd90a3b439e5ab91835ce2fc9e04a6f726b34ba9c9feaafbe4a05c101009aeb0355a2d5"
            "657399f4d4281c388f5ed9fd657567358d1d4e041a6b0193dd050006010758411f285e457646f789"
            "58605e6108380c1257c626a87973f3093f3606b547d16c81d130f0ab305b445b5a77cd9a24758ba5"
            "5bae3a5653ecd1b0add962d0ccbdfecd010879010d4132414c2044656c65676174696f6e20417574"
            "686f72697a6174696f6e0a417574686f72697a6520746869732045643235353139206b657920746f"
            "206f706572617465206f6e20626568616c66206f6620796f757220506172616c69736d2061646472"
            "6573732e0a0a6f705f6b65793a646364393061336234333965356162393138333563653266633965"
            "303461366637323662333462613963396665616166626534613035633130313030396165620a6167"
            "656e743a6263317172326b32757565376e327a73387063336130646e6c743977346e6e7472676166"
            "63307933646e710a73636f70653a310a6973737565645f61743a313739353236353530310a657870"
            "697265735f61743a300a"
        ),
        "aid": "bc1qr2k2uue7n2zs8pc3a0dnlt9w4nntrgafc0y3dnq",
    },
    "ethereum": {
        "ethereum_private_key_hex": (
            "203e9955b6e00b687cc0c142198c3c8e13eaa09f0daa2f62aba065b23e148628"
        ),
        "operational_private_key_hex": (
            "acc8119a0a836b4e71bed8419a4ca63cfa83ea334fc1191f2ca4367a12f06b07"
            "1489002b7f04e4c6cc83e423fc8a9babb3fbc8251535e7ada05277095e394a9d"
        ),
        "delegation_proof_hex": (
            "a70258201489002b7f04e4c6cc83e423fc8a9babb3fbc8251535e7ada05277095e394a9d0355a37e"
            "5cc05b0cc4eea5490a868d405ed46aab452fba041a6b0193dd05000601075841d4c9beef97b1ae33"
            "202dc2bdcbd6b9d2ba58362ef3f80d01ce3c894d139b9a00272f533201dadd883f6b80752aaf5744"
            "a381e5c0606220d73fa45389f56bfb4f1b0879010c4132414c2044656c65676174696f6e20417574"
            "686f72697a6174696f6e0a417574686f72697a6520746869732045643235353139206b657920746f"
            "206f706572617465206f6e20626568616c66206f6620796f757220457468657265756d2061646472"
            "6573732e0a0a6f705f6b65793a313438393030326237663034653463366363383365343233666338"
            "613962616262336662633832353135333565376164613035323737303935653339346139640a6167"
            "656e743a3078376535634330354230634334654561353439304138363844343035654434364141"
            "623435324642610a73636f70653a310a6973737565645f61743a313739353236353530310a6578"
            "70697265735f61743a300a"
        ),
        "aid": "0x7e5cC05B0cC4eEa5490A868D405eD46AAb452FBa",
    },
}


@pytest.mark.parametrize("chain", sorted(A2ALD_GENERATED))
def test_a2ald_generated_vectors(chain: str) -> None:
    vec = A2ALD_GENERATED[chain]
    raw = bytes.fromhex(vec["delegation_proof_hex"])
    proof = DelegationProof.from_bytes(raw)
    op = SigningKey.from_go_bytes(bytes.fromhex(vec["operational_private_key_hex"]))
    owner = bytes.fromhex(vec[f"{chain}_private_key_hex"])
    assert str(proof.agent) == vec["aid"]
    assert Aid.from_str(vec["aid"]) == proof.agent
    assert proof.to_bytes() == raw
    proof.verify(proof.issued_at, op_pub=bytes(op.public))
    if chain == "ethereum":
        assert ethereum_aid(owner) == proof.agent
        ours = sign_ethereum_delegation(owner, op.public, issued_at=proof.issued_at)
    else:
        assert paralism_aid(owner) == proof.agent
        ours = sign_paralism_delegation(owner, op.public, issued_at=proof.issued_at)
    assert ours.to_bytes() == raw  # same message text, same RFC 6979 signature


def test_paralism_text_form_is_not_bip173() -> None:
    """a2ald prints bech32 of the bytes 0x00 ‖ hash (43 chars), not a segwit address (42)."""
    aid = Aid(b"\xa2" + bytes.fromhex("d5657399f4d4281c388f5ed9fd657567358d1d4e"))
    assert str(aid) == A2ALD_GENERATED["paralism"]["aid"]
    assert len(str(aid)) == 43
    d1 = Aid(b"\xa2" + bech32_decode_p2wpkh(BIP173_D1, ("bc",)))
    assert str(d1) == D1_PARALISM
    with pytest.raises(DecodeError, match=f"BIP-173 segwit address, a2al writes .* {D1_PARALISM}"):
        Aid.from_str(BIP173_D1)
