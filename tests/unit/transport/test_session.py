"""The session layer and the QUIC host over two in-memory QUIC endpoints (no sockets).

Every stream byte reaches the session one byte per event (the pump splits aioquic's
StreamDataReceived events), so every parser is exercised at its most fragmented.
"""

from __future__ import annotations

import datetime

import pytest
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from a2al_mcp._random import SeededRng
from a2al_mcp.identity import Identity
from a2al_mcp.protocol import session_frames as sf
from a2al_mcp.transport import session as ss
from a2al_mcp.transport.quic_host import (
    ConnectionAccepted,
    ConnectionEvent,
    ConnectionGone,
    HostEvent,
    QuicHost,
)

CLIENT_ADDR = ("10.0.0.1", 4121)
SERVER_ADDR = ("10.0.0.2", 4121)
TARGET = Identity.generate(SeededRng(1)).aid


def _cert() -> tuple[x509.Certificate, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "a2al")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, None)
    )
    return cert, key


CERT, KEY = _cert()


class Pair:
    """A dialer host and an acceptor host wired back to back, with sessions."""

    def __init__(self) -> None:
        self.now = 1.0
        self.server_sessions: list[ss.Session] = []
        self.server = QuicHost(self._server_conn)
        self.client = QuicHost()
        cfg = QuicConfiguration(is_client=True, alpn_protocols=["a2al-quic-1"])
        cfg.verify_mode = 0  # ssl.CERT_NONE: these tests are about streams, not TLS
        self.conn = QuicConnection(configuration=cfg)
        self.dialer = ss.Session(self.conn)
        self.events: dict[str, list[ss.SessionEvent]] = {"client": [], "server": []}
        self.gone: list[ConnectionGone] = []
        self.client.connect(self.conn, SERVER_ADDR, self.now)

    def _server_conn(self, dcid: bytes, addr: tuple[str, int]) -> QuicConnection:
        cfg = QuicConfiguration(is_client=False, alpn_protocols=["a2al-quic-1"])
        cfg.certificate, cfg.private_key = CERT, KEY
        conn = QuicConnection(configuration=cfg, original_destination_connection_id=dcid)
        return conn

    @property
    def acceptor(self) -> ss.Session:
        return self.server_sessions[0]

    def pump(self, rounds: int = 30) -> None:
        for _ in range(rounds):
            moved = False
            for src, dst, src_addr in (
                (self.client, self.server, CLIENT_ADDR),
                (self.server, self.client, SERVER_ADDR),
            ):
                for data, _addr in src.datagrams_to_send(self.now):
                    dst.receive_datagram(data, src_addr, self.now)
                    moved = True
            self._drain("client", self.client)
            self._drain("server", self.server)
            self.now += 0.001
            for host in (self.client, self.server):
                t = host.get_timer()
                if t is not None and t <= self.now:
                    host.handle_timer(self.now)
            if not moved:
                break

    def _drain(self, side: str, host: QuicHost) -> None:
        while (e := host.next_event()) is not None:
            self._handle(side, e)

    def _handle(self, side: str, e: HostEvent) -> None:
        if isinstance(e, ConnectionAccepted):
            self.server_sessions.append(ss.Session(e.conn, observed_addr=e.addr))
        elif isinstance(e, ConnectionGone):
            self.gone.append(e)
        elif isinstance(e, ConnectionEvent):
            session = self.dialer if side == "client" else self.server_sessions[0]
            for one in _one_byte_at_a_time(e.event):
                self.events[side].extend(session.handle_event(one))

    def take(self, side: str) -> list[ss.SessionEvent]:
        out, self.events[side] = self.events[side], []
        return out


def _one_byte_at_a_time(event: qe.QuicEvent) -> list[qe.QuicEvent]:
    if not isinstance(event, qe.StreamDataReceived) or len(event.data) <= 1:
        return [event]
    data = event.data
    return [
        qe.StreamDataReceived(
            data=data[i : i + 1],
            end_stream=event.end_stream and i == len(data) - 1,
            stream_id=event.stream_id,
        )
        for i in range(len(data))
    ]


