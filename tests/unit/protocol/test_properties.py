"""Hypothesis: decoders return or raise DecodeError, never anything else; encode→decode
round-trips for every type; canonical bytes are stable under re-encoding."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import cbor2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from a2al_mcp import _cbor
from a2al_mcp.errors import DecodeError, LimitExceeded
from a2al_mcp.identity import Aid, DelegationProof, Identity, NodeId, SigningKey
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol import limits
from a2al_mcp.protocol import session_frames as sf
from a2al_mcp.protocol.payloads import (
    AgentProfilePayload,
    EndpointPayload,
    MailboxPayload,
    TopicPayload,
)
from a2al_mcp.protocol.records import SignedRecord

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = SigningKey(bytes(range(32)))
IDENT = Identity.from_key(KEY)

DECODERS = [
    _cbor.loads,
    dm.decode_message,
    SignedRecord.from_bytes,
    DelegationProof.from_bytes,
    EndpointPayload.from_bytes,
    TopicPayload.from_bytes,
    AgentProfilePayload.from_bytes,
    MailboxPayload.from_bytes,
    sf.RouteFrame.from_bytes,
    lambda d: Aid.from_str(d.decode("latin-1")),
    lambda d: sf.ControlReader().feed(d),
    lambda d: sf.MailboxFrameReader().feed(d),
] + [lambda d, t=t: dm.decode_body(t, d) for t in range(14)]


def _only_decode_error(data: bytes) -> None:
    for decode in DECODERS:
        with contextlib.suppress(DecodeError):
            decode(data)


@SETTINGS
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    _only_decode_error(data)


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.binary(max_size=40)
    | st.text(max_size=20) | st.floats(),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.integers(0, 12) | st.text(max_size=3), inner, max_size=6),
    max_leaves=30,
)  # fmt: skip


@SETTINGS
@given(cbor_values)
def test_well_formed_cbor_of_any_shape(value: Any) -> None:
    """Valid CBOR with wrong types in every position: still only DecodeError."""
    _only_decode_error(cbor2.dumps(value, canonical=True))


@SETTINGS
@given(st.dictionaries(st.integers(1, 4), cbor_values, max_size=4))
def test_outer_message_shapes(outer: dict[int, Any]) -> None:
    _only_decode_error(cbor2.dumps(outer, canonical=True))


@SETTINGS
@given(st.binary(min_size=1, max_size=400), st.integers(0, 399))
def test_mutated_real_message(noise: bytes, at: int) -> None:
    good = dm.encode_message(dm.Ping(address=IDENT.aid), tx_id=bytes(20), key=KEY)
    at %= len(good)
    _only_decode_error(good[:at] + noise + good[at + len(noise) :])
    _only_decode_error(good[:at])


# ---------------------------------------------------------------- round trips

aids = st.binary(min_size=20, max_size=20).map(lambda h: Aid(b"\xa0" + h))
node_ids = st.binary(min_size=32, max_size=32).map(NodeId)
u64 = st.integers(0, 2**64 - 1)
texts = st.text(max_size=12)
addrs = st.one_of(
    st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 65535)),
    st.tuples(
        st.ip_addresses(v=6).filter(lambda ip: ip.ipv4_mapped is None).map(str),
        st.integers(0, 65535),
    ),
)
records = st.builds(
    SignedRecord,
    address=aids,
    rec_type=st.integers(0, 255),
    payload=st.binary(max_size=60),
    seq=u64,
    timestamp=u64,
    ttl=st.integers(0, 2**32 - 1),
    pubkey=st.binary(min_size=32, max_size=32),
    signature=st.binary(min_size=64, max_size=64),
    delegation=st.binary(max_size=30),
)
node_infos = st.builds(
    dm.NodeInfo,
    address=aids,
    node_id=node_ids,
    ip=st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16),
    port=st.integers(0, 65535),
)
hints = st.builds(
    dm.ReceivePoolHint,
    rec_type=st.integers(0, 255),
    count=st.integers(0, 65535),
    ids=st.lists(st.binary(min_size=32, max_size=32), max_size=3).map(tuple),
)
bodies = st.one_of(
    st.builds(dm.Ping, address=aids),
    st.builds(dm.Pong, address=aids, observed_addr=addrs),
    st.builds(dm.FindNode, target=node_ids),
    st.builds(dm.FindNodeResp, nodes=st.lists(node_infos, max_size=3).map(tuple),
              observed_addr=addrs),
    st.builds(dm.FindValue, target=node_ids, rec_type=st.integers(0, 255),
              one_shot_subscribe=st.booleans()),
    st.builds(dm.FindValueResp, nodes=st.lists(node_infos, max_size=2).map(tuple),
              observed_addr=addrs, records=st.lists(records, max_size=2).map(tuple),
              record=st.none() | records),
    st.builds(dm.Store, record=records, key=st.none() | node_ids),
    st.builds(dm.StoreResp, stored=st.booleans(), already_had=st.booleans(),
              reason=st.integers(0, 255), pool=st.lists(hints, max_size=2).map(tuple)),
    st.builds(dm.NatProbeReq, token=st.binary(min_size=8, max_size=8), claimed_addr=addrs),
    st.builds(dm.NatProbeEcho, token=st.binary(min_size=8, max_size=8)),
    st.builds(dm.DhtPush, key=node_ids, record=records),
    st.builds(dm.DhtPushAck, key=node_ids, msg_id=st.binary(min_size=32, max_size=32),
              one_shot_subscribe=st.booleans()),
)  # fmt: skip


@SETTINGS
@given(bodies, st.binary(min_size=20, max_size=20))
def test_message_round_trip(body: dm.Body, tx_id: bytes) -> None:
    if isinstance(body, dm.Ping | dm.Pong):  # these must name the sender
        body = dataclasses.replace(body, address=IDENT.aid)
    try:
        data = dm.encode_message(body, tx_id=tx_id, key=KEY)
    except LimitExceeded:
        assert len(dm.encode_body(body)) > limits.MAX_DATAGRAM - 140  # header+key+sig ≈ 140
        assume(False)
    msg = dm.decode_message(data)
    msg.verify()
    assert msg.body == body
    assert msg.tx_id == tx_id
    assert msg.to_bytes() == data
    # canonical bytes are stable: decoding with cbor2 and re-encoding canonically is identity
    assert cbor2.dumps(cbor2.loads(data), canonical=True) == data


@SETTINGS
@given(records)
def test_record_round_trip(rec: SignedRecord) -> None:
    data = rec.to_bytes()
    assert SignedRecord.from_bytes(data) == rec
    assert cbor2.dumps(cbor2.loads(data), canonical=True) == data


@SETTINGS
@given(
    st.lists(texts, max_size=3).map(tuple),
    st.integers(0, 4),
    texts,
    st.lists(texts, max_size=3).map(tuple),
)
def test_endpoint_payload_round_trip(
    endpoints: tuple[str, ...], nat: int, signal: str, signals: tuple[str, ...]
) -> None:
    p = EndpointPayload(endpoints=endpoints, nat_type=nat, signal=signal, signals=signals)
    assert EndpointPayload.from_bytes(p.to_bytes()) == p


@SETTINGS
@given(
    st.text(min_size=1, max_size=20),
    texts,
    st.lists(texts, max_size=3).map(tuple),
    st.lists(texts, max_size=3).map(tuple),
    st.text(max_size=30),
    # CBOR ints only: wider ones would need a bignum tag, which A2AL refuses
    st.dictionaries(
        st.text(max_size=5), st.integers(-(2**64), 2**64 - 1) | st.text(max_size=5), max_size=3
    ),
)
def test_topic_payload_round_trip(
    topic: str, name: str, protocols: tuple[str, ...], tags: tuple[str, ...], brief: str,
    meta: dict[str, Any],
) -> None:  # fmt: skip
    p = TopicPayload(topic=topic, name=name, protocols=protocols, tags=tags, brief=brief, meta=meta)
    assert TopicPayload.from_bytes(p.to_bytes()) == p


@SETTINGS
@given(texts, texts, st.lists(texts, max_size=3).map(tuple), st.binary(max_size=32))
def test_profile_round_trip(name: str, brief: str, skills: tuple[str, ...], card: bytes) -> None:
    p = AgentProfilePayload(name=name, brief=brief, skills=skills, card_hash=card)
    assert AgentProfilePayload.from_bytes(p.to_bytes()) == p


@SETTINGS
@given(aids, aids, st.binary(min_size=32, max_size=32), st.binary(max_size=100),
       st.binary(min_size=12, max_size=12))  # fmt: skip
def test_mailbox_payload_round_trip(r: Aid, s: Aid, eph: bytes, ct: bytes, nonce: bytes) -> None:
    p = MailboxPayload(recipient=r, sender=s, ephemeral_pk=eph, ciphertext=ct, nonce=nonce)
    assert MailboxPayload.from_bytes(p.to_bytes()) == p


@SETTINGS
@given(u64, u64, st.integers(0, 10))
def test_delegation_round_trip(issued: int, expires: int, scope: int) -> None:
    op = SigningKey(bytes(range(32, 64)))
    p = DelegationProof.create(KEY, op.public, issued_at=issued, expires_at=expires, scope=scope)
    assert DelegationProof.from_bytes(p.to_bytes()) == p


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=300)), max_size=6),
       st.integers(1, 7))  # fmt: skip
def test_control_messages_any_chunking(msgs: list[tuple[int, bytes]], chunk: int) -> None:
    stream = b"".join(sf.ControlMessage(t, p).to_bytes() for t, p in msgs)
    reader = sf.ControlReader()
    got: list[sf.ControlMessage] = []
    for i in range(0, len(stream), chunk):
        got += reader.feed(stream[i : i + chunk])
    assert [(m.type, m.payload) for m in got] == msgs
    assert reader.pending == 0
