"""qh3 as the QUIC stack of our connections: the same A2AL mutual authentication as aioquic,
as a client against our aioquic server and as a server (with the client-certificate states
we add to qh3's TLS) against qh3 and aioquic clients, in memory (no sockets). See test_tls.py
for the helpers and the aioquic-only cases."""

from __future__ import annotations

import dataclasses
import ssl

import pytest
from aioquic.buffer import Buffer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection as AioquicConnection
from aioquic.quic.packet import pull_quic_header
from cryptography.hazmat.primitives.asymmetric import ec
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
    client_configuration,
    pending_send_bytes,
)
from tests.unit.transport.test_tls import (
    BAD_DELEGATIONS,
    CLIENT_ADDR,
    LATENCY,
    NO_APPLICATION_PROTOCOL,
    SERVER_ADDR,
    T0,
    Wire,
    a2ald_client_hello,
    assert_refused,
    bad_delegation,
    completed,
    custom_certificate,
    delegated,
    ed25519_key,
    local,
    native,
    terminated,
)

BAD_SIGNATURE = 0x100 + 51  # CRYPTO_ERROR + decrypt_error


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


class _Qh3Server:
    """Makes a wire's server a :class:`tls_qh3.Qh3ServerConnection`."""

    server: tls_qh3.Qh3ServerConnection | None
    store: CertificateStore
    wall: float

    def _server_for(self, data: bytes) -> tls_qh3.Qh3ServerConnection:
        if self.server is None:
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
            self.server = tls_qh3.qh3_server_connection(
                self.store,
                original_destination_connection_id=header.destination_cid,
                now_wall=lambda: self.wall,
            )
        return self.server


class Qh3BothWire(_Qh3Server, Qh3Wire):  # type: ignore[misc]
    """qh3 on both sides."""


class AioquicToQh3Wire(_Qh3Server, Wire):  # type: ignore[misc]
    """An aioquic client and a qh3 server."""


def qh3_dial(
    client: LocalCertificate | None, expected: Aid, store: CertificateStore, *, stack: str
) -> Wire:
    """A wire to a qh3 server from a client of ``stack``."""
    if stack == "qh3":
        return Qh3BothWire(client, expected, store)
    return AioquicToQh3Wire(client_configuration(client, expected), expected, store)


CLIENT_STACKS = ("qh3", "aioquic")


def test_the_private_names_we_use_exist() -> None:
    assert callable(Qh3Connection._create_tls)
    assert callable(qh3_tls.Context._client_handle_certificate_verify)
    assert callable(qh3_tls.Context._server_handle_hello)
    assert callable(qh3_tls.Context._server_handle_finished)
    assert callable(qh3_tls.Context._setup_traffic_protection)
    assert callable(qh3_tls._is_grease_value)
    assert callable(qh3_tls.Context._client_handle_hello)
    assert callable(qh3_tls.pull_server_hello)
    ctx = qh3_tls.Context(is_client=True)
    assert ctx._peer_certificate is None
    assert ctx._receive_buffer == b""
    for name in ("x25519_kyber_768", "x25519", "ec_p256", "ec_p384", "ec_p521"):
        assert getattr(ctx, f"_{name}_private_key") is None  # set when the hello is sent
    server = qh3_tls.Context(is_client=False)
    assert server.state == qh3_tls.State.SERVER_EXPECT_CLIENT_HELLO
    assert server._receive_buffer == b""
    assert server._cipher_suites and server._legacy_compression_methods
    assert server._supported_versions and server._alpn_protocols is None
    assert server._enc_key is None and server._dec_key is None
    rng = SeededRng(40)
    conn = tls_qh3.qh3_client_connection(None, native(rng).aid, now_wall=lambda: T0)
    assert conn._handshake_confirmed is False and conn._close_event is None


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


# ------------------------------------------------------------------------ qh3 as the server


