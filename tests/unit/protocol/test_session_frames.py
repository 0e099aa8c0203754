from __future__ import annotations

import pytest

from a2al_mcp.errors import DecodeError, LimitExceeded
from a2al_mcp.identity import Aid, Identity
from a2al_mcp.protocol import session_frames as sf


def test_route_frame(ident_b: Identity) -> None:
    v1 = sf.RouteFrame(ident_b.aid, sf.MAGIC_ROUTE_V1)
    assert sf.RouteFrame.from_bytes(v1.to_bytes()) == v1
    with pytest.raises(DecodeError, match="magic"):
        sf.RouteFrame.from_bytes(b"a2r3" + bytes(ident_b.aid))
    with pytest.raises(DecodeError, match="25 bytes"):
        sf.RouteFrame.from_bytes(b"a2r2" + bytes(ident_b.aid)[:20])


def test_control_reader_one_byte_at_a_time(ident_b: Identity) -> None:
    stream = (
        sf.agent_info_hint(ident_b.aid, 42).to_bytes()
        + sf.ControlMessage(sf.ControlType.SERVICE_STREAM_CAPABLE).to_bytes()
        + sf.ControlMessage(0x7F, b"unknown types are delivered for the caller to skip").to_bytes()
    )
    reader = sf.ControlReader()
    got: list[sf.ControlMessage] = []
    for i in range(len(stream)):
        got += reader.feed(stream[i : i + 1])
    assert [m.type for m in got] == [2, 6, 0x7F]
    assert sf.parse_agent_info_hint(got[0].payload) == (ident_b.aid, 42)
    assert reader.pending == 0


def test_control_limits() -> None:
    with pytest.raises(LimitExceeded):
        sf.ControlMessage(1, bytes(4097)).to_bytes()
    with pytest.raises(DecodeError, match="exceeds"):
        sf.ControlReader().feed(b"\x01\x10\x01")
    with pytest.raises(DecodeError, match="29 bytes"):
        sf.parse_agent_info_hint(bytes(28))


def test_admission_and_access_result() -> None:
    pre = sf.admission_preamble("tok")
    assert pre.startswith(b"a2s1")
    msgs = sf.ControlReader().feed(pre[4:])
    assert [(m.type, m.payload) for m in msgs] == [(4, b"tok"), (7, b"")]
    with pytest.raises(LimitExceeded):
        sf.admission_preamble("x" * 257)
    assert sf.parse_access_result(b"") == (True, "")
    assert sf.parse_access_result(sf.access_result(False, "").payload) == (False, "denied")
    assert sf.parse_access_result(sf.access_result(False, "no").payload) == (False, "no")


def test_mailbox_frame_one_byte_at_a_time() -> None:
    frame = sf.MailboxFrame(bytes(range(32)), b"\xa1\x01\x02" * 10)
    data = frame.to_bytes()
    assert data.startswith(sf.MAGIC_MAILBOX)
    reader = sf.MailboxFrameReader()
    result = None
    for i in range(4, len(data)):
        assert result is None
        result = reader.feed(data[i : i + 1])
    assert result == frame


def test_mailbox_frame_limits() -> None:
    with pytest.raises(DecodeError, match="exceeds"):
        sf.MailboxFrameReader().feed(bytes(32) + (65537).to_bytes(4, "big"))
    with pytest.raises(DecodeError, match="after"):
        sf.MailboxFrameReader().feed(bytes(32) + (1).to_bytes(4, "big") + b"xy")
    with pytest.raises(LimitExceeded):
        sf.MailboxFrame(bytes(32), bytes(65537)).to_bytes()
    assert Aid  # keep import for type context
