"""The re-encoding trap (a2al-wire §1.2) and the decoder's general path."""

from __future__ import annotations

import cbor2
import pytest

from a2al_mcp.errors import DecodeError, UsageError, VerificationError
from a2al_mcp.identity import Identity, SigningKey
from a2al_mcp.protocol import dht_messages as dm

TX = bytes(range(20))


def _signed_raw(key: SigningKey, header: dict[int, object], body: dict[int, object]) -> bytes:
    hb = cbor2.dumps(header, canonical=True)
    bb = cbor2.dumps(body, canonical=True)
    sig = key.sign(b"a2al-msg\x00" + hb + bb)
    return (
        b"\xa4\x01"
        + hb
        + b"\x02"
        + bb
        + b"\x03\x58\x20"
        + bytes(key.public)
        + b"\x04\x58\x40"
        + sig
    )


def test_extra_body_field_from_a_newer_peer_still_verifies(key_a: SigningKey) -> None:
    # like a2ald 0.3.5's STORE_RESP key 4, but a key nobody knows yet
    raw = _signed_raw(key_a, {1: 1, 2: 0, 3: 8, 4: TX}, {1: True, 9: ["future"]})
    msg = dm.decode_message(raw)
    msg.verify()
    assert msg.body == dm.StoreResp(stored=True)
    assert msg.to_bytes() != raw  # re-encoding would have lost the field: raw spans matter


def test_non_canonical_outer_layout_is_parsed(key_a: SigningKey, ident_a: Identity) -> None:
    good = dm.encode_message(dm.Ping(address=ident_a.aid), tx_id=TX, key=key_a)
    outer = cbor2.loads(good)
    # keys in reverse order plus an unknown outer key: the general path handles it
    shuffled = cbor2.dumps({9: "x", 4: outer[4], 3: outer[3], 2: outer[2], 1: outer[1]})
    msg = dm.decode_message(shuffled)
    msg.verify()
    assert msg.body == dm.Ping(address=ident_a.aid)


def test_ping_must_name_its_sender(key_a: SigningKey, key_b: SigningKey) -> None:
    other = Identity.from_key(key_b).aid
    data = dm.encode_message(dm.Ping(address=other), tx_id=TX, key=key_a)
    with pytest.raises(VerificationError, match="sender"):
        dm.decode_message(data).verify()


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        ({1: 1, 2: 0, 3: 0x0D, 4: TX}, {}, "unknown DHT msg_type"),
        ({1: 1, 2: 0, 3: 1, 4: TX[:16]}, {1: b"\xa0" * 21}, "20 bytes"),
        ({1: 1, 2: 0, 3: 1, 4: TX}, {1: b"\xa0" * 20}, "21 bytes"),
        ({1: 1, 2: 0, 3: 2, 4: TX}, {1: b"\xa0" * 21, 2: b"\x00" * 5}, "6 or 18"),
        ({1: 1, 2: 0, 3: 3, 4: TX}, {1: "x"}, "byte string"),
        ({1: 1, 2: 0, 3: 9, 4: TX}, {1: bytes(7), 2: bytes(6)}, "8 bytes"),
        ({1: 1, 2: 0, 3: 7, 4: TX}, {1: {}}, "21 bytes"),
    ],
)
def test_precise_decode_errors(
    key_a: SigningKey, header: dict[int, object], body: dict[int, object], message: str
) -> None:
    with pytest.raises(DecodeError, match=message):
        dm.decode_message(_signed_raw(key_a, header, body))


def test_encode_rejects_bad_tx_id(key_a: SigningKey, ident_a: Identity) -> None:
    with pytest.raises(UsageError, match="20 bytes"):
        dm.encode_message(dm.Ping(address=ident_a.aid), tx_id=bytes(16), key=key_a)


def test_garbage_and_truncation(key_a: SigningKey, ident_a: Identity) -> None:
    good = dm.encode_message(dm.Ping(address=ident_a.aid), tx_id=TX, key=key_a)
    for cut in range(len(good)):
        with pytest.raises(DecodeError):
            dm.decode_message(good[:cut])
    with pytest.raises(DecodeError):
        dm.decode_message(good + b"\x00")


def test_oversize_datagram_is_refused(key_a: SigningKey) -> None:
    from a2al_mcp.errors import LimitExceeded
    from a2al_mcp.identity import NodeId

    infos = tuple(
        dm.NodeInfo(address=Identity.from_key(key_a).aid, node_id=NodeId(bytes([i]) * 32),
                    ip=bytes(16), port=i)
        for i in range(16)
    )  # fmt: skip
    body = dm.FindNodeResp(nodes=infos, observed_addr=("127.0.0.1", 1))
    with pytest.raises(LimitExceeded, match="limit is 1200"):
        dm.encode_message(body, tx_id=TX, key=key_a)
