"""Fuzz: hostile datagrams on the shared UDP socket (issue 14, "fuzzing that stays").

Arbitrary bytes, mutated real a2ald datagrams and validly signed messages with hostile bodies
go into :func:`demux.classify`, the DHT message decoder and a real sans-I/O
:class:`~a2al_mcp.dht.core.DhtCore` in virtual time. The decoder may only raise DecodeError;
the core never raises, and its counters account for every datagram it does not use. A bit
flip anywhere in a signed message (or in a signed record it carries) is never accepted.

Example counts come from ``tests/fuzz/fuzzcfg.py`` (``A2AL_MCP_FUZZ_EXAMPLES``; long mode:
set it high).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from a2al_mcp import _cbor
from a2al_mcp._random import SeededRng
from a2al_mcp.dht import events as ev
from a2al_mcp.dht.core import MAX_RECEIVE, DhtCore
from a2al_mcp.dht.lookup import LookupKind
from a2al_mcp.errors import A2ALError, DecodeError, VerificationError
from a2al_mcp.identity import Aid, Identity, NodeId, SigningKey
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol.payloads import EndpointPayload, TopicPayload
from a2al_mcp.protocol.records import SignedRecord
from a2al_mcp.transport import demux
from tests.conftest import load_captures
from tests.fuzz.fuzzcfg import cbor_scalars, fuzz_settings
from tests.fuzz.fuzzcfg import cbor_values as fuzzcfg_cbor_values

WALL = 1_780_000_000.0
"""Virtual Unix time of the core (records are dated around it)."""
NODE = Identity.from_key(SigningKey(hashlib.sha256(b"fuzz node").digest()))
ATTACKER = Identity.from_key(SigningKey(hashlib.sha256(b"fuzz attacker").digest()))
CAPTURES = [bytes.fromhex(r["hex"]) for r in load_captures("dht")]
QUIC_CAPTURES = [bytes.fromhex(r["hex"]) for r in load_captures("quic")]
SOURCES = [("127.0.0.1", 40000 + i) for i in range(4)] + [("::1", 40100), ("10.1.2.3", 9)]

# ------------------------------------------------------------------------- helpers


def _new_core() -> DhtCore:
    return DhtCore(NODE, rng=SeededRng(7), wall_offset=WALL)


_COUNTED = (
    "requests_answered",
    "responses_matched",
    "dropped_decode",
    "dropped_verify",
    "dropped_oversize",
    "dropped_unsolicited",
    "dropped_rate_limited",
)


def _handled(core: DhtCore) -> dict[str, int]:
    s = core.statistics()
    return {name: getattr(s, name) for name in (*_COUNTED, "received")}


def _feed(core: DhtCore, data: bytes, addr: tuple[str, int], now: float) -> str:
    """Feed one datagram; check the core took it without raising and that exactly one counter
    (besides ``received``) moved. Returns the name of that counter."""
    before = _handled(core)
    core.receive_datagram(data, addr, now)  # must never raise
    after = _handled(core)
    assert after["received"] == before["received"] + 1
    moved = [n for n in _COUNTED if after[n] != before[n]]
    assert all(after[n] == before[n] + 1 for n in moved), (moved, before, after)
    assert len(moved) == 1, f"datagram neither used nor counted once: {moved} {data.hex()}"
    return moved[0]


def _sign_raw(
    msg_type: int, body: bytes, *, key: SigningKey, tx_id: bytes = bytes(20), version: int = 1
) -> bytes:
    """A validly signed DHT datagram around any body bytes (not necessarily a valid body)."""
    header = _cbor.dumps({1: version, 2: 0, 3: msg_type, 4: tx_id})
    sig = key.sign(dm.MESSAGE_PREFIX + header + body)
    return dm._assemble(header, body, bytes(key.public), sig)


@functools.lru_cache(maxsize=64)
def _key_for(addr: tuple[str, int]) -> Identity:
    return Identity.from_key(SigningKey(hashlib.sha256(repr(addr).encode()).digest()))


# --------------------------------------------------------------------- strategies

cbor_values = fuzzcfg_cbor_values(
    cbor_scalars | st.sampled_from([b"", bytes(21), b"\xa0" + bytes(20), bytes(32), bytes(64)])
)
aids = st.binary(min_size=20, max_size=20).map(lambda h: Aid(b"\xa0" + h))
node_ids = st.binary(min_size=32, max_size=32).map(NodeId)
hostile_addrs = st.sampled_from(
    [
        ("0.0.0.0", 0),
        ("255.255.255.255", 65535),
        ("224.0.0.1", 1),
        ("127.0.0.1", 40001),
        ("::", 0),
        ("::ffff:1.2.3.4", 5),
        ("fe80::1", 80),
        ("2001:db8::1", 443),
    ]
)


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` with a few random edits: bit flips, byte sets, inserts, deletes, truncation,
    a splice of another capture."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0x17, 0x18, 0x1B, 0x1F, 0x5B, 0x7F, 0x9F,
                                             0xBF, 0xFF, draw(st.integers(0, 255))]))  # fmt: skip
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[at:]
        elif op == "splice":
            other = draw(st.sampled_from(CAPTURES))
            cut = draw(st.integers(0, len(other)))
            data[at:] = other[cut:]
    return bytes(data)


captured_mutants = st.sampled_from(CAPTURES).flatmap(mutated)
datagrams = st.one_of(
    st.binary(max_size=1500),
    captured_mutants,
    st.sampled_from(CAPTURES),
    st.sampled_from(QUIC_CAPTURES).flatmap(mutated),
    cbor_values.map(lambda v: cbor2.dumps(v, canonical=True)),
)

# ------------------------------------------------------------------------ demux


def test_captures_classify_as_recorded() -> None:
    assert CAPTURES and QUIC_CAPTURES
    assert {demux.classify(d) for d in CAPTURES} == {demux.Kind.DHT}
    assert {demux.classify(d) for d in QUIC_CAPTURES} == {demux.Kind.QUIC}


@fuzz_settings(scale=5)
@given(st.binary(max_size=1500) | captured_mutants)
def test_classify_is_total_and_follows_the_spec_order(data: bytes) -> None:
    kind = demux.classify(data)
    if not data:
        assert kind is None
    elif data[:2] == demux.ECHO_PREFIX:
        assert kind is demux.Kind.ECHO
        assert demux.echo_reply(data) == data
    elif len(data) >= 20 and data[0] < 0x40 and data[4:8] == demux.STUN_MAGIC_COOKIE:
        assert kind is demux.Kind.STUN
    elif data[0] & 0x40:
        assert kind is demux.Kind.QUIC
    else:
        assert kind is demux.Kind.DHT


# ---------------------------------------------------------------------- decoder


def _decode_only_decode_error(data: bytes) -> dm.Message | None:
    try:
        return dm.decode_message(data)
    except DecodeError:
        return None


@fuzz_settings(scale=2)
@given(datagrams)
def test_decoder_raises_only_decode_error(data: bytes) -> None:
    msg = _decode_only_decode_error(data)
    if msg is not None:
        with contextlib.suppress(VerificationError):
            msg.verify()
        # what decodes re-encodes, and the re-encoding decodes to the same message
        again = dm.decode_message(msg.to_bytes())
        assert again.body == msg.body and again.tx_id == msg.tx_id


@fuzz_settings()
@given(st.integers(0, 0x0F), cbor_values, st.binary(min_size=20, max_size=20))
def test_decoder_on_signed_hostile_bodies(msg_type: int, body: Any, tx_id: bytes) -> None:
    data = _sign_raw(msg_type, cbor2.dumps(body, canonical=True), key=ATTACKER.key, tx_id=tx_id)
    msg = _decode_only_decode_error(data)
    if msg is not None:
        with contextlib.suppress(VerificationError):
            msg.verify()


# ------------------------------------------------------------------------- core


@fuzz_settings()
@given(st.lists(st.tuples(datagrams, st.sampled_from(SOURCES)), min_size=1, max_size=8))
def test_core_never_raises_and_counts_every_datagram(
    batch: list[tuple[bytes, tuple[str, int]]],
) -> None:
    core = _new_core()
    now = 1.0
    for data, addr in batch:
        _feed(core, data, addr, now)
        now += 0.25
        core.handle_timer(now)
        core.datagrams_to_send(now)
    assert core.statistics().received == len(batch)


def test_core_counts_oversize_datagrams() -> None:
    core = _new_core()
    assert _feed(core, b"\xa4" + bytes(MAX_RECEIVE), SOURCES[0], 1.0) == "dropped_oversize"


def _padded_ping(size: int) -> bytes:
    """A validly signed PING of exactly ``size`` bytes (padding in an unknown body key)."""
    for pad in range(size):
        body = cbor2.dumps({1: bytes(ATTACKER.aid), 9: bytes(pad)}, canonical=True)
        raw = _sign_raw(dm.MsgType.PING, body, key=ATTACKER.key, tx_id=b"p" * 20)
        if len(raw) >= size:
            assert len(raw) == size, "no padding hits the size exactly"
            return raw
    raise AssertionError(size)


def test_datagrams_longer_than_any_sender_writes_are_dropped_before_decoding() -> None:
    """a2ald's transports refuse to send DHT datagrams over 1200 bytes (a2al-wire §4.1), and
    so does our encoder: a longer one is nobody's DHT message. At 45ad18d the core decoded and
    verified anything up to 64 KiB (and answered this PING)."""
    core = _new_core()
    assert _feed(core, _padded_ping(1200), SOURCES[0], 1.0) == "requests_answered"
    assert _feed(core, _padded_ping(1201), SOURCES[1], 1.0) == "dropped_oversize"
    assert core.statistics().dropped_oversize == 1


def _records(draw: Callable[[st.SearchStrategy[Any]], Any]) -> dict[int, Any]:
    """A record map: validly signed with a hostile payload, or a valid one with one hostile
    field, or any CBOR value."""
    signer = draw(st.sampled_from([ATTACKER, NODE, _key_for(SOURCES[0])]))
    rec_type = draw(st.sampled_from([0x01, 0x02, 0x10, 0x11, 0x80, 0x8F, 0x03, 0x1F]))
    payload = draw(
        st.one_of(
            cbor_values.map(lambda v: cbor2.dumps(v, canonical=True)),
            st.binary(max_size=700),
            st.just(EndpointPayload(endpoints=("quic://[::1", "quic://h:99999")).to_bytes()),
            st.builds(
                lambda t, b: TopicPayload(topic=t or "x", brief=b[:140]).to_bytes(),
                st.text(max_size=30),
                st.text(max_size=30),
            ),
        )
    )
    ts = int(WALL) + draw(st.sampled_from([0, -4000, 59, 61, -(2**31)]))
    ttl = draw(st.sampled_from([1, 3600, 7200, 2**32 - 1]))
    rec = SignedRecord.sign(signer, rec_type, payload, seq=draw(st.integers(0, 2**64 - 1)),
                            timestamp=max(0, ts), ttl=ttl).to_map()  # fmt: skip
    if draw(st.booleans()):
        rec[draw(st.integers(1, 10))] = draw(cbor_values)
    return rec


@st.composite
def hostile_requests(draw: st.DrawFn) -> bytes:
    """A request signed validly by the attacker whose body is a real body with hostile
    values, or any CBOR map, under any message type."""
    msg_type = draw(st.sampled_from([*dm.MsgType, 0, 0x0D, 0xFF]))
    shape = draw(st.sampled_from(["any", "store", "push", "find", "ping"]))
    body: Any
    if shape == "any":
        body = draw(cbor_values)
    elif shape in ("store", "push"):
        key = draw(st.none() | st.binary(max_size=33) | st.just(bytes(32)))
        rec = _records(draw)
        body = {1: rec, 2: key} if shape == "store" else {1: key, 2: rec}
        msg_type = dm.MsgType.STORE if shape == "store" else dm.MsgType.DHT_PUSH
    elif shape == "find":
        msg_type = draw(st.sampled_from([dm.MsgType.FIND_NODE, dm.MsgType.FIND_VALUE]))
        body = {1: draw(st.binary(min_size=32, max_size=32)), 2: draw(st.integers(0, 255)),
                3: draw(st.booleans())}  # fmt: skip
    else:
        msg_type = dm.MsgType.PING
        body = {1: bytes(draw(aids | st.just(ATTACKER.aid)))}
    tx_id = draw(st.binary(min_size=20, max_size=20) | st.just(b"\xa2\x01" + bytes(18)))
    raw = cbor2.dumps(body, canonical=True)
    return _sign_raw(msg_type, raw, key=ATTACKER.key, tx_id=tx_id)


@fuzz_settings()
@given(st.lists(st.tuples(hostile_requests(), st.sampled_from(SOURCES)), min_size=1, max_size=6))
def test_core_survives_signed_hostile_requests(batch: list[tuple[bytes, tuple[str, int]]]) -> None:
    core = _new_core()
    now = 1.0
    for data, addr in batch:
        _feed(core, data, addr, now)
        for out, dst in core.datagrams_to_send(now):
            assert len(out) <= 1200
            assert dst in SOURCES or dst[0] in ("127.0.0.1", "::1", "10.1.2.3")
        now += 0.1
    # everything the core stored is valid at the time it was stored
    s = core.statistics()
    assert s.stored_records >= 0 and s.stored_keys <= s.stored_records


def _response_body(draw: Callable[[st.SearchStrategy[Any]], Any], expect: dm.MsgType) -> Any:
    """A hostile body for a response of type ``expect``."""
    if draw(st.integers(0, 3)) == 0:
        return draw(cbor_values)
    node_info = st.builds(
        lambda a, n, ip, port, same: {
            1: bytes(a),
            2: bytes(a.node_id) if same else bytes(n),
            3: ip,
            4: port,
        },
        aids,
        node_ids,
        st.sampled_from(
            [b"\x7f\x00\x00\x01", bytes(4), b"\xff" * 4, bytes(16), b"\x01" * 16, b"\x00" * 3]
        ),
        st.integers(0, 65535) | st.just(-1) | st.just(70000),
        st.booleans(),
    )
    observed = draw(st.binary(max_size=19) | st.just(b"\x7f\x00\x00\x01\x00\x50"))
    if expect is dm.MsgType.PONG:
        return {1: draw(st.binary(max_size=22)), 2: observed}
    if expect is dm.MsgType.STORE_RESP:
        return {1: draw(st.booleans()), 3: draw(st.integers(0, 300)),
                4: draw(st.lists(cbor_values, max_size=2))}  # fmt: skip
    nodes = draw(st.lists(node_info, max_size=16))
    body: dict[int, Any] = {1: nodes, 3 if expect is dm.MsgType.FIND_VALUE_RESP else 2: observed}
    if expect is dm.MsgType.FIND_VALUE_RESP:
        body[4] = [_records(draw) for _ in range(draw(st.integers(0, 3)))]
        if draw(st.booleans()):
            body[2] = _records(draw)
    return body


@fuzz_settings(scale=0.5)
@given(st.data())
def test_core_survives_hostile_responses_to_its_own_lookups(data: st.DataObject) -> None:
    """The core bootstraps, looks up and publishes; every request it sends is answered (or
    not) by a hostile peer with a validly signed response of any shape, matching tx_id."""
    core = _new_core()
    now = 1.0
    seed = SOURCES[0]
    core.bootstrap([seed], now)
    core.lookup(NodeId(hashlib.sha256(b"t").digest()), LookupKind.ALL, now, rec_type=0x10)
    rec = SignedRecord.sign(NODE, 1, EndpointPayload(endpoints=("quic://127.0.0.1:1",)).to_bytes(),
                            seq=1, timestamp=int(WALL))  # fmt: skip
    core.publish(rec, NODE.aid.node_id, now)
    for _ in range(data.draw(st.integers(1, 6), label="rounds")):
        for out, dst in core.datagrams_to_send(now):
            try:
                req = dm.decode_verified(out)
            except A2ALError:  # pragma: no cover - the core sends only what it can decode
                pytest.fail(f"the core sent an undecodable datagram {out.hex()}")
            if req.msg_type not in (dm.MsgType.PING, dm.MsgType.FIND_NODE,
                                    dm.MsgType.FIND_VALUE, dm.MsgType.STORE):  # fmt: skip
                continue
            expect = {dm.MsgType.PING: dm.MsgType.PONG, dm.MsgType.FIND_NODE:
                      dm.MsgType.FIND_NODE_RESP, dm.MsgType.FIND_VALUE:
                      dm.MsgType.FIND_VALUE_RESP, dm.MsgType.STORE: dm.MsgType.STORE_RESP}[
                req.msg_type]  # fmt: skip
            action = data.draw(st.sampled_from(["hostile", "pong", "drop", "wrong-type"]))
            if action == "drop":
                continue
            peer = _key_for(dst)
            if action == "pong" and expect is dm.MsgType.PONG:
                body: Any = {1: bytes(peer.aid), 2: b"\x7f\x00\x00\x01\x00\x50"}
            else:
                body = _response_body(data.draw, expect)
            mtype = (
                expect if action != "wrong-type" else data.draw(st.sampled_from(list(dm.MsgType)))
            )
            raw = _sign_raw(mtype, cbor2.dumps(body, canonical=True), key=peer.key,
                            tx_id=req.tx_id)  # fmt: skip
            src = dst if data.draw(st.integers(0, 4)) else SOURCES[-1]
            _feed(core, raw, src, now)
        now += data.draw(st.sampled_from([0.05, 1.0, 5.0]))
        core.handle_timer(now)
        while core.next_event() is not None:
            pass
    assert core.statistics().received >= 0


# ------------------------------------------------------------------ bit flips


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _signed_messages() -> list[bytes]:
    """Valid signed datagrams: every capture (a2ald's keys) that verifies."""
    out = []
    for d in CAPTURES:
        with contextlib.suppress(A2ALError):
            dm.decode_verified(d)
            out.append(d)
    return out


SIGNED = _signed_messages()


def test_the_captures_verify_and_reencode_byte_identically() -> None:
    """a2al-wire §4.2: every captured a2ald datagram verifies and re-encodes to its bytes
    (decode→encode is canonical for what a2ald sends)."""
    assert len(SIGNED) == len(CAPTURES)
    for d in CAPTURES:
        assert dm.decode_message(d).to_bytes() == d


@fuzz_settings(scale=2)
@given(st.sampled_from(SIGNED), st.integers(0, 2**20))
def test_a_bit_flip_in_a_signed_message_is_never_accepted(good: bytes, at: int) -> None:
    bad = _flip(good, at % (len(good) * 8))
    with pytest.raises((DecodeError, VerificationError)):
        dm.decode_verified(bad)
    core = _new_core()
    assert _feed(core, bad, SOURCES[1], 1.0) in ("dropped_decode", "dropped_verify")
    assert core.datagrams_to_send(1.0) == []


_REC_FIELD_SIZES = {1: 21, 3: None, 7: 32, 8: 64}


@fuzz_settings()
@given(st.sampled_from([0x01, 0x10, 0x80]), st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8]),
       st.integers(0, 2**16), st.booleans())  # fmt: skip
