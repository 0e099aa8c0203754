"""Fuzz: the session layer's stream framings as a hostile peer drives them (issue 14).

A sans-I/O :class:`~a2al_mcp.transport.session.Session` (acceptor or dialer) over a fake
QUIC connection takes hostile stream events: route frames, control messages, ``a2mb``
mailbox frames, ``a2s1`` preambles and raw bytes, whole or mutated, in random chunkings,
interleaved over several streams with resets and STOP_SENDING. It never raises, returns only
session events, and the application's answers (admit, ack, answer_route) never raise either.

Example counts come from ``tests/fuzz/fuzzcfg.py`` (``A2AL_MCP_FUZZ_EXAMPLES``; long mode:
set it high).
"""

from __future__ import annotations

import typing
from typing import Any

from aioquic.quic import events as qe
from hypothesis import given
from hypothesis import strategies as st

from a2al_mcp.identity import Aid
from a2al_mcp.protocol import session_frames as sf
from a2al_mcp.transport import session as ss
from tests.fuzz.fuzzcfg import fuzz_settings

TARGET = Aid(b"\xa0" + bytes(range(20)))
EVENT_TYPES = tuple(typing.get_args(ss.SessionEvent))


class _Config:
    def __init__(self, is_client: bool) -> None:
        self.is_client = is_client


class FakeConn:
    """Records what the session writes; hands out stream IDs like QUIC (RFC 9000 §2.1)."""

    def __init__(self, is_client: bool) -> None:
        self.configuration = _Config(is_client)
        self._next = 0 if is_client else 1
        self.written: dict[int, bytearray] = {}
        self.resets: list[tuple[int, int]] = []

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int:
        sid, self._next = self._next, self._next + 4
        return sid

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self.written.setdefault(stream_id, bytearray()).extend(data)

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        self.resets.append((stream_id, error_code))

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        pass


def _mutate(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 2))):
        if not out:
            break
        at = draw(st.integers(0, len(out) - 1))
        out[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(out)


@st.composite
def stream_payloads(draw: st.DrawFn, route: bool) -> bytes:
    """What a hostile peer writes on a stream (stream 0 when ``route``)."""
    control = b"".join(
        sf.ControlMessage(t, p).to_bytes()
        for t, p in draw(st.lists(st.tuples(st.integers(0, 9), st.binary(max_size=40)), max_size=4))
    )
    if route:
        kind = draw(st.sampled_from(["v2", "v1", "short", "junk", "answer"]))
        data = {
            "v2": sf.RouteFrame(TARGET).to_bytes() + sf.agent_info_hint(TARGET, 3).to_bytes(),
            "v1": sf.RouteFrame(TARGET, sf.MAGIC_ROUTE_V1).to_bytes(),
            "short": b"a2r2\xa0",
            "junk": draw(st.binary(max_size=60)),
            "answer": b"",
        }[kind] + control
    else:
        kind = draw(st.sampled_from(["mailbox", "admission", "raw", "a2xx", "ack"]))
        record = draw(st.binary(max_size=80))
        data = {
            "mailbox": sf.MailboxFrame(bytes(32), record).to_bytes(),
            "admission": sf.admission_preamble(draw(st.none() | st.text(max_size=20)))
            + draw(st.binary(max_size=20)),
            "raw": draw(st.binary(max_size=60)),
            "a2xx": b"a2zz" + draw(st.binary(max_size=10)),
            "ack": draw(st.sampled_from([b"\x01", b"", b"\x00", b"\x01\x01"])),
        }[kind] + (control if kind == "admission" else b"")
    return _mutate(draw, data) if draw(st.booleans()) else data


@st.composite
def scripts(draw: st.DrawFn) -> tuple[bool, list[tuple[str, int, bytes, bool]]]:
    """(dialer?, steps): each step is an event on one stream: data (a chunk, maybe FIN),
    reset or stop."""
    dialer = draw(st.booleans())
    peer_ids = [0, 4, 8] if not dialer else [1, 5, 9]  # streams the peer opens
    own_ids = [0, 4, 8] if dialer else [1, 5]  # streams we open (replies arrive on them)
    steps: list[tuple[str, int, bytes, bool]] = []
    for sid in draw(st.lists(st.sampled_from(peer_ids + own_ids), min_size=1, max_size=5)):
        payload = draw(stream_payloads(route=(sid == 0)))
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=4)))
        prev = 0
        for c in [*cuts, len(payload)]:
            steps.append(("data", sid, payload[prev:c], False))
            prev = c
        ending = draw(st.sampled_from(["fin", "reset", "stop", "open"]))
        if ending == "fin":
            steps.append(("data", sid, b"", True))
        elif ending != "open":
            steps.append((ending, sid, b"", False))
    order = draw(st.permutations(range(len(steps))))
    # keep each stream's own order, interleave streams
    by_stream: dict[int, list[tuple[str, int, bytes, bool]]] = {}
    for s in steps:
        by_stream.setdefault(s[1], []).append(s)
    out = []
    cursors = dict.fromkeys(by_stream, 0)
    for i in order:
        sid = steps[i][1]
        if cursors[sid] < len(by_stream[sid]):
            out.append(by_stream[sid][cursors[sid]])
            cursors[sid] += 1
    for sid, items in by_stream.items():
        out.extend(items[cursors[sid] :])
    return dialer, out


def _react(session: ss.Session, events: list[Any], admit: bool) -> None:
    """The application's side: answer every event as a node would."""
    for e in events:
        assert isinstance(e, EVENT_TYPES), e
        if isinstance(e, ss.RouteReceived):
            session.answer_route([b"\xa0" * 10])
        elif isinstance(e, ss.ServiceRequested):
            _react(session, session.admit(e.stream_id, admit, "no"), admit)
        elif isinstance(e, ss.MailboxReceived):
            session.ack_mailbox(e.stream_id)
        elif isinstance(e, ss.StreamData):
            session.send(e.stream_id, b"echo", end_stream=e.end_stream)


@fuzz_settings()
@given(scripts(), st.booleans())
def test_session_survives_hostile_streams(
    script: tuple[bool, list[tuple[str, int, bytes, bool]]], admit: bool
) -> None:
    dialer, steps = script
    conn = FakeConn(is_client=dialer)
    session = ss.Session(conn, observed_addr=None if dialer else ("127.0.0.1", 5))
    if dialer:
        session.start(TARGET)
        session.open_service_stream(admission=True)
        session.send_mailbox(sf.MailboxFrame(bytes(32), b"\xa0"))
    fed: dict[int, int] = {}
    for kind, sid, data, end in steps:
        event: qe.QuicEvent
        if kind == "data":
            event = qe.StreamDataReceived(data=data, end_stream=end, stream_id=sid)
            fed[sid] = fed.get(sid, 0) + len(data)
        elif kind == "reset":
            event = qe.StreamReset(error_code=7, stream_id=sid)
        else:
            event = qe.StopSendingReceived(error_code=7, stream_id=sid)
        _react(session, session.handle_event(event), admit)  # never raises
    assert session.stream_count <= len({s for _, s, _, _ in steps}) + 3
