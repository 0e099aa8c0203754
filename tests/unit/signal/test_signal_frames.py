"""Signalling frames: a2ald 0.3.5's bytes round-trip exactly; hostile input: typed errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from a2al_mcp.errors import DecodeError, LimitExceeded
from a2al_mcp.signal import frames
from a2al_mcp.signal.frames import Frame, FrameTooLarge, UnknownFrameType

CAPTURED = json.loads((Path(__file__).parent / "captured_frames.json").read_text("utf-8"))


def _as_frame(doc: dict[str, Any]) -> Frame:
    kw = {k: (tuple(v) if k == "addrs" else v) for k, v in doc.items() if k != "t"}
    return Frame(doc["t"], **kw)


def _frame_id(item: dict[str, Any]) -> str:
    return f"{item['cbor']['t']}-{item['hex'][:16]}"


@pytest.mark.parametrize("item", CAPTURED["frames"], ids=_frame_id)
def test_captured_frames_round_trip_byte_for_byte(item: dict[str, Any]) -> None:
    raw = bytes.fromhex(item["hex"])
    frame = frames.decode(raw)
    assert frame == _as_frame(item["cbor"])
    assert frames.encode(frame) == raw
    # built from its fields (as our code builds frames), it encodes to a2ald's bytes too
    assert frames.encode(_as_frame(item["cbor"])) == raw
    assert list(cbor2.loads(frames.encode(frame))) == item["key_order"]


def test_every_type_in_the_capture_and_the_documented_ones() -> None:
    seen = {i["cbor"]["t"] for i in CAPTURED["frames"]}
    assert seen == {"cand", "cred", "punch-init", "punch-ack", "incoming", "reg", "eoc",
                    "punch-go", "ack"}  # fmt: skip
    assert seen | {"noagent", "dht"} == frames.FRAME_TYPES


def test_exact_bytes_of_small_frames() -> None:
    assert frames.encode(Frame("ack")) == bytes.fromhex("a161746361636b")
    assert frames.encode(Frame("eoc")) == bytes.fromhex("a1617463656f63")
    assert frames.encode(Frame("noagent")) == cbor2.dumps({"t": "noagent"})
    # the full key order, every field set: t u p c a s r f g addrs ts t0 nt d
    full = Frame("dht", u="u", p="p", c="c", a="a", s="s", r="r", f="f", g="g",
                 addrs=("1.2.3.4:5",), ts=-1, t0=2, nt=3, d=b"\x00")  # fmt: skip
    raw = frames.encode(full)
    assert list(cbor2.loads(raw)) == ["t", "u", "p", "c", "a", "s", "r", "f", "g", "addrs",
                                      "ts", "t0", "nt", "d"]  # fmt: skip
    assert frames.decode(raw) == full


def test_oversized_frames_are_refused_before_decoding() -> None:
    raw = frames.encode(Frame("cand", c="x" * 2000))
    with pytest.raises(FrameTooLarge) as info:
        frames.decode(raw, max_bytes=1000)
    assert isinstance(info.value, LimitExceeded) and info.value.size == len(raw)
    assert frames.decode(raw, max_bytes=len(raw)).c == "x" * 2000


def test_unknown_type_is_a_typed_error() -> None:
    with pytest.raises(UnknownFrameType) as info:
        frames.decode(cbor2.dumps({"t": "hello", "a": "x"}))
    assert info.value.frame_type == "hello" and isinstance(info.value, DecodeError)
    with pytest.raises(UnknownFrameType):
        Frame("nope")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff",
        b"\xa1",  # truncated map
        cbor2.dumps([1, 2]),
        cbor2.dumps({1: "reg"}),
        cbor2.dumps({"a": "x"}),  # no t
        cbor2.dumps({"t": 7}),
        cbor2.dumps({"t": "reg", "a": 5}),
        cbor2.dumps({"t": "punch-init", "addrs": "1.2.3.4:5"}),
        cbor2.dumps({"t": "punch-init", "addrs": [1]}),
        cbor2.dumps({"t": "punch-init", "ts": 1 << 63}),
        cbor2.dumps({"t": "punch-init", "ts": True}),
        cbor2.dumps({"t": "punch-init", "nt": 256}),
        cbor2.dumps({"t": "punch-init", "nt": -1}),
        cbor2.dumps({"t": "dht", "d": "text"}),
        cbor2.dumps({"t": "reg"}) + b"\x00",  # trailing bytes
        cbor2.dumps(cbor2.CBORTag(28, {"t": "reg"})),
    ],
)
def test_malformed_frames_raise_decode_error(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        frames.decode(raw)


def test_unknown_keys_and_nulls_are_ignored_like_go() -> None:
    raw = cbor2.dumps({"t": "reg", "a": "A", "zz": [1, {"x": 2}], "g": None, "addrs": None})
    assert frames.decode(raw) == Frame("reg", a="A")


@given(st.binary(max_size=200))
def test_no_other_exception_escapes(raw: bytes) -> None:
    try:
        frame = frames.decode(raw)
    except DecodeError:
        return
    assert frames.decode(frames.encode(frame)) == frame


@given(
    st.sampled_from(sorted(frames.FRAME_TYPES)),
    st.text(max_size=20),
    st.lists(st.text(max_size=10), max_size=3),
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.integers(0, 255),
    st.binary(max_size=20),
)
def test_encode_decode_round_trip(
    t: Any, text: str, addrs: list[str], ts: int, nt: int, d: bytes
) -> None:
    frame = Frame(t, c=text, a=text, addrs=tuple(addrs), ts=ts, nt=nt, d=d)
    assert frames.decode(frames.encode(frame)) == frame