def test_a_bit_flip_in_a_stored_record_is_refused(
    rec_type: int, field: int, bit: int, as_push: bool
) -> None:
    """A STORE (or DHT_PUSH) whose outer message is validly signed by the sender but whose
    record has one flipped bit in a signed field: the store stays empty, no event fires."""
    payload = {
        0x01: EndpointPayload(endpoints=("quic://127.0.0.1:5",)).to_bytes(),
        0x10: TopicPayload(topic="fuzz.topic", name="n").to_bytes(),
        0x80: b"\xa0",
    }[rec_type]
    rec = SignedRecord.sign(ATTACKER, rec_type, payload, seq=5, timestamp=int(WALL))
    m = rec.to_map()
    value = m[field]
    if isinstance(value, bytes):
        value = _flip(value, bit % (len(value) * 8)) if value else b"\x00"
    else:
        value ^= 1 << (bit % (8 if field == 2 else 32))
    m[field] = value
    key = bytes(ATTACKER.aid.node_id) if rec_type != 0x10 else hashlib.sha256(b"topic:x").digest()
    body = {1: m, 2: key} if not as_push else {1: key, 2: m}
    mtype = dm.MsgType.STORE if not as_push else dm.MsgType.DHT_PUSH
    raw = _sign_raw(mtype, cbor2.dumps(body, canonical=True), key=ATTACKER.key,
                    tx_id=bytes(range(20)))  # fmt: skip
    core = _new_core()
    moved = _feed(core, raw, SOURCES[2], 1.0)
    events = []
    while (e := core.next_event()) is not None:
        events.append(e)
    assert core.statistics().stored_records == 0
    assert events == []
    if as_push:
        assert moved in ("dropped_decode", "dropped_verify")
    else:
        assert moved in ("dropped_decode", "requests_answered")
        for out, _dst in core.datagrams_to_send(1.0):
            resp = dm.decode_verified(out)
            assert isinstance(resp.body, dm.StoreResp) and not resp.body.stored