@pytest.mark.parametrize("stack", CLIENT_STACKS)
def test_qh3_server_requires_and_verifies_the_client_certificate(stack: str) -> None:
    rng = SeededRng(60)
    alice, node, agent = native(rng), native(rng), delegated(rng)
    store = CertificateStore.generate(node, agent, now=T0, rng=rng)
    wire = qh3_dial(local(alice, rng), agent.aid, store, stack=stack)
    wire.run()
    server = wire.server
    assert isinstance(server, tls_qh3.Qh3ServerConnection)
    assert server.server_name == str(agent.aid) and server.local_identity_aid == agent.aid
    assert server.handshake_confirmed and wire.client.handshake_confirmed
    assert server.peer_identity == PeerIdentity(alice.aid, bytes(alice.key.public), None)
    assert wire.client.peer_identity == PeerIdentity(
        agent.aid, bytes(agent.key.public), agent.delegation
    )
    assert completed(wire.server_events) is not None
    assert terminated(wire.client_events) is None and terminated(wire.server_events) is None


@pytest.mark.parametrize("stack", CLIENT_STACKS)
def test_qh3_server_is_confirmed_only_after_the_client_certificate(stack: str) -> None:
    rng = SeededRng(61)
    alice, bob = native(rng), native(rng)
    wire = qh3_dial(local(alice, rng), bob.aid, CertificateStore.generate(bob, now=T0, rng=rng),
                    stack=stack)  # fmt: skip
    assert wire.to_server() > 0  # ClientHello
    assert wire.server is not None and wire.server.local_identity_aid == bob.aid
    # ServerHello ... CertificateRequest ... Finished, whole in one flight: an aioquic
    # ClientHello is one 1200-byte datagram whose padding qh3 alone would not count towards
    # the anti-amplification budget, and the flight would stall until the client's PTO
    assert wire.to_client() > 1
    assert completed(wire.client_events) is not None
    assert not wire.server.handshake_confirmed and wire.server.peer_identity is None
    assert completed(wire.server_events) is None
    assert wire.to_server() > 0  # Certificate, CertificateVerify, Finished
    assert wire.server.handshake_confirmed
    assert wire.server.peer_identity is not None and wire.server.peer_identity.aid == alice.aid


@pytest.mark.parametrize("stack", CLIENT_STACKS)
def test_qh3_server_picks_the_certificate_named_by_sni(stack: str) -> None:
    rng = SeededRng(62)
    node, agent1, agent2, caller = native(rng), delegated(rng), delegated(rng), delegated(rng)
    store = CertificateStore.generate(node, agent1, agent2, now=T0, rng=rng)
    for target in (agent2, agent1, node):
        wire = qh3_dial(local(caller, rng), target.aid, store, stack=stack)
        wire.run()
        assert wire.server is not None and wire.server.local_identity_aid == target.aid
        assert wire.client.peer_identity is not None
        assert wire.client.peer_identity.aid == target.aid
        assert wire.server.peer_identity == PeerIdentity(
            caller.aid, bytes(caller.key.public), caller.delegation
        )


@pytest.mark.parametrize("stack", CLIENT_STACKS)
def test_qh3_server_refuses_a_client_without_certificate(stack: str) -> None:
    rng = SeededRng(63)
    node = native(rng)
    wire = qh3_dial(None, node.aid, CertificateStore.generate(node, now=T0, rng=rng), stack=stack)
    assert_refused(wire, by_server=True, reason="client certificate required")


@pytest.mark.parametrize("stack", CLIENT_STACKS)
@pytest.mark.parametrize("kind", sorted(BAD_DELEGATIONS))
def test_qh3_server_refuses_a_bad_client_delegation(stack: str, kind: str) -> None:
    rng = SeededRng(64)
    node = native(rng)
    store = CertificateStore.generate(node, now=T0, rng=rng)
    wire = qh3_dial(bad_delegation(kind, rng), node.aid, store, stack=stack)
    assert_refused(wire, by_server=True, reason=BAD_DELEGATIONS[kind])
    assert completed(wire.client_events) is not None  # the TLS 1.3 trap, as with aioquic


@pytest.mark.parametrize("stack", CLIENT_STACKS)
def test_qh3_server_refuses_a_signature_by_another_key(stack: str) -> None:
    # the certificate is alice's, the CertificateVerify is signed with some other key
    rng = SeededRng(65)
    alice, node = native(rng), native(rng)
    impostor = LocalCertificate(alice, local(alice, rng).certificate, ed25519_key(rng))
    wire = qh3_dial(impostor, node.aid, CertificateStore.generate(node, now=T0, rng=rng),
                    stack=stack)  # fmt: skip
    assert_refused(wire, by_server=True, reason="bad client CertificateVerify",
                   code=BAD_SIGNATURE)  # fmt: skip


