"""qh3 as the QUIC stack of outbound connections: the same A2AL mutual authentication as the
aioquic client, against our aioquic server, in memory (no sockets). See test_tls.py for the
helpers and the aioquic-only cases."""

from __future__ import annotations

import dataclasses

import pytest
from aioquic.quic import events
from qh3 import tls as qh3_tls
from qh3.quic import events as qh3_events
from qh3.quic.connection import QuicConnection as Qh3Connection

from a2al_mcp._random import SeededRng
from a2al_mcp.identity import Aid
from a2al_mcp.transport import tls_qh3
from a2al_mcp.transport.tls import (
    ALPN,
    MAX_DATA,
    MAX_DATAGRAM_SIZE,
    MAX_STREAM_DATA,
    CertificateStore,
    LocalCertificate,
    PeerIdentity,
    pending_send_bytes,
)
from tests.unit.transport.test_tls import (
    BAD_DELEGATIONS,
    CLIENT_ADDR,
    LATENCY,
    T0,
    Wire,
    assert_refused,
    bad_delegation,
    completed,
    delegated,
    local,
    native,
    terminated,
)


class Qh3Wire(Wire):
    """Test_tls's wire with a qh3 client."""

    def __init__(
        self,
        client: LocalCertificate | None,
        expected: Aid,
        store: CertificateStore,
        *,
        wall: float = T0,
    ) -> None:
        self.store = store
        self.wall = wall
        self.now = 0.0
        self.client = tls_qh3.qh3_client_connection(  # type: ignore[assignment]
            client, expected, now_wall=lambda: wall
        )
        self.server = None
        self.client_events: list[events.QuicEvent] = []
        self.server_events: list[events.QuicEvent] = []
        self.client.connect(("192.0.2.2", 4121), now=self.now)


def test_the_private_names_we_use_exist() -> None:
    assert callable(Qh3Connection._create_tls)
    assert callable(qh3_tls.Context._client_handle_certificate_verify)
    ctx = qh3_tls.Context(is_client=True)
    assert ctx._peer_certificate is None
    rng = SeededRng(40)
    conn = tls_qh3.qh3_client_connection(None, native(rng).aid, now_wall=lambda: T0)
    assert conn._handshake_confirmed is False


def test_configuration_matches_the_aioquic_client() -> None:
    rng = SeededRng(41)
    me, them = native(rng), native(rng)
    conn = tls_qh3.qh3_client_connection(local(me, rng), them.aid, now_wall=lambda: T0)
    cfg = conn.configuration
    assert cfg.is_client and cfg.alpn_protocols == [ALPN] and cfg.server_name == str(them.aid)
    assert cfg.max_datagram_size == MAX_DATAGRAM_SIZE and cfg.probe_datagram_size  # PMTUD
    assert (cfg.max_data, cfg.max_stream_data) == (MAX_DATA, MAX_STREAM_DATA)
    assert cfg.session_ticket is None and cfg.signature_algorithms is not None
    assert cfg.signature_algorithms[0] == 0x0807  # Ed25519
    assert conn.local_identity_aid == me.aid and conn.server_name == str(them.aid)
    assert (
        tls_qh3.qh3_client_connection(None, them.aid, now_wall=lambda: T0).local_identity_aid
        is None
    )


def test_handshake_confirms_only_after_handshake_done() -> None:
    rng = SeededRng(42)
    alice, bob = native(rng), delegated(rng)
    store = CertificateStore.generate(native(rng), bob, now=T0, rng=rng)
    wire = Qh3Wire(local(alice, rng), bob.aid, store)
    assert wire.to_server() > 0
    assert wire.to_client() > 0
    assert completed(wire.client_events) is not None  # ... but not confirmed yet
    assert not wire.client.handshake_confirmed and wire.client.peer_identity is None
    assert wire.to_server() > 0
    assert wire.server is not None and wire.server.handshake_confirmed
    assert wire.server.peer_identity == PeerIdentity(alice.aid, bytes(alice.key.public), None)
    assert not wire.client.handshake_confirmed
    wire.run()
    assert wire.client.handshake_confirmed
    peer = wire.client.peer_identity
    assert peer is not None and peer.aid == bob.aid and peer.delegation == bob.delegation
    assert terminated(wire.client_events) is None and terminated(wire.server_events) is None