def _merge(events: list[ss.SessionEvent], stream_id: int) -> tuple[bytes, bool]:
    data = b"".join(
        e.data for e in events if isinstance(e, ss.StreamData) and e.stream_id == stream_id
    )
    ended = any(isinstance(e, ss.StreamData) and e.end_stream for e in events)
    return data, ended


@pytest.fixture
def pair() -> Pair:
    p = Pair()
    p.pump()
    return p


def _route(p: Pair, token: str | None = None) -> None:
    p.dialer.start(TARGET, held_topic_seq=7, token=token)
    p.pump()


def test_route_frame_and_control_exchange(pair: Pair) -> None:
    _route(pair, token="tok")
    (route,) = pair.take("server")
    assert route == ss.RouteReceived(TARGET, legacy=False, held_topic_seq=7, token="tok")
    assert pair.acceptor.route == route
    pair.acceptor.answer_route([b"\xa1\x01\x02"])
    pair.pump()
    (ctl,) = pair.take("client")
    assert isinstance(ctl, ss.PeerControl)
    assert ctl.observed_addr == CLIENT_ADDR
    assert ctl.agent_info == (b"\xa1\x01\x02",)
    assert ctl.service_capable and not ctl.envelope_capable
    assert pair.dialer.peer_service_capable


def test_route_stream_must_come_first(pair: Pair) -> None:
    with pytest.raises(RuntimeError):
        pair.dialer.open_service_stream(admission=False)
    with pytest.raises(RuntimeError):
        pair.dialer.send_mailbox(sf.MailboxFrame(bytes(32), b""))
    pair.conn.send_stream_data(pair.conn.get_next_available_stream_id(), b"x")
    with pytest.raises(RuntimeError):
        pair.dialer.start(TARGET)


def test_legacy_route_frame_has_no_control_exchange(pair: Pair) -> None:
    sid = pair.conn.get_next_available_stream_id()
    pair.conn.send_stream_data(sid, sf.RouteFrame(TARGET, sf.MAGIC_ROUTE_V1).to_bytes())
    pair.pump()
    (route,) = pair.take("server")
    assert route == ss.RouteReceived(TARGET, legacy=True)
    pair.acceptor.answer_route()  # nothing is written for a2r1
    pair.pump()
    assert pair.take("client") == []


def test_bad_route_magic_falls_back(pair: Pair) -> None:
    sid = pair.conn.get_next_available_stream_id()
    pair.conn.send_stream_data(sid, b"zzzz" + bytes(TARGET), end_stream=True)
    pair.pump()
    (route,) = pair.take("server")
    assert route.target is None


def test_admitted_service_stream_carries_bytes_both_ways(pair: Pair) -> None:
    _route(pair, None)
    pair.take("server")
    sid, _ = pair.dialer.open_service_stream("secret", admission=True)
    pair.dialer.send(sid, b"GET / HTTP/1.1\r\n\r\n")
    pair.pump()
    events = pair.take("server")
    assert events == [ss.ServiceRequested(sid, "secret", legacy=False)]
    held = pair.acceptor.admit(sid, True)
    data, _ = _merge(held, sid)
    pair.pump()
    data += _merge(pair.take("server"), sid)[0]
    assert data == b"GET / HTTP/1.1\r\n\r\n"
    assert pair.take("client") == [ss.AdmissionResult(sid, True)]
    pair.acceptor.send(sid, b"HTTP/1.1 200 OK\r\n\r\nhi", end_stream=True)
    pair.pump()
    assert _merge(pair.take("client"), sid) == (b"HTTP/1.1 200 OK\r\n\r\nhi", True)


