"""QuicHost: routing by connection ID, one event per run of in-order stream data, and batches
handed to a qh3 connection in one call."""

from __future__ import annotations

import datetime
from typing import Any

from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from a2al_mcp._random import SeededRng
from a2al_mcp.identity import Identity
from a2al_mcp.transport import tls_qh3
from a2al_mcp.transport.quic_host import ConnectionEvent, QuicHost
from a2al_mcp.transport.tls import CertificateStore, LocalCertificate

CLIENT, SERVER = ("127.0.0.1", 1000), ("127.0.0.1", 2000)
T0 = 1_700_000_000


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


# ------------------------------------------------------------------------ batches


def _qh3_pair() -> tuple[QuicHost, QuicHost, Any, list[int], float]:
    """Two hosts with qh3 connections; ``runs`` records the size of every batch the server
    connection took in one ``receive_many_datagrams`` call."""
    rng = SeededRng(3)
    alice, bob = Identity.generate(rng), Identity.generate(rng)
    store = CertificateStore.generate(bob, now=T0, rng=rng)
    runs: list[int] = []

    def factory(dcid: bytes, addr: tuple[str, int]) -> Any:
        conn = tls_qh3.qh3_server_connection(
            store, original_destination_connection_id=dcid, now_wall=lambda: T0
        )
        take = conn.receive_many_datagrams

        def spy(datagrams: list[bytes], addr: Any, now: float) -> None:
            runs.append(len(datagrams))
            take(datagrams, addr, now)

        conn.receive_many_datagrams = spy  # type: ignore[method-assign]
        return conn

    server, client = QuicHost(factory), QuicHost()
    local = LocalCertificate.create(alice, now=T0, rng=rng)
    conn = tls_qh3.qh3_client_connection(local, bob.aid, now_wall=lambda: T0)
    now = 1.0
    client.connect(conn, SERVER, now)
    for _ in range(10):
        now = _move(client, server, now)
        _drain(client), _drain(server)
    assert conn.handshake_confirmed
    return server, client, conn, runs, now


def _batches(server: QuicHost, client: QuicHost, now: float, first: Any = None) -> float:
    """Move everything, the client's datagrams to the server a batch per round (``first``
    may rewrite the first batch)."""
    for i in range(50):
        batch = [(data, CLIENT) for data, _ in client.datagrams_to_send(now)]
        server.receive_datagrams(first(batch) if i == 0 and first else batch, now)
        for data, _ in server.datagrams_to_send(now):
            client.receive_datagram(data, SERVER, now)
        _drain(client)
        now += 0.002
    return now


def test_a_batch_reaches_a_qh3_connection_in_one_call() -> None:
    server, client, conn, runs, now = _qh3_pair()
    sid = conn.get_next_available_stream_id()
    conn.send_stream_data(sid, b"x" * 100_000, end_stream=True)
    garbage = (b"\x41" + b"\x00" * 30, CLIENT)  # unknown DCID, in the middle of the batch
    first: list[int] = []

    def insert(batch: list[Any]) -> list[Any]:
        first.append(len(batch))
        return [*batch[:5], garbage, *batch[5:]]

    _batches(server, client, now, insert)
    assert first[0] > 10 and runs[:2] == [5, first[0] - 5]  # the garbage split the run
    assert server.statistics().dropped_unknown == 1
    events = [e for e in _drain(server) if isinstance(e, qe.StreamDataReceived)]
    assert b"".join(e.data for e in events) == b"x" * 100_000 and events[-1].end_stream


def test_a_batch_keeps_datagrams_from_another_address_apart() -> None:
    server, client, conn, runs, now = _qh3_pair()
    sid = conn.get_next_available_stream_id()
    conn.send_stream_data(sid, b"y" * 50_000, end_stream=True)
    moved = ("127.0.0.1", 1001)  # a NAT rebinding mid-batch: a new path
    first: list[int] = []

    def rebind(batch: list[Any]) -> list[Any]:
        first.append(len(batch))
        return [*batch[:3], (batch[3][0], moved), *batch[4:]]

    _batches(server, client, now, rebind)
    assert runs[:2] == [3, first[0] - 4]  # the one from elsewhere went alone
    events = [e for e in _drain(server) if isinstance(e, qe.StreamDataReceived)]
    assert b"".join(e.data for e in events) == b"y" * 50_000


def test_aioquic_connections_take_a_batch_one_datagram_at_a_time() -> None:
    server, client, conn, now = _pair()
    sid = conn.get_next_available_stream_id()
    conn.send_stream_data(sid, b"z" * 50_000, end_stream=True)
    _batches(server, client, now)
    events = [e for e in _drain(server) if isinstance(e, qe.StreamDataReceived)]
    assert b"".join(e.data for e in events) == b"z" * 50_000 and events[-1].end_stream
