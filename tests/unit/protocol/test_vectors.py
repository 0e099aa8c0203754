"""Every vector of a2al-wire §9, byte for byte."""

from __future__ import annotations

from typing import Any

from a2al_mcp import _cbor
from a2al_mcp._types import Addr
from a2al_mcp.identity import Aid, Identity, NodeId, SigningKey
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol import session_frames as sf
from a2al_mcp.protocol.payloads import EndpointPayload, MailboxPayload, topic_key
from a2al_mcp.protocol.records import SignedRecord

LOOPBACK: Addr = ("127.0.0.1", 4121)


def test_topic_keys(vectors: dict[str, Any]) -> None:
    for topic, key in vectors["topic_keys"].items():
        assert topic_key(topic).hex() == key


def test_ping(vectors: dict[str, Any], key_a: SigningKey, ident_a: Identity) -> None:
    v = vectors["ping"]
    data = dm.encode_message(
        dm.Ping(address=ident_a.aid), tx_id=bytes.fromhex(v["tx_id"]), key=key_a
    )
    assert data.hex() == v["datagram"]
    assert len(data) == 158
    msg = dm.decode_message(data)
    msg.verify()
    assert msg.signature.hex() == v["signature"]
    assert msg.signed == b"a2al-msg\x00" + bytes.fromhex(v["header"] + v["body"])
    assert msg.sender == ident_a.aid


def test_bodies(vectors: dict[str, Any], ident_a: Identity, ident_b: Identity) -> None:
    v = vectors["bodies"]
    node_b = NodeId(bytes.fromhex(vectors["node_id_b"]))
    cases: list[tuple[dm.Body, str]] = [
        (dm.Pong(address=ident_b.aid, observed_addr=LOOPBACK), "pong_b_127.0.0.1:4121"),
        (dm.FindValue(target=node_b, rec_type=1), "find_value_b_type1"),
        (dm.FindValue(target=node_b), "find_value_b_type0"),
        (dm.StoreResp(stored=True), "store_resp_stored"),
        (dm.StoreResp(stored=True, already_had=True), "store_resp_already_had"),
        (dm.StoreResp(stored=False, reason=dm.StoreReason.POLICY), "store_resp_policy"),
    ]
    for body, name in cases:
        assert dm.encode_body(body).hex() == v[name], name
        assert dm.decode_body(body.MSG_TYPE, bytes.fromhex(v[name])) == body
    info = dm.NodeInfo.of(ident_a.aid, LOOPBACK)
    assert _cbor.dumps(info.to_map()).hex() == v["node_info_a_127.0.0.1:4121"]
    assert info.addr == LOOPBACK


def test_endpoint_record(vectors: dict[str, Any], ident_a: Identity) -> None:
    v = vectors["endpoint_record"]
    payload = EndpointPayload(endpoints=("quic://127.0.0.1:4121",)).to_bytes()
    assert payload.hex() == v["payload"]
    rec = SignedRecord.sign(ident_a, 1, payload, seq=1, timestamp=1_700_000_000, ttl=3600)
    assert rec.signed_bytes() == b"a2al-rec\x00" + bytes.fromhex(v["signed_fields"])
    assert rec.signature.hex() == v["signature"]
    assert rec.to_bytes().hex() == v["record"]
    decoded = SignedRecord.from_bytes(bytes.fromhex(v["record"]))
    assert decoded == rec
    decoded.validate(1_700_000_000, key=bytes(ident_a.aid.node_id))


def test_mailbox_payload(vectors: dict[str, Any], ident_a: Identity, key_b: SigningKey) -> None:
    from a2al_mcp.protocol.mailbox_crypto import open_note

    v = vectors["mailbox"]
    payload = MailboxPayload.from_bytes(bytes.fromhex(v["payload"]))
    assert payload.to_bytes().hex() == v["payload"]
    assert payload.sender == ident_a.aid
    assert payload.ephemeral_pk.hex() == v["ephemeral_public"]
    assert payload.ciphertext.hex() == v["ciphertext"]
    note = open_note(payload, own_aid=Aid.from_public_key(key_b.public), own_key=key_b)
    assert (note.msg_type, note.body) == (3, b"hello")
    import hashlib

    assert hashlib.sha256(payload.to_bytes()).hexdigest() == v["msg_id"]


def test_frames(vectors: dict[str, Any], ident_b: Identity) -> None:
    v = vectors["frames"]
    assert sf.RouteFrame(ident_b.aid).to_bytes().hex() == v["route_a2r2_b"]
    assert sf.RouteFrame.from_bytes(bytes.fromhex(v["route_a2r2_b"])).target == ident_b.aid
    assert sf.agent_info_hint(ident_b.aid, 0).to_bytes().hex() == v["agent_info_hint_b"]
    observed = sf.ControlMessage(sf.ControlType.OBSERVED_ADDR, _addr_bytes(LOOPBACK))
    assert observed.to_bytes().hex() == v["observed_addr_127.0.0.1:4121"]
    assert sf.admission_preamble().hex() == v["admission_preamble"]
    assert sf.access_result(True).to_bytes().hex() == v["access_admitted"]


def _addr_bytes(addr: Addr) -> bytes:
    from a2al_mcp.protocol.wireaddr import encode_addr

    return encode_addr(addr)