@pytest.mark.parametrize("msg_type", [dm.MsgType.NAT_PROBE_REQ, dm.MsgType.NAT_PROBE_ECHO])
def test_a_nat_probe_becomes_an_event_and_the_core_sends_nothing(msg_type: dm.MsgType) -> None:
    """A NAT probe from anyone is handed to the NAT layer as an event (it decides whether to
    echo); the DHT core itself never sends to the address the asker claims."""
    body = {1: bytes(8), 2: b"\x7f\x00\x00\x01\x00\x50"}
    if msg_type is dm.MsgType.NAT_PROBE_ECHO:
        del body[2]
    raw = _sign_raw(msg_type, cbor2.dumps(body, canonical=True), key=ATTACKER.key)
    core = _new_core()
    core.receive_datagram(raw, SOURCES[0], 1.0)
    events = []
    while (e := core.next_event()) is not None:
        events.append(e)
    assert core.datagrams_to_send(1.0) == []
    if msg_type is dm.MsgType.NAT_PROBE_REQ:
        want = ev.NatProbeRequested(
            sender=ATTACKER.aid, addr=SOURCES[0], token=bytes(8), claimed=("127.0.0.1", 80)
        )
        assert events == [want]
    else:
        assert events == [ev.NatProbeEchoed(sender=ATTACKER.aid, addr=SOURCES[0], token=bytes(8))]