def test_denied_service_stream(pair: Pair) -> None:
    _route(pair)
    pair.take("server")
    sid, _ = pair.dialer.open_service_stream(admission=True)
    pair.pump()
    pair.take("server")
    assert pair.acceptor.admit(sid, False, "not you") == []
    pair.pump()
    assert pair.take("client") == [ss.AdmissionResult(sid, False, "not you")]


def test_raw_stream_replays_its_first_bytes_after_admission(pair: Pair) -> None:
    _route(pair)
    pair.take("server")
    sid, _ = pair.dialer.open_service_stream(admission=False)
    pair.dialer.send(sid, b"PING raw bytes", end_stream=True)
    pair.pump()
    assert pair.take("server") == [ss.ServiceRequested(sid, None, legacy=True)]
    held = pair.acceptor.admit(sid, True)
    assert _merge(held, sid) == (b"PING raw bytes", True)


def test_raw_stream_refused_is_reset(pair: Pair) -> None:
    _route(pair)
    pair.take("server")
    sid, _ = pair.dialer.open_service_stream(admission=False)
    pair.dialer.send(sid, b"hello")
    pair.pump()
    pair.take("server")
    pair.acceptor.admit(sid, False)
    pair.pump()
    assert ss.StreamReset(sid, ss.ERR_ACCESS_DENIED) in pair.take("client")


def test_unknown_a2_magic_is_refused(pair: Pair) -> None:
    _route(pair)
    pair.take("server")
    sid, _ = pair.dialer.open_service_stream(admission=False)
    pair.dialer.send(sid, b"a2zzmore")
    pair.pump()
    assert pair.take("server") == [ss.StreamReset(sid, ss.ERR_PROTOCOL)]


def test_mailbox_frame_and_ack(pair: Pair) -> None:
    _route(pair)
    pair.take("server")
    frame = sf.MailboxFrame(bytes(range(32)), b"\xa1\x01\x02" * 50)
    sid = pair.dialer.send_mailbox(frame)
    pair.pump()
    assert pair.take("server") == [ss.MailboxReceived(sid, frame)]
    pair.acceptor.ack_mailbox(sid)
    pair.pump()
    assert pair.take("client") == [ss.MailboxAcked(sid)]


def test_truncated_mailbox_frame_is_a_protocol_error(pair: Pair) -> None:
    _route(pair)
    pair.take("server")
    sid = pair.conn.get_next_available_stream_id()
    pair.conn.send_stream_data(sid, b"a2mb" + bytes(32) + (100).to_bytes(4, "big") + b"x",
                               end_stream=True)  # fmt: skip
    pair.pump()
    assert pair.take("server") == [ss.StreamReset(sid, ss.ERR_PROTOCOL)]


def test_oversize_access_token_is_refused(pair: Pair) -> None:
    _route(pair)
    pair.take("server")
    sid = pair.conn.get_next_available_stream_id()
    msg = sf.ControlMessage(sf.ControlType.ACCESS_TOKEN, b"t" * 300).to_bytes()
    pair.conn.send_stream_data(sid, sf.MAGIC_ADMISSION + msg)
    pair.pump()
    assert pair.take("server") == [ss.StreamReset(sid, ss.ERR_PROTOCOL)]


def test_host_counts_and_forgets_connections(pair: Pair) -> None:
    assert len(pair.client) == 1 and len(pair.server) == 1
    assert pair.server.statistics().accepted == 1
    pair.server.receive_datagram(b"\x40" + bytes(30), CLIENT_ADDR, pair.now)  # unknown short
    pair.server.receive_datagram(b"\xc0", CLIENT_ADDR, pair.now)  # malformed long header
    stats = pair.server.statistics()
    assert stats.dropped_unknown == 1 and stats.dropped_malformed == 1
    pair.conn.close(error_code=0, reason_phrase="bye")
    pair.client.drain(pair.conn)
    for _ in range(20):
        pair.pump()
        pair.now += 1.0
        for host in (pair.client, pair.server):
            host.handle_timer(pair.now)
        pair._drain("client", pair.client)
        pair._drain("server", pair.server)
    assert len(pair.client) == 0 and len(pair.server) == 0
    assert len(pair.gone) == 2


