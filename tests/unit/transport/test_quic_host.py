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
    server, client = QuicHost(_server, tracked=True), QuicHost(tracked=True)
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
    client.touch(conn)  # every command is followed by a mark
    events, packets = _send_all(server, client, now)
    assert packets > 10
    assert [(e.stream_id, e.data, e.end_stream) for e in events] == [(sid, b"x" * 20_000, True)]


def test_interleaved_streams_keep_their_bytes_apart() -> None:
    server, client, conn, now = _pair()
    a = conn.get_next_available_stream_id()
    conn.send_stream_data(a, b"x" * 20_000)
    client.touch(conn)  # every command is followed by a mark
    b = conn.get_next_available_stream_id()
    conn.send_stream_data(b, b"y" * 5_000, end_stream=True)
    client.touch(conn)  # every command is followed by a mark
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
    client.touch(conn)  # every command is followed by a mark
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

    server, client = QuicHost(factory, tracked=True), QuicHost(tracked=True)
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
    client.touch(conn)  # every command is followed by a mark
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
    client.touch(conn)  # every command is followed by a mark
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
    client.touch(conn)  # every command is followed by a mark
    _batches(server, client, now)
    events = [e for e in _drain(server) if isinstance(e, qe.StreamDataReceived)]
    assert b"".join(e.data for e in events) == b"z" * 50_000 and events[-1].end_stream


class _Panic(BaseException):
    """Stands for pyo3_runtime.PanicException (a direct BaseException subclass)."""


class _Breaking:
    """A SansIoConnection whose stack raises in ``where`` (or nowhere)."""

    def __init__(self, cid: bytes, where: str = "", exc: BaseException | None = None) -> None:
        self.host_cid = cid
        self.where = where
        self.exc = exc or _Panic("qh3 panicked")
        self.timer: float | None = 5.0
        self.timers_handled = 0
        self.closed_with: int | None = None

    def _maybe(self, name: str) -> None:
        if self.where == name:
            raise self.exc

    def connect(self, addr: Any, now: float) -> None:
        pass

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        self._maybe("receive_datagram")

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        self._maybe("datagrams_to_send")
        if self.closed_with is not None:
            return [(b"close", SERVER)]
        return []

    def get_timer(self) -> float | None:
        self._maybe("get_timer")
        return self.timer

    def handle_timer(self, now: float) -> None:
        self.timers_handled += 1
        self._maybe("handle_timer")
        self.timer = now + 5.0

    def next_event(self) -> qe.QuicEvent | None:
        return None

    def close(self, error_code: int = 0, reason_phrase: str = "") -> None:
        self.closed_with = error_code


def _gone(host: QuicHost) -> list[Any]:
    from a2al_mcp.transport.quic_host import ConnectionGone

    events = []
    while (e := host.next_event()) is not None:
        events.append(e)
    return [e for e in events if isinstance(e, ConnectionGone)]


def test_a_connection_whose_timer_panics_is_closed_and_forgotten() -> None:
    """At 45ad18d the panic left QuicHost.handle_timer (the endpoint counted it), the
    connection kept its slot and its past deadline, so the endpoint's timer loop fired on it
    again and again, and the connections after it in the loop got no timer at all."""
    host = QuicHost()
    bad, good = _Breaking(b"b" * 8, "handle_timer"), _Breaking(b"g" * 8)
    host.connect(bad, SERVER, 1.0)
    host.connect(good, SERVER, 1.0)
    assert host.get_timer() == 5.0
    host.handle_timer(6.0)  # must not raise
    assert good.timers_handled == 1  # the good one still got its timer
    (gone,) = _gone(host)
    assert gone.conn is bad and gone.error_code == 0x1  # INTERNAL_ERROR
    assert list(host.connections()) == [good] and len(host) == 1
    assert host.get_timer() == good.timer == 11.0  # bad's deadline is no longer reported
    assert host.statistics().failed == 1 and host.counters.connections_failed == 1
    assert bad.closed_with == 0x1
    assert (b"close", SERVER) in host.datagrams_to_send(6.0)  # its CONNECTION_CLOSE goes out
    host.handle_timer(12.0)
    assert bad.timers_handled == 1  # never called again


def test_every_stack_entry_point_is_contained() -> None:
    for where in ("receive_datagram", "datagrams_to_send", "get_timer"):
        host = QuicHost()
        cid = b"c" * 8
        bad, good = _Breaking(cid, where), _Breaking(b"g" * 8)
        host.connect(bad, SERVER, 1.0)
        host.connect(good, SERVER, 1.0)
        if where == "receive_datagram":
            host.receive_datagram(b"\x40" + cid + bytes(30), SERVER, 2.0)
        elif where == "datagrams_to_send":
            host.datagrams_to_send(2.0)
        else:
            assert host.get_timer() == 5.0  # good's
        assert list(host.connections()) == [good], where
        assert [g.conn for g in _gone(host)] == [bad], where
        assert host.statistics().failed == 1, where


def test_cancellation_from_a_connection_is_not_contained() -> None:
    import asyncio

    import pytest

    host = QuicHost()
    host.connect(_Breaking(b"x" * 8, "handle_timer", asyncio.CancelledError()), SERVER, 1.0)
    with pytest.raises(asyncio.CancelledError):
        host.handle_timer(6.0)
