from __future__ import annotations

from typing import Any

import pytest

from a2al_mcp.errors import DecodeError
from a2al_mcp.identity import Aid, NodeId, SigningKey, VerifyKey
from a2al_mcp.identity.chain_text import paralism_bech32_encode


def test_vector_keys_aids_and_node_ids(vectors: dict[str, Any]) -> None:
    for who in ("a", "b"):
        key = SigningKey(bytes.fromhex(vectors[f"seed_{who}"]))
        assert bytes(key.public).hex() == vectors[f"pub_{who}"]
        aid = Aid.from_public_key(key.public)
        assert bytes(aid).hex() == vectors[f"aid_{who}"]
        assert str(aid) == vectors[f"aid_{who}_text"]
        assert str(aid.node_id) == vectors[f"node_id_{who}"]
        assert aid.matches_key(key.public)


def test_parse_accepts_checksummed_and_lowercase_only(vectors: dict[str, Any]) -> None:
    text = vectors["aid_a_text"]
    aid = Aid.from_str(text)
    assert Aid.from_str(text.lower()) == aid
    assert Aid.from_str(f"  {text}\n") == aid
    with pytest.raises(DecodeError, match="checksum"):
        Aid.from_str(text.upper())
    i = next(i for i, c in enumerate(text) if i > 0 and c.isalpha())
    flipped = text[:i] + text[i].swapcase() + text[i + 1 :]  # one letter's case flipped
    assert flipped != text
    with pytest.raises(DecodeError, match="checksum"):
        Aid.from_str(flipped)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "42 hex"),
        ("A056475aa75463474C0285df5Dbf2bcAB73Da651", "42 hex"),
        ("A056475aa75463474C0285df5Dbf2bcAB73Da6513500", "42 hex"),
        ("zz56475aa75463474c0285df5dbf2bcab73da65135", "non-hex"),
        ("b056475aa75463474c0285df5dbf2bcab73da65135", "version byte"),
        ("0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "EIP-55"),
        ("bc1qp63uahgrxged4z5jswyt5dn5v3lzsem6c0qqhg9", "checksum"),
        ("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3", "checksum"),
    ],
)
def test_parse_rejects_with_precise_errors(text: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        Aid.from_str(text)


def test_wrong_byte_lengths() -> None:
    with pytest.raises(DecodeError, match="21 bytes"):
        Aid(b"\xa0" * 20)
    with pytest.raises(DecodeError, match="32 bytes"):
        NodeId(b"\x00" * 31)
    with pytest.raises(DecodeError, match="32 bytes"):
        VerifyKey(b"\x00" * 33)
    with pytest.raises(DecodeError, match="32 bytes"):
        SigningKey(b"\x00" * 31)
    with pytest.raises(TypeError):
        Aid("a056475aa75463474c0285df5dbf2bcab73da65135")  # type: ignore[arg-type]


def test_ethereum_text_form_eip55() -> None:
    # EIP-55 reference vector
    addr = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    aid = Aid.from_str(addr)
    assert aid.version == 0xA3
    assert str(aid) == addr
    assert Aid.from_str(addr.lower()) == aid
    assert Aid.from_str("0X" + addr[2:]) == aid


def test_paralism_text_forms() -> None:
    # a2ald spells Paralism AIDs as bech32 of the *bytes* 0x00 ‖ hash20 (not BIP-173 segwit)
    text = "bc1qp63uahgrxged4z5jswyt5dn5v3lzsem6c0qqhg8"
    aid = Aid.from_str(text)
    assert aid.version == 0xA2
    assert aid.hash20.hex() == "751e76e8199196d454941c45d1b3a323f1433bd6"
    assert str(aid) == text
    assert Aid.from_str(text.upper()) == aid
    assert Aid.from_str(paralism_bech32_encode("pr", aid.hash20)) == aid
    # Base58Check P2PKH of the same hash
    assert Aid.from_str("1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH") == aid
    # the BIP-173 segwit spelling of the same hash is a different string, refused with a hint
    with pytest.raises(DecodeError, match="BIP-173"):
        Aid.from_str("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4")


def test_node_id_metric() -> None:
    a = NodeId(b"\x00" * 32)
    b = NodeId(b"\x00" * 31 + b"\x01")
    c = NodeId(b"\x80" + b"\x00" * 31)
    assert a.common_prefix_len(a) == 256
    assert a.common_prefix_len(b) == 255
    assert a.common_prefix_len(c) == 0
    assert a.distance(b) == 1
    assert sorted([c, b, a]) == [a, b, c]
    assert NodeId.from_hex(str(c)) == c


def test_aid_is_a_value_object(vectors: dict[str, Any]) -> None:
    a = Aid.from_str(vectors["aid_a_text"])
    b = Aid.from_str(vectors["aid_b_text"])
    assert {a, Aid(bytes(a))} == {a}
    assert sorted([a, b]) == [b, a]  # a024… < a056…
    assert a.short().startswith("A056475a")


def test_x25519_conversion(vectors: dict[str, Any], key_b: SigningKey) -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    assert key_b.public.to_x25519().hex() == vectors["mailbox"]["x25519_pub_b"]
    priv = X25519PrivateKey.from_private_bytes(key_b.to_x25519())
    assert priv.public_key().public_bytes_raw() == key_b.public.to_x25519()


def test_go_private_key_form(key_a: SigningKey) -> None:
    go = key_a.go_bytes()
    assert len(go) == 64
    assert SigningKey.from_go_bytes(go).public == key_a.public
    with pytest.raises(DecodeError, match="does not match"):
        SigningKey.from_go_bytes(go[:32] + bytes(32))