def test_data_both_ways_and_events_are_aioquic_objects() -> None:
    rng = SeededRng(43)
    alice, bob = native(rng), native(rng)
    wire = Qh3Wire(local(alice, rng), bob.aid, CertificateStore.generate(bob, now=T0, rng=rng))
    wire.run()
    sid = wire.client.get_next_available_stream_id()
    wire.client.send_stream_data(sid, b"x" * 5000, end_stream=True)
    assert pending_send_bytes(wire.client, sid) == 5000  # written, not sent yet
    wire.run()
    assert pending_send_bytes(wire.client, sid) == 0
    assert wire.server is not None
    wire.server.send_stream_data(sid, b"pong", end_stream=True)
    wire.run()
    got = [e for e in wire.server_events if isinstance(e, events.StreamDataReceived)]
    assert b"".join(e.data for e in got) == b"x" * 5000 and got[-1].end_stream
    back = [e for e in wire.client_events if isinstance(e, events.StreamDataReceived)]
    assert b"".join(e.data for e in back) == b"pong" and back[-1].stream_id == sid
    assert all(type(e).__module__ == events.__name__ for e in wire.client_events)
    assert any(isinstance(e, events.HandshakeCompleted) for e in wire.client_events)


def test_client_refuses_a_server_that_is_someone_else() -> None:
    rng = SeededRng(44)
    caller, expected, impostor = native(rng), native(rng), native(rng)
    wire = Qh3Wire(local(caller, rng), expected.aid,
                   CertificateStore.generate(impostor, now=T0, rng=rng))  # fmt: skip
    assert_refused(wire, by_server=False, reason=f"is for {impostor.aid}, not {expected.aid}")
    assert completed(wire.client_events) is None


@pytest.mark.parametrize("kind", sorted(BAD_DELEGATIONS))
def test_client_refuses_a_bad_server_delegation(kind: str) -> None:
    rng = SeededRng(45)
    node, caller = native(rng), native(rng)
    bad = bad_delegation(kind, rng)
    store = CertificateStore(local(node, rng))
    store.add(bad)
    wire = Qh3Wire(local(caller, rng), bad.aid, store)
    assert_refused(wire, by_server=False, reason=BAD_DELEGATIONS[kind])
    assert completed(wire.client_events) is None


@pytest.mark.parametrize("kind", sorted(BAD_DELEGATIONS))
def test_server_refuses_a_qh3_client_with_a_bad_delegation(kind: str) -> None:
    rng = SeededRng(46)
    node = native(rng)
    wire = Qh3Wire(bad_delegation(kind, rng), node.aid,
                   CertificateStore.generate(node, now=T0, rng=rng))  # fmt: skip
    assert_refused(wire, by_server=True, reason=BAD_DELEGATIONS[kind])
    assert not wire.client.handshake_confirmed


def test_server_refuses_a_qh3_client_without_certificate() -> None:
    rng = SeededRng(47)
    node = native(rng)
    wire = Qh3Wire(None, node.aid, CertificateStore.generate(node, now=T0, rng=rng))
    assert_refused(wire, by_server=True, reason="client certificate required")


def test_expiry_is_judged_by_the_wall_clock() -> None:
    rng = SeededRng(48)
    agent = delegated(rng, issued_at=T0 - 1000, expires_at=T0 + 3600)
    store = CertificateStore.generate(native(rng), agent, now=T0, rng=rng)
    caller = local(native(rng), rng)
    ok = Qh3Wire(caller, agent.aid, store)
    ok.run()
    assert ok.client.handshake_confirmed
    late = Qh3Wire(caller, agent.aid, store, wall=T0 + 3600 + 60)
    assert_refused(late, by_server=False, reason="expired")


def test_every_qh3_event_with_an_aioquic_twin_is_translated() -> None:
    names = {n for n in dir(events) if dataclasses.is_dataclass(getattr(events, n))}
    for name in names & set(dir(qh3_events)):
        ours, theirs = getattr(events, name), getattr(qh3_events, name)
        assert tls_qh3._EVENTS[theirs][0] is ours
    assert events.StreamDataReceived in {cls for cls, _ in tls_qh3._EVENTS.values()}


def test_path_mtu_discovery_grows_packets_beyond_the_safe_minimum() -> None:
    rng = SeededRng(49)
    alice, bob = native(rng), native(rng)
    wire = Qh3Wire(local(alice, rng), bob.aid, CertificateStore.generate(bob, now=T0, rng=rng))
    wire.run()
    assert wire.server is not None
    sid = wire.client.get_next_available_stream_id()
    wire.client.send_stream_data(sid, bytes(300_000), end_stream=True)
    largest = 0
    for _ in range(200):
        wire.now += LATENCY
        for data, _ in wire.client.datagrams_to_send(wire.now):
            largest = max(largest, len(data))
            wire.server.receive_datagram(data, CLIENT_ADDR, wire.now)
        wire.to_client()
        for conn in (wire.client, wire.server):
            timer = conn.get_timer()
            if timer is not None and timer <= wire.now:
                conn.handle_timer(wire.now)
    got = [e for e in wire.server_events if isinstance(e, events.StreamDataReceived)]
    assert sum(len(e.data) for e in got) == 300_000
    assert largest > MAX_DATAGRAM_SIZE  # grew only after a probe of that size was acknowledged