def test_qh3_server_accepts_no_non_ed25519_client() -> None:
    # a plain aioquic client with a P-256 certificate: the server asks for Ed25519 only
    rng = SeededRng(66)
    caller, node = native(rng), native(rng)
    key = ec.generate_private_key(ec.SECP256R1())
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=[ALPN],
        server_name=str(node.aid),
        verify_mode=ssl.CERT_NONE,
        certificate=custom_certificate(key),
        private_key=key,
    )
    wire = qh3_dial(local(caller, rng), node.aid,
                    CertificateStore.generate(node, now=T0, rng=rng), stack="aioquic")  # fmt: skip
    wire.client = AioquicConnection(configuration=config)  # type: ignore[assignment]
    wire.client.connect(SERVER_ADDR, now=wire.now)
    wire.run_to_close()
    assert wire.server is not None and not wire.server.handshake_confirmed
    assert wire.server.peer_identity is None
    assert completed(wire.server_events) is None and terminated(wire.server_events) is not None


def test_qh3_server_refuses_a_wrong_alpn() -> None:
    rng = SeededRng(67)
    caller, node = native(rng), native(rng)
    config = client_configuration(local(caller, rng), node.aid)
    config.alpn_protocols = ["h3"]
    wire = AioquicToQh3Wire(config, node.aid, CertificateStore.generate(node, now=T0, rng=rng))
    assert_refused(
        wire, by_server=True, reason="No common ALPN protocols", code=NO_APPLICATION_PROTOCOL
    )


@pytest.mark.parametrize("stack", CLIENT_STACKS)
def test_qh3_server_data_both_ways_and_writes_after_close_are_dropped(stack: str) -> None:
    rng = SeededRng(68)
    alice, bob = native(rng), native(rng)
    wire = qh3_dial(local(alice, rng), bob.aid, CertificateStore.generate(bob, now=T0, rng=rng),
                    stack=stack)  # fmt: skip
    wire.run()
    server = wire.server
    assert isinstance(server, tls_qh3.Qh3ServerConnection)
    sid = wire.client.get_next_available_stream_id()
    wire.client.send_stream_data(sid, b"y" * 200_000, end_stream=True)
    wire.run(max_rounds=200)
    server.send_stream_data(sid, b"z" * 100_000, end_stream=True)
    wire.run(max_rounds=200)
    got = [e for e in wire.server_events if isinstance(e, events.StreamDataReceived)]
    assert b"".join(e.data for e in got) == b"y" * 200_000 and got[-1].end_stream
    back = [e for e in wire.client_events if isinstance(e, events.StreamDataReceived)]
    assert b"".join(e.data for e in back) == b"z" * 100_000 and back[-1].end_stream
    assert all(type(e).__module__ == events.__name__ for e in wire.server_events)
    server.close(error_code=0, reason_phrase="bye")
    server.send_stream_data(sid + 4, b"late")  # qh3's core would raise; aioquic drops it
    server.reset_stream(sid + 4, 1)
    server.stop_stream(sid + 4, 1)
    assert server.pending_send_bytes(sid + 4) == 0
    wire.run_to_close()
    assert terminated(wire.client_events) is not None


def test_qh3_server_answers_a_real_a2ald_client_hello() -> None:
    """a2ald 0.3.5 (quic-go) dialled a peer in the captures; its ClientHello (X25519MLKEM768)
    spans two Initial packets. The qh3 server reads the SNI, falls back to its default
    certificate (it is not that AID) and answers with its flight."""
    dcid, hello = a2ald_client_hello()
    rng = SeededRng(69)
    store = CertificateStore.generate(native(rng), now=T0, rng=rng)
    server = tls_qh3.qh3_server_connection(
        store, original_destination_connection_id=dcid, now_wall=lambda: T0
    )
    for data in hello:
        server.receive_datagram(data, ("127.0.0.1", 41213), 0.0)
    sni = server.server_name
    assert sni is not None and str(Aid.from_str(sni)) == sni
    assert server.local_identity_aid == store.default.aid
    assert events.ProtocolNegotiated(alpn_protocol=ALPN) in iter(server.next_event, None)
    flight = server.datagrams_to_send(0.0)
    assert sum(len(d) for d, _ in flight) > 1200  # ServerHello ... Finished
    assert server.peer_identity is None and not server.handshake_confirmed