def test_host_refuses_inbound_when_full() -> None:
    p = Pair.__new__(Pair)
    Pair.__init__(p)
    p.server = QuicHost(p._server_conn, max_connections=0)
    p.pump()
    assert len(p.server) == 0 and p.server.statistics().refused_full >= 1


def test_oversize_mailbox_frame_is_refused(pair: Pair) -> None:
    _route(pair)
    pair.take("server")
    sid = pair.conn.get_next_available_stream_id()
    pair.conn.send_stream_data(sid, b"a2mb" + bytes(32) + (70_000).to_bytes(4, "big") + b"x")
    pair.pump()
    assert pair.take("server") == [ss.StreamReset(sid, ss.ERR_PROTOCOL)]


class _FakeDialerConn:
    """Just enough of a client QuicConnection for the dialer's stream 0."""

    class configuration:  # mirrors QuicConnection.configuration
        is_client = True

    def __init__(self) -> None:
        self.next_id = 0
        self.resets: list[tuple[int, int]] = []
        self.stops: list[tuple[int, int]] = []

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int:
        sid, self.next_id = self.next_id, self.next_id + 4
        return sid

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        pass

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        self.resets.append((stream_id, error_code))

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        self.stops.append((stream_id, error_code))


def test_an_endless_stream0_answer_is_reset_not_buffered() -> None:
    """A hostile acceptor streams AgentInfo messages on stream 0 and never ends it. At
    45ad18d the dialer buffered all of it until FIN (no cap); now it stops reading and resets
    stream 0 past ss.ROUTE_ANSWER_MAX (64 KiB), counted; the connection goes on."""
    conn = _FakeDialerConn()
    dialer = ss.Session(conn)
    dialer.start(TARGET)
    chunk = sf.ControlMessage(sf.ControlType.AGENT_INFO, bytes(4096)).to_bytes() * 4
    sent, events = 0, list[ss.SessionEvent]()
    while sent < 1 << 20 and not events:
        events = dialer.handle_event(qe.StreamDataReceived(data=chunk, end_stream=False,
                                                           stream_id=0))  # fmt: skip
        sent += len(chunk)
    assert events == [ss.StreamReset(0, ss.ERR_PROTOCOL)], f"{sent} bytes buffered, no reset"
    assert sent <= 16 * (3 + 4096) + len(chunk)
    assert (0, ss.ERR_PROTOCOL) in conn.stops
    assert dialer.route_answer_overflows == 1 and dialer.refused_streams == 1
    more = qe.StreamDataReceived(data=chunk, end_stream=True, stream_id=0)
    assert dialer.handle_event(more) == []  # later bytes are ignored
    assert not dialer.peer_service_capable
    sid, _ = dialer.open_service_stream(admission=False)  # the connection is still usable
    assert sid == 4


def test_a_stream0_answer_up_to_the_cap_is_read() -> None:
    conn = _FakeDialerConn()
    dialer = ss.Session(conn)
    dialer.start(TARGET)
    info = sf.ControlMessage(sf.ControlType.AGENT_INFO, bytes(4096)).to_bytes()
    answer = info * 15 + sf.ControlMessage(sf.ControlType.SERVICE_STREAM_CAPABLE).to_bytes()
    assert len(answer) <= ss.ROUTE_ANSWER_MAX
    events: list[ss.SessionEvent] = []
    for i in range(0, len(answer), 1000):
        piece = answer[i : i + 1000]
        events += dialer.handle_event(qe.StreamDataReceived(
            data=piece, end_stream=i + 1000 >= len(answer), stream_id=0))  # fmt: skip
    (ctl,) = events
    assert isinstance(ctl, ss.PeerControl) and len(ctl.agent_info) == 15 and ctl.service_capable
    assert dialer.route_answer_overflows == 0 and not conn.stops
