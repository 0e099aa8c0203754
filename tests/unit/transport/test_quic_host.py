"""QuicHost: routing by connection ID and one event per run of in-order stream data."""

from __future__ import annotations

import datetime

from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from a2al_mcp.transport.quic_host import ConnectionEvent, QuicHost

CLIENT, SERVER = ("127.0.0.1", 1000), ("127.0.0.1", 2000)


def _cert() -> tuple[x509.Certificate, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "a2al")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, None)
    )  # fmt: skip
    return cert, key


CERT, KEY = _cert()


def _server(dcid: bytes, addr: tuple[str, int]) -> QuicConnection:
    cfg = QuicConfiguration(is_client=False, alpn_protocols=["a2al-quic-1"])
    cfg.certificate, cfg.private_key = CERT, KEY
    return QuicConnection(configuration=cfg, original_destination_connection_id=dcid)


def _pair() -> tuple[QuicHost, QuicHost, QuicConnection, float]:
    server, client = QuicHost(_server), QuicHost()
    cfg = QuicConfiguration(is_client=True, alpn_protocols=["a2al-quic-1"])
    cfg.verify_mode = 0
    conn = QuicConnection(configuration=cfg)
    now = 1.0
    client.connect(conn, SERVER, now)
    for _ in range(10):
        now = _move(client, server, now)
        _drain(client), _drain(server)
    return server, client, conn, now


def _move(client: QuicHost, server: QuicHost, now: float) -> float:
    for src, dst, addr in ((client, server, CLIENT), (server, client, SERVER)):
        for data, _ in src.datagrams_to_send(now):
            dst.receive_datagram(data, addr, now)
    return now + 0.001


def _drain(host: QuicHost) -> list[qe.QuicEvent]:
    out = []
    while (e := host.next_event()) is not None:
        if isinstance(e, ConnectionEvent):
            out.append(e.event)
    return out


def _send_all(server: QuicHost, client: QuicHost, now: float) -> tuple[list[qe.QuicEvent], int]:
    """Move everything; the server answers (ACKs) but its events are read only at the end."""
    packets = 0
    for _ in range(50):
        for data, _ in client.datagrams_to_send(now):
            server.receive_datagram(data, CLIENT, now)
            packets += 1
        for data, _ in server.datagrams_to_send(now):
            client.receive_datagram(data, SERVER, now)
        _drain(client)
        now += 0.002
    return [e for e in _drain(server) if isinstance(e, qe.StreamDataReceived)], packets


def test_in_order_data_of_one_stream_leaves_as_one_event() -> None:
    server, client, conn, now = _pair()
    sid = conn.get_next_available_stream_id()
    conn.send_stream_data(sid, b"x" * 20_000, end_stream=True)
    events, packets = _send_all(server, client, now)
    assert packets > 10
    assert [(e.stream_id, e.data, e.end_stream) for e in events] == [(sid, b"x" * 20_000, True)]


def test_interleaved_streams_keep_their_bytes_apart() -> None:
    server, client, conn, now = _pair()
    a = conn.get_next_available_stream_id()
    conn.send_stream_data(a, b"x" * 20_000)
    b = conn.get_next_available_stream_id()
    conn.send_stream_data(b, b"y" * 5_000, end_stream=True)
    events, _ = _send_all(server, client, now)
    by_stream: dict[int, bytes] = {}
    for e in events:
        by_stream[e.stream_id] = by_stream.get(e.stream_id, b"") + e.data
    assert by_stream == {a: b"x" * 20_000, b: b"y" * 5_000}
    assert [e.end_stream for e in events if e.stream_id == b][-1] is True
    assert not any(e.end_stream for e in events if e.stream_id == a)


def test_a_finished_run_is_not_extended() -> None:
    server, client, conn, now = _pair()
    sid = conn.get_next_available_stream_id()
    conn.send_stream_data(sid, b"abc", end_stream=True)
    for data, _ in client.datagrams_to_send(now):
        server.receive_datagram(data, CLIENT, now)
    events = [e for e in _drain(server) if isinstance(e, qe.StreamDataReceived)]
    assert [(e.data, e.end_stream) for e in events] == [(b"abc", True)]


def test_garbage_short_header_datagrams_are_dropped() -> None:
    server, _, _, now = _pair()
    server.receive_datagram(b"\x41" + b"\x00" * 30, CLIENT, now)  # unknown DCID
    server.receive_datagram(b"\x41", CLIENT, now)  # too short to hold a DCID
    stats = server.statistics()
    assert stats.connections == 1
    assert stats.dropped_unknown + stats.dropped_malformed == 2
