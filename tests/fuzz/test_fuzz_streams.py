"""Fuzz: stream framings and payload codecs (issue 14, "fuzzing that stays").

The incremental parsers of :mod:`a2al_mcp.protocol.session_frames` (control messages, the
``a2mb`` mailbox frame, route frames, admission preambles) take arbitrary and mutated bytes,
whole and in random chunkings: they raise only DecodeError, hold no more than their documented
cap, and give the same result for every chunking. The payload codecs (endpoint, topic, profile,
mailbox payloads, SignedRecord, wire addresses) and the CBOR decoder in :mod:`a2al_mcp._cbor`
raise only DecodeError on arbitrary input, round-trip every valid value, and re-encode what
they accept without error; CBOR tags are refused (see the regression tests at the end).

Example counts come from ``tests/fuzz/fuzzcfg.py`` (``A2AL_MCP_FUZZ_EXAMPLES``; long mode:
set it high).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from a2al_mcp import _cbor
from a2al_mcp.errors import DecodeError, LimitExceeded, UsageError
from a2al_mcp.identity import Aid
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol import limits, wireaddr
from a2al_mcp.protocol import session_frames as sf
from a2al_mcp.protocol.payloads import (
    AgentProfilePayload,
    EndpointPayload,
    MailboxPayload,
    TopicPayload,
    topic_key,
)
from a2al_mcp.protocol.records import SignedRecord
from tests.fuzz.fuzzcfg import cbor_values as fuzzcfg_cbor_values
from tests.fuzz.fuzzcfg import fuzz_settings

CONTROL_HELD_MAX = 3 + limits.CONTROL_PAYLOAD_MAX - 1
"""Most bytes a ControlReader may hold between calls: one incomplete, allowed message."""
MAILBOX_HELD_MAX = 36 + limits.MAILBOX_FRAME_RECORD_MAX
"""Most bytes a MailboxFrameReader may hold: one whole frame (after the magic)."""

aids = st.binary(min_size=20, max_size=20).map(lambda h: Aid(b"\xa0" + h))
cbor_values = fuzzcfg_cbor_values()
cbor_bytes = cbor_values.map(lambda v: cbor2.dumps(v, canonical=True))


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the (sorted, deduplicated) positions ``cuts``; empty chunks kept."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in points:
        out.append(data[prev:p])
        prev = p
    out.append(data[prev:])
    return out


@st.composite
def mutate(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "set"]))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0x10, 0xFF, 0x7F]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[at : at + draw(st.integers(1, 8))]
    return bytes(data)


cuts = st.lists(st.integers(0, 70_000), max_size=12)

# ---------------------------------------------------------------- control messages

control_msgs = st.lists(
    st.tuples(st.integers(0, 255), st.binary(max_size=300) | st.binary(min_size=4090,
                                                                       max_size=4096)),
    max_size=5,
)  # fmt: skip
control_streams = st.one_of(
    st.binary(max_size=600),
    control_msgs.map(lambda ms: b"".join(sf.ControlMessage(t, p).to_bytes() for t, p in ms)),
    control_msgs.map(
        lambda ms: b"".join(sf.ControlMessage(t, p).to_bytes() for t, p in ms)
    ).flatmap(mutate),
    st.just(b"\x04\x10\x01"),  # declares 4097 bytes: one over the cap
)


def _feed_control(chunks: list[bytes]) -> tuple[list[tuple[int, bytes]], int] | None:
    """Feed chunks; the messages and bytes held, or None if a DecodeError ended it. Checks the
    reader never holds more than one incomplete message."""
    reader = sf.ControlReader()
    got: list[tuple[int, bytes]] = []
    try:
        for chunk in chunks:
            got += [(m.type, m.payload) for m in reader.feed(chunk)]
            assert reader.pending <= CONTROL_HELD_MAX
    except DecodeError:
        return None
    return got, reader.pending


@fuzz_settings(scale=2)
@given(control_streams, cuts)
def test_control_reader_any_bytes_any_chunking(stream: bytes, at: list[int]) -> None:
    whole = _feed_control([stream])
    chunked = _feed_control(_chunks(stream, at))
    bytewise = _feed_control([stream[i : i + 1] for i in range(min(len(stream), 400))])
    assert (whole is None) == (chunked is None)
    assert whole == chunked
    if len(stream) <= 400:
        assert bytewise == whole


@fuzz_settings()
@given(control_msgs, cuts)
def test_control_messages_round_trip(msgs: list[tuple[int, bytes]], at: list[int]) -> None:
    stream = b"".join(sf.ControlMessage(t, p).to_bytes() for t, p in msgs)
    assert _feed_control(_chunks(stream, at)) == (msgs, 0)


@fuzz_settings()
@given(st.integers(0, 255), st.integers(limits.CONTROL_PAYLOAD_MAX + 1, 70_000))
def test_control_encoder_refuses_over_the_cap(t: int, n: int) -> None:
    with pytest.raises(LimitExceeded):
        sf.ControlMessage(t, bytes(n)).to_bytes()


# ------------------------------------------------------------- mailbox frame (a2mb)

frames = st.builds(
    sf.MailboxFrame,
    msg_id=st.binary(min_size=32, max_size=32),
    record=st.binary(max_size=600) | st.binary(min_size=65530, max_size=65536),
)


def _feed_mailbox(chunks: list[bytes]) -> sf.MailboxFrame | str | None:
    """Feed chunks; the frame, None (incomplete) or "error". Checks the held bytes cap."""
    reader = sf.MailboxFrameReader()
    frame = None
    try:
        for chunk in chunks:
            frame = reader.feed(chunk)
            assert len(reader._buf) <= MAILBOX_HELD_MAX
    except DecodeError:
        return "error"
    return frame


mailbox_streams = st.one_of(
    st.binary(max_size=200),
    frames.map(lambda f: f.to_bytes()[4:]).flatmap(mutate),
    st.builds(
        lambda n, tail: bytes(32) + n.to_bytes(4, "big") + tail,
        st.integers(0, 2**32 - 1),
        st.binary(max_size=50),
    ),
)


@fuzz_settings()
@given(mailbox_streams, cuts)
def test_mailbox_reader_any_bytes_any_chunking(stream: bytes, at: list[int]) -> None:
    whole = _feed_mailbox([stream])
    assert _feed_mailbox(_chunks(stream, at)) == whole
    if len(stream) >= 36:
        declared = int.from_bytes(stream[32:36], "big")
        if declared > limits.MAILBOX_FRAME_RECORD_MAX or len(stream) > 36 + declared:
            assert whole == "error"
        elif len(stream) == 36 + declared:
            assert whole == sf.MailboxFrame(stream[:32], stream[36:])
        else:
            assert whole is None


@fuzz_settings(scale=0.5)
@given(frames, cuts)
def test_mailbox_frame_round_trip(frame: sf.MailboxFrame, at: list[int]) -> None:
    data = frame.to_bytes()
    assert data[:4] == sf.MAGIC_MAILBOX
    assert _feed_mailbox(_chunks(data[4:], at)) == frame


def test_mailbox_frame_encoder_refuses_over_the_cap() -> None:
    with pytest.raises(LimitExceeded):
        sf.MailboxFrame(bytes(32), bytes(limits.MAILBOX_FRAME_RECORD_MAX + 1)).to_bytes()
    with pytest.raises(DecodeError):
        sf.MailboxFrame(bytes(31), b"").to_bytes()


# --------------------------------------------------- route frame, hints, preambles


@fuzz_settings(scale=2)
@given(st.binary(max_size=40) | st.sampled_from([sf.MAGIC_ROUTE_V1, sf.MAGIC_ROUTE_V2]).flatmap(
    lambda m: st.binary(min_size=21, max_size=21).map(lambda a: m + a)))  # fmt: skip
def test_route_frame_only_decode_error(data: bytes) -> None:
    try:
        frame = sf.RouteFrame.from_bytes(data)
    except DecodeError:
        return
    assert frame.to_bytes() == data


@fuzz_settings()
@given(aids, st.sampled_from([sf.MAGIC_ROUTE_V1, sf.MAGIC_ROUTE_V2]), st.integers(0, 2**64 - 1))
def test_route_frame_and_hint_round_trip(aid: Aid, magic: bytes, seq: int) -> None:
    assert sf.RouteFrame.from_bytes(sf.RouteFrame(aid, magic).to_bytes()) == sf.RouteFrame(
        aid, magic
    )
    hint = sf.agent_info_hint(aid, seq)
    assert hint.type == sf.ControlType.AGENT_INFO_HINT
    assert sf.parse_agent_info_hint(hint.payload) == (aid, seq)


@fuzz_settings()
@given(st.binary(max_size=64))
def test_hint_and_access_result_parsers_are_total(payload: bytes) -> None:
    with contextlib.suppress(DecodeError):
        sf.parse_agent_info_hint(payload)
    admitted, reason = sf.parse_access_result(payload)
    assert admitted == (not payload or payload[0] == 1)
    assert isinstance(reason, str)


@fuzz_settings()
@given(st.booleans(), st.text(max_size=100))
def test_access_result_round_trip(admitted: bool, reason: str) -> None:
    try:
        msg = sf.access_result(admitted, reason)
    except UnicodeEncodeError:
        assume_surrogate(reason)
        return
    got = sf.parse_access_result(msg.payload)
    assert got == ((True, "") if admitted else (False, reason or "denied"))


def assume_surrogate(text: str) -> None:
    """Only a lone surrogate may make a local text unencodable."""
    assert any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@fuzz_settings()
@given(st.none() | st.text(max_size=300), cuts)
def test_admission_preamble_parses_back(token: str | None, at: list[int]) -> None:
    try:
        data = sf.admission_preamble(token)
    except LimitExceeded:
        assert token is not None and len(token.encode()) > limits.ACCESS_TOKEN_MAX
        return
    except UnicodeEncodeError:
        assert token is not None
        assume_surrogate(token)
        return
    assert data[:4] == sf.MAGIC_ADMISSION
    parsed = _feed_control(_chunks(data[4:], at))
    expect = [(sf.ControlType.END_OF_ADMISSION, b"")]
    if token:
        expect.insert(0, (sf.ControlType.ACCESS_TOKEN, token.encode()))
    assert parsed == (expect, 0)


# -------------------------------------------------------------- payload codecs

DECODERS: list[tuple[str, Callable[[bytes], Any]]] = [
    ("cbor", _cbor.loads),
    ("endpoint", EndpointPayload.from_bytes),
    ("topic", TopicPayload.from_bytes),
    ("profile", AgentProfilePayload.from_bytes),
    ("mailbox", MailboxPayload.from_bytes),
    ("record", SignedRecord.from_bytes),
    ("addr", wireaddr.decode_addr),
    ("ip", wireaddr.ip_from_bytes),
    ("item_end", _cbor.item_end),
    ("spans", _cbor.map_value_spans),
]

samples = [
    EndpointPayload(endpoints=("quic://127.0.0.1:1", "quic://[::1]:2"), nat_type=2,
                    signal="wss://s", turns=("turn:x",), signals=("wss://a",)).to_bytes(),
    TopicPayload(topic="lang.translate", name="n", protocols=("a2a",), tags=("fr",),
                 brief="b", meta={"k": 1, "l": [1, "x"]}).to_bytes(),
    AgentProfilePayload(name="n", brief="b", skills=("s",), card_hash=bytes(32),
                        meta={"a": {"b": None}}).to_bytes(),
    MailboxPayload(recipient=Aid(b"\xa0" + bytes(20)), sender=Aid(b"\xa1" + bytes(20)),
                   ephemeral_pk=bytes(32), ciphertext=bytes(40), nonce=bytes(12)).to_bytes(),
    SignedRecord(address=Aid(b"\xa0" + bytes(20)), rec_type=0x10, payload=b"\xa0", seq=1,
                 timestamp=2, ttl=3, pubkey=bytes(32), signature=bytes(64),
                 delegation=b"\x01").to_bytes(),
]  # fmt: skip

codec_inputs = st.one_of(
    st.binary(max_size=800),
    cbor_bytes,
    st.sampled_from(samples).flatmap(mutate),
    st.dictionaries(st.integers(0, 10), cbor_values, max_size=10).map(
        lambda m: cbor2.dumps(m, canonical=True)
    ),
)


def _reencodes(value: Any) -> None:
    """What a codec accepted encodes again without error (to_bytes may only refuse with
    LimitExceeded: a normalised value can be a few bytes longer, as Go writes null lists)."""
    with contextlib.suppress(LimitExceeded):
        data = value.to_bytes()
        again = type(value).from_bytes(data)
        assert again.to_bytes() == data


@fuzz_settings(scale=3)
@given(codec_inputs)
def test_codecs_raise_only_decode_error_and_reencode(data: bytes) -> None:
    for name, decode in DECODERS:
        try:
            value = decode(data)
        except DecodeError:
            continue
        if name in ("endpoint", "topic", "profile", "mailbox", "record"):
            _reencodes(value)
            # everything accepted from the wire can be shown as JSON (MCP results, the CLI)
            if name in ("topic", "profile"):
                json.dumps(dict(value.meta), default=repr)


@fuzz_settings()
@given(st.binary(max_size=400), st.integers(0, 3))
def test_item_end_agrees_with_the_decoder(data: bytes, pos: int) -> None:
    """Whatever :func:`_cbor.loads` accepts, :func:`_cbor.item_end` spans exactly."""
    try:
        _cbor.loads(data)
    except DecodeError:
        return
    with contextlib.suppress(DecodeError):  # item_end has a stricter depth limit
        assert _cbor.item_end(data) == len(data)


@fuzz_settings()
@given(cbor_values)
def test_cbor_round_trip_is_canonical(value: Any) -> None:
    data = _cbor.dumps(value)
    decoded = _cbor.loads(data)
    assert _cbor.dumps(decoded) == data
    assert _cbor.item_end(data) == len(data)


@fuzz_settings()
@given(
    st.one_of(
        st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 65535)),
        st.tuples(st.ip_addresses(v=6).map(str), st.integers(0, 65535)),
        st.tuples(st.text(max_size=20), st.integers(-5, 70_000)),
    )
)
def test_wire_address_round_trip(addr: tuple[str, int]) -> None:
    try:
        raw = wireaddr.encode_addr(addr)
    except DecodeError:
        return
    host, port = wireaddr.decode_addr(raw)
    assert port == addr[1]
    assert wireaddr.ip_bytes(host) == raw[:-2]


# ------------------------------------------------------- regressions: CBOR tags


def _shared_ref_bomb(levels: int) -> bytes:
    """An array whose level i is [level i-1, level i-1] by shared reference (tags 28/29):
    ~9 bytes a level, 2^i leaves when serialised."""
    items = [b"\xd8\x1c\x80"]
    for i in range(1, levels):
        ref = b"\xd8\x1d" + cbor2.dumps(i - 1)
        items.append(b"\xd8\x1c\x82" + ref + ref)
    return b"\x98" + bytes([levels]) + b"".join(items)


def test_regression_shared_reference_bomb_in_topic_meta_is_refused() -> None:
    """A 512-byte topic payload (a registration any peer can store under any topic) whose
    meta expanded to 2^29 list elements once serialised: ``discover`` would build it into its
    JSON result. At 45ad18d TopicPayload.from_bytes accepted it."""
    bomb = _shared_ref_bomb(30)
    m = cbor2.dumps({1: 1, 2: "lang.translate", 3: "", 4: None, 5: None, 6: "", 7: {"x": 0}})
    data = m[:-1] + bomb  # meta {"x": <bomb>}
    assert len(data) <= limits.TOPIC_PAYLOAD_MAX
    with pytest.raises(DecodeError):
        TopicPayload.from_bytes(data)
    with pytest.raises(DecodeError):
        _cbor.loads(b"\xd8\x1c\x81\xd8\x1d\x00")  # a list that contains itself


@pytest.mark.parametrize(
    "tag",
    [0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004,
     43000, 55799, 6, 999, 2**40],
)  # fmt: skip
def test_regression_every_cbor_tag_is_refused(tag: int) -> None:
    """Semantic tags made cbor2 build sets, regexes, MIME messages, datetimes, bignums (any
    number of hash-colliding map keys) from peer bytes; unknown tags became CBORTag objects
    in meta. No A2AL structure is tagged."""
    inner: Any = {
        0: "2020-01-01T00:00:00Z", 1: 0, 2: b"\x01", 3: b"\x01", 4: [0, 1], 5: [0, 1],
        25: 0, 28: [], 29: 0, 30: [1, 2], 35: "a+", 36: "Subject: x\n\nhi",
        37: bytes(16), 52: b"\x7f\x00\x00\x01", 54: bytes(16), 256: ["x"], 258: [1],
        260: b"\x7f\x00\x00\x01", 261: {b"\x7f\x00\x00\x00": 8},
    }.get(tag, 0)  # fmt: skip
    data = cbor2.dumps(cbor2.CBORTag(tag, inner))
    with pytest.raises(DecodeError):
        _cbor.loads(data)
    with pytest.raises(DecodeError):
        _cbor.loads(cbor2.dumps({1: [1]})[:-1] + data)  # nested inside a map


# ------------------------------------------------ meta: what we publish decodes again


def _meta_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)


meta_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2),
    _meta_containers,
    max_leaves=20,
)  # fmt: skip


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@fuzz_settings()
@given(st.dictionaries(st.text(max_size=4), meta_values | st.integers(1, 40).map(_nested),
                       max_size=4))  # fmt: skip
def test_meta_encodes_to_what_decodes_or_is_refused(meta: dict[str, Any]) -> None:
    """Whatever meta a caller gives, to_bytes refuses it with LimitExceeded/UsageError or
    writes a payload that decodes (here and at every A2AL peer) to the same meta."""
    for payload in (
        TopicPayload(topic="t", meta=meta),
        AgentProfilePayload(name="n", meta=meta),
    ):
        try:
            data = payload.to_bytes()
        except (LimitExceeded, UsageError):
            continue
        again = type(payload).from_bytes(data)
        assert _cbor.dumps(dict(again.meta)) == _cbor.dumps(dict(meta))


def test_regression_deep_meta_is_refused_not_a_segfault() -> None:
    """A meta nested 20,000 deep (``publish`` with ``meta``; LangChain/CrewAI and the Python
    API pass it through) overflowed the C stack in cbor2's encoder: the process died with
    SIGSEGV at 45ad18d. Run in a child process so that old code fails the test, not the run."""
    code = (
        "from a2al_mcp.protocol.payloads import TopicPayload\n"
        "from a2al_mcp.errors import LimitExceeded\n"
        "v = 1\n"
        "for _ in range(20000): v = [v]\n"
        "try:\n"
        "    TopicPayload(topic='t', meta={'a': v}).to_bytes()\n"
        "except LimitExceeded:\n"
        "    print('refused')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.returncode
    assert proc.stdout.strip() == b"refused"


@pytest.mark.parametrize(
    ("meta", "error"),
    [
        ({"a": "\ud800"}, UsageError),  # cbor2 raised UnicodeEncodeError (INTERNAL in tools)
        ({"\udfff": 1}, UsageError),
        ({"a": 2**64}, UsageError),  # cbor2 wrote a bignum tag: a record no peer decodes
        ({"a": -(2**64) - 1}, UsageError),
        ({"a": _nested(17)}, LimitExceeded),
    ],
)
def test_regression_meta_without_a_faithful_encoding_is_refused(
    meta: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        TopicPayload(topic="t", meta=meta).to_bytes()
    with pytest.raises(error):
        AgentProfilePayload(name="n", meta=meta).to_bytes()


@pytest.mark.parametrize("field", ["topic", "name", "brief", "tags", "protocols"])
def test_regression_texts_with_a_lone_surrogate_are_a_usage_error(field: str) -> None:
    """``discover``/``publish`` with a lone surrogate in the topic, name, brief, tags or
    protocols ended in UnicodeEncodeError (INTERNAL in the tools) at 45ad18d; pydantic lets
    lone surrogates through str fields."""
    bad = "x\ud800"
    if field == "topic":
        with pytest.raises(UsageError):
            topic_key(bad)
    value: Any = (bad,) if field in ("tags", "protocols") else bad
    kwargs: dict[str, Any] = {"topic": "t", field: value}
    with pytest.raises(UsageError):
        TopicPayload(**kwargs).to_bytes()
    if field != "topic":
        kwargs.pop("topic")
        if field == "tags":
            kwargs["skills"] = kwargs.pop("tags")
        with pytest.raises(UsageError):
            AgentProfilePayload(**kwargs).to_bytes()


# ----------------------------------- large inputs: the map-key check before decoding


@fuzz_settings()
@given(
    cbor_values
    | st.dictionaries(st.text(max_size=6) | st.integers(-(2**64), 2**64 - 1), cbor_values),
    st.integers(0, 3),
    st.binary(max_size=3),
    st.integers(0, 2**16),
)
def test_large_inputs_decode_as_cbor2_does_or_only_decode_error(
    value: Any, op: int, noise: bytes, at: int
) -> None:
    """Over KEY_CHECK_MIN bytes the raw walk runs first: it accepts exactly what decodes to
    the same value (for tag-free input with integer or string keys), and mutated input still
    raises only DecodeError."""
    data = cbor2.dumps([bytes(_cbor.KEY_CHECK_MIN), value])
    assert _cbor.loads(data) == cbor2.loads(data) or _contains_nan(value)
    at %= len(data)
    mutated = [data[:at] + noise + data[at + len(noise) :], data[:at], data[:at] + data[at + 1 :]]
    with contextlib.suppress(DecodeError):
        _cbor.loads(mutated[op % 3])


def _contains_nan(value: Any) -> bool:
    return "nan" in repr(value)


def _colliding_keys_datagram() -> bytes:
    """A 63 KB DHT datagram whose PING body has an extra map of 2,250 array keys that all
    hash alike in Python (integers k·(2^61−1))."""
    p = 2**61 - 1
    ints = sorted({s * k * p for k in range(9) for s in (1, -1) if -(2**64) <= s * k * p < 2**64})
    keys = list(itertools.islice(itertools.product(ints, repeat=3), 2250))
    body = cbor2.dumps({1: b"\xa0" + bytes(20), 9: dict.fromkeys(keys)})
    header = _cbor.dumps({1: 1, 2: 0, 3: 1, 4: bytes(20)})
    return (
        b"\xa4\x01"
        + header
        + b"\x02"
        + body
        + b"\x03\x58\x20"
        + bytes(32)
        + b"\x04\x58\x40"
        + bytes(64)
    )


def test_regression_hash_colliding_map_keys_are_refused_before_decoding() -> None:
    """At 45ad18d this datagram decoded (~150 ms of CPU each, ~70x an honest message of its
    size, from a spoofable UDP source): the map was built key by key with every key in one
    hash bucket. Now the raw walk refuses the array keys before cbor2 builds anything."""
    data = _colliding_keys_datagram()
    assert 60_000 < len(data) <= 65_536
    with pytest.raises(DecodeError):
        _cbor.loads(data[data.index(b"\x02\xa2") + 1 : -102])  # the body alone
    with pytest.raises(DecodeError):
        dm.decode_message(data)
