"""QUIC TLS: certificates, peer-AID checks and mutual authentication in aioquic (a2al-wire §5.1).

Handshakes run between two in-memory connections that hand each other their datagrams; no
sockets. Time is fixed: the QUIC clock starts at 0 and the wall clock reads T0.
"""

from __future__ import annotations

import dataclasses
import datetime
import ssl
from collections.abc import Callable

import pytest
from aioquic import tls
from aioquic.buffer import Buffer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicErrorCode, QuicPacketType, encode_quic_retry, pull_quic_header
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from a2al_mcp import _cbor
from a2al_mcp._random import SeededRng
from a2al_mcp.errors import DecodeError, UsageError, VerificationError
from a2al_mcp.identity import Aid, DelegatedIdentity, Identity, SigningKey
from a2al_mcp.transport import certificates
from a2al_mcp.transport.tls import (
    ALPN,
    CERT_BACKDATE_S,
    CERT_LIFETIME_S,
    DELEGATION_OID,
    IDLE_TIMEOUT_S,
    MAX_DATAGRAM_SIZE,
    A2ALQuicConnection,
    CertificateStore,
    DelegationExtension,
    LocalCertificate,
    PeerIdentity,
    client_configuration,
    identify_client,
    identify_server,
    make_certificate,
    pending_send_bytes,
    server_configuration,
)
from tests.conftest import load_captures

T0 = 1_700_000_000
CLIENT_ADDR = ("192.0.2.1", 4121)
SERVER_ADDR = ("192.0.2.2", 4121)
LATENCY = 0.005
"""QUIC time moves this much per delivery (aioquic paces sends at a fixed ``now``)."""
BAD_CERTIFICATE = QuicErrorCode.CRYPTO_ERROR + tls.AlertDescription.bad_certificate
NO_APPLICATION_PROTOCOL = QuicErrorCode.CRYPTO_ERROR + tls.AlertDescription.no_application_protocol


# ------------------------------------------------------------------------ helpers


def native(rng: SeededRng) -> Identity:
    return Identity.generate(rng)


def delegated(rng: SeededRng, *, issued_at: int = T0 - 1000, expires_at: int = 0) -> Identity:
    return DelegatedIdentity.generate(rng, issued_at=issued_at, expires_at=expires_at).identity


def local(identity: Identity, rng: SeededRng) -> LocalCertificate:
    return LocalCertificate.create(identity, now=T0, rng=rng)


def custom_certificate(
    key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey, extension: bytes | None = None
) -> x509.Certificate:
    """A certificate built without make_certificate: any key, any extension bytes."""
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "a2al")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime.fromtimestamp(T0 - 3600, tz=datetime.UTC))
        .not_valid_after(datetime.datetime.fromtimestamp(T0 + 3600, tz=datetime.UTC))
    )
    if extension is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(DELEGATION_OID, extension), critical=False
        )
    if isinstance(key, Ed25519PrivateKey):
        return builder.sign(key, algorithm=None)
    return builder.sign(key, hashes.SHA256())


def ed25519_key(rng: SeededRng) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(rng.bytes(32))


def tampered(identity: Identity) -> Identity:
    """The same identity with one bit of its proof's signature flipped."""
    assert identity.delegation is not None
    sig = bytearray(identity.delegation.signature)
    sig[0] ^= 1
    proof = dataclasses.replace(identity.delegation, signature=bytes(sig))
    return Identity(identity.key, identity.aid, proof)


def bad_delegation(kind: str, rng: SeededRng) -> LocalCertificate:
    """A delegated identity's certificate whose proof must not verify at T0."""
    if kind == "tampered signature":
        return local(tampered(delegated(rng)), rng)
    if kind == "expired":
        return local(delegated(rng, issued_at=T0 - 1000, expires_at=T0 - 100), rng)
    assert kind == "wrong operational key"
    ident = delegated(rng)
    assert ident.delegation is not None
    other = ed25519_key(rng)  # signs the certificate, but the proof names ident.key
    ext = DelegationExtension(ident.aid, ident.delegation).to_bytes()
    return LocalCertificate(ident, custom_certificate(other, ext), other)


BAD_DELEGATIONS = {
    "tampered signature": "signature does not verify",
    "expired": "expired",
    "wrong operational key": "different operational key",
}


class Wire:
    """A client connection and the server connection it creates, joined in memory."""

    def __init__(
        self,
        configuration: QuicConfiguration,
        expected: Aid,
        store: CertificateStore,
        *,
        wall: float = T0,
    ) -> None:
        self.store = store
        self.wall = wall
        self.now = 0.0
        self.client = A2ALQuicConnection(
            configuration=configuration, now_wall=lambda: wall, expected=expected
        )
        self.server: A2ALQuicConnection | None = None
        self.client_events: list[events.QuicEvent] = []
        self.server_events: list[events.QuicEvent] = []
        self.client.connect(SERVER_ADDR, now=self.now)

    def _server_for(self, data: bytes) -> A2ALQuicConnection:
        if self.server is None:
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
            self.server = A2ALQuicConnection(
                configuration=server_configuration(self.store),
                now_wall=lambda: self.wall,
                store=self.store,
                original_destination_connection_id=header.destination_cid,
            )
        return self.server

    def drain(self) -> None:
        while (event := self.client.next_event()) is not None:
            self.client_events.append(event)
        while self.server is not None and (event := self.server.next_event()) is not None:
            self.server_events.append(event)

    def to_server(self) -> int:
        """Deliver what the client has queued; return how many datagrams."""
        self.now += LATENCY
        sent = self.client.datagrams_to_send(self.now)
        for data, addr in sent:
            assert addr == SERVER_ADDR
            self._server_for(data).receive_datagram(data, CLIENT_ADDR, self.now)
        self.drain()
        return len(sent)

    def to_client(self) -> int:
        """Deliver what the server has queued; return how many datagrams."""
        self.now += LATENCY
        sent = [] if self.server is None else self.server.datagrams_to_send(self.now)
        for data, addr in sent:
            assert addr == CLIENT_ADDR
            self.client.receive_datagram(data, SERVER_ADDR, self.now)
        self.drain()
        return len(sent)

    def run(self, max_rounds: int = 10) -> None:
        """Exchange datagrams until neither side has anything to send (no timers)."""
        for _ in range(max_rounds):
            if self.to_server() + self.to_client() == 0:
                return
        raise AssertionError("the connections did not settle")

    def run_to_close(self, max_steps: int = 20) -> None:
        """Exchange datagrams and fire timers until both sides reported termination."""
        for _ in range(max_steps):
            self.run()
            if terminated(self.client_events) and terminated(self.server_events):
                return
            conns = [c for c in (self.client, self.server) if c is not None]
            timers = [t for c in conns if (t := c.get_timer()) is not None]
            assert timers, "nothing left to happen"
            self.now = max(self.now, min(timers))
            for conn in conns:
                timer = conn.get_timer()
                if timer is not None and timer <= self.now:
                    conn.handle_timer(self.now)
            self.drain()
        raise AssertionError("the connections did not close")


def terminated(evs: list[events.QuicEvent]) -> events.ConnectionTerminated | None:
    return next((e for e in evs if isinstance(e, events.ConnectionTerminated)), None)


def completed(evs: list[events.QuicEvent]) -> events.HandshakeCompleted | None:
    return next((e for e in evs if isinstance(e, events.HandshakeCompleted)), None)


def dial(
    client: LocalCertificate | None, expected: Aid, store: CertificateStore, **kw: float
) -> Wire:
    return Wire(client_configuration(client, expected), expected, store, **kw)


def assert_refused(
    wire: Wire, *, by_server: bool, reason: str, code: int = BAD_CERTIFICATE
) -> None:
    """The handshake failed on the named side and neither side believes in a peer."""
    wire.run_to_close()
    assert wire.server is not None
    for conn in (wire.client, wire.server):
        assert conn.peer_identity is None
        assert not conn.handshake_confirmed
    client_end = terminated(wire.client_events)
    server_end = terminated(wire.server_events)
    assert client_end is not None and server_end is not None
    assert client_end.error_code == server_end.error_code == code
    refuser, other = (server_end, client_end) if by_server else (client_end, server_end)
    assert reason in refuser.reason_phrase
    assert reason in other.reason_phrase  # the reason travels in CONNECTION_CLOSE
    assert completed(wire.server_events) is None


# ------------------------------------------------------------------------ certificates


def test_native_certificate_fields() -> None:
    ident = native(SeededRng(1))
    rng = SeededRng(7)
    cert, key = make_certificate(ident, now=T0 + 0.75, rng=rng)
    expected_serial = int.from_bytes(SeededRng(7).bytes(16), "big") & ((1 << 127) - 1)

    assert cert.version is x509.Version.v3
    assert cert.serial_number == expected_serial
    assert 0 < cert.serial_number < 2**127
    org = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "a2al")])
    assert cert.subject == cert.issuer == org
    assert cert.subject.rfc4514_string() == "O=a2al"
    assert cert.not_valid_before_utc.timestamp() == T0 - 3600
    assert cert.not_valid_after_utc.timestamp() == T0 + 365 * 24 * 3600
    assert (CERT_BACKDATE_S, CERT_LIFETIME_S) == (3600, 365 * 24 * 3600)

    assert [e.oid for e in cert.extensions] == [
        x509.ExtensionOID.KEY_USAGE,
        x509.ExtensionOID.EXTENDED_KEY_USAGE,
    ]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert not any(
        getattr(ku.value, flag)
        for flag in (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
        )
    )
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert DelegationExtension.from_certificate(cert) is None

    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.ED25519
    assert cert.public_key().public_bytes_raw() == bytes(ident.key.public)
    assert key.public_key().public_bytes_raw() == bytes(ident.key.public)
    cert.verify_directly_issued_by(cert)  # self-signed with the identity's key


def test_serial_numbers_differ_and_stay_below_2_127() -> None:
    ident = native(SeededRng(1))
    rng = SeededRng(8)
    serials = {make_certificate(ident, now=T0, rng=rng)[0].serial_number for _ in range(20)}
    assert len(serials) == 20
    assert all(0 < s < 2**127 for s in serials)


def test_delegated_certificate_carries_the_extension() -> None:
    rng = SeededRng(2)
    ident = delegated(rng)
    assert ident.delegation is not None
    cert, key = make_certificate(ident, now=T0, rng=rng)

    # signed by the operational key, not the owner's
    assert cert.public_key().public_bytes_raw() == bytes(ident.key.public)
    assert key.public_key().public_bytes_raw() == bytes(ident.key.public)
    cert.verify_directly_issued_by(cert)
    assert [e.oid for e in cert.extensions] == [
        x509.ExtensionOID.KEY_USAGE,
        x509.ExtensionOID.EXTENDED_KEY_USAGE,
        DELEGATION_OID,
    ]
    ext = cert.extensions.get_extension_for_oid(DELEGATION_OID)
    assert ext.oid.dotted_string == "1.3.6.1.4.1.999999.1"
    assert not ext.critical
    assert isinstance(ext.value, x509.UnrecognizedExtension)

    # extnValue content = DER OCTET STRING (long-form length) around CBOR {1: AID, 2: proof}
    body = _cbor.dumps({1: bytes(ident.aid), 2: ident.delegation.to_bytes()})
    assert 0x80 <= len(body) < 0x100
    assert ext.value.value == b"\x04\x81" + bytes([len(body)]) + body
    assert body[:3] == b"\xa2\x01\x55"  # map(2), key 1, bstr(21): keys in order 1, 2
    assert _cbor.loads(body) == {1: bytes(ident.aid), 2: ident.delegation.to_bytes()}

    parsed = DelegationExtension.from_certificate(cert)
    assert parsed == DelegationExtension(ident.aid, ident.delegation)
    assert DelegationExtension.from_bytes(ext.value.value) == parsed


@pytest.mark.parametrize(
    ("size", "head"),
    [
        (0, b"\x04\x00"),
        (127, b"\x04\x7f"),
        (128, b"\x04\x81\x80"),
        (255, b"\x04\x81\xff"),
        (256, b"\x04\x82\x01\x00"),
        (70_000, b"\x04\x83\x01\x11\x70"),
    ],
)
def test_der_octet_string_lengths(size: int, head: bytes) -> None:
    content = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    encoded = certificates._der_octet_string(content)
    assert encoded == head + content
    assert certificates._der_octet_string_content(encoded) == content


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda v: b"\x03" + v[1:], "OCTET STRING"),
        (lambda v: v + b"\x00", "does not match"),
        (lambda v: v[:-1], "does not match"),
        (lambda v: b"\x04\x82\x00" + v[2:], "non-minimal"),
        (lambda v: b"\x04\x80" + v[3:], "bad DER length"),
        (lambda v: b"\x04", "OCTET STRING"),
        (lambda v: b"\x04\x02\xa0\x00", "CBOR"),
        (lambda v: b"\x04\x01\x80", "expected a CBOR map"),
        (lambda v: b"\x04\x05" + _cbor.dumps({1: b"\xa0\x00", 2: b""}), "21 bytes"),
    ],
)
def test_malformed_extension_values_are_refused(
    mutate: Callable[[bytes], bytes], message: str
) -> None:
    rng = SeededRng(3)
    ident = delegated(rng)
    assert ident.delegation is not None
    value = DelegationExtension(ident.aid, ident.delegation).to_bytes()
    assert value[1] == 0x81
    bad = mutate(value)
    if bad[:2] == b"\x04\x05":  # rebuild the length for the hand-made CBOR case
        bad = b"\x04" + bytes([len(bad) - 2]) + bad[2:]
    with pytest.raises(DecodeError, match=message):
        DelegationExtension.from_bytes(bad)


def test_local_certificate_and_fractional_time() -> None:
    rng = SeededRng(4)
    ident = delegated(rng)
    lc = LocalCertificate.create(ident, now=T0 + 0.9, rng=rng)
    assert lc.aid == ident.aid
    assert lc.identity is ident
    assert lc.certificate.not_valid_before_utc.timestamp() == T0 - 3600
    assert lc.private_key.public_key().public_bytes_raw() == bytes(ident.key.public)


# ------------------------------------------------------------------------ peer checks


def test_identify_server_native() -> None:
    rng = SeededRng(5)
    ident = native(rng)
    cert = local(ident, rng).certificate
    assert identify_server(cert, ident.aid, T0) == PeerIdentity(
        ident.aid, bytes(ident.key.public), None
    )
    other = native(rng).aid
    with pytest.raises(VerificationError, match=f"not {other}, and carries no delegation"):
        identify_server(cert, other, T0)


def test_identify_server_delegated() -> None:
    rng = SeededRng(6)
    ident = delegated(rng)
    cert = local(ident, rng).certificate
    peer = identify_server(cert, ident.aid, T0)
    assert peer == PeerIdentity(ident.aid, bytes(ident.key.public), ident.delegation)
    # the operational key's own AID is not who it speaks for, and neither is anyone else
    other = native(rng).aid
    with pytest.raises(VerificationError, match=f"delegation is for {ident.aid}, not {other}"):
        identify_server(cert, other, T0)


def test_identify_server_checks_the_proof_names_the_same_agent() -> None:
    # a2ald compares only the extension's agent with the expected AID; here the proof
    # (valid, for this key) is for another agent than the extension claims
    rng = SeededRng(7)
    ident = delegated(rng)
    assert ident.delegation is not None
    victim = native(rng).aid
    key = Ed25519PrivateKey.from_private_bytes(ident.key.seed)
    cert = custom_certificate(key, DelegationExtension(victim, ident.delegation).to_bytes())
    with pytest.raises(VerificationError, match=f"is for {ident.aid}, not {victim}"):
        identify_server(cert, victim, T0)
    with pytest.raises(VerificationError, match=f"is for {ident.aid}, not {victim}"):
        identify_client(cert, T0)


@pytest.mark.parametrize("kind", sorted(BAD_DELEGATIONS))
def test_identify_refuses_bad_delegations(kind: str) -> None:
    lc = bad_delegation(kind, SeededRng(8))
    with pytest.raises(VerificationError, match=BAD_DELEGATIONS[kind]):
        identify_server(lc.certificate, lc.aid, T0)
    with pytest.raises(VerificationError, match=BAD_DELEGATIONS[kind]):
        identify_client(lc.certificate, T0)


def test_identify_checks_expiry_against_now() -> None:
    lc = local(delegated(SeededRng(9), issued_at=T0 - 1000, expires_at=T0), SeededRng(9))
    assert identify_client(lc.certificate, T0 + 59).aid == lc.aid
    assert identify_server(lc.certificate, lc.aid, T0 + 59).aid == lc.aid
    with pytest.raises(VerificationError, match="expired"):
        identify_client(lc.certificate, T0 + 60)


def test_identify_client() -> None:
    rng = SeededRng(10)
    nat = native(rng)
    assert identify_client(local(nat, rng).certificate, T0) == PeerIdentity(
        nat.aid, bytes(nat.key.public), None
    )
    dele = delegated(rng)
    assert identify_client(local(dele, rng).certificate, T0) == PeerIdentity(
        dele.aid, bytes(dele.key.public), dele.delegation
    )


def test_identify_refuses_non_ed25519_and_malformed_extensions() -> None:
    rng = SeededRng(11)
    p256 = custom_certificate(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(VerificationError, match="not Ed25519"):
        identify_client(p256, T0)
    with pytest.raises(VerificationError, match="not Ed25519"):
        identify_server(p256, native(rng).aid, T0)

    garbled = custom_certificate(ed25519_key(rng), b"\x04\x01\x00")
    with pytest.raises(VerificationError, match=r"client certificate: .*CBOR map"):
        identify_client(garbled, T0)
    with pytest.raises(VerificationError, match=r"server certificate: .*CBOR map"):
        identify_server(garbled, native(rng).aid, T0)


# ------------------------------------------------------------------------ store, configurations


def test_certificate_store() -> None:
    rng = SeededRng(12)
    node, a, b = native(rng), delegated(rng), native(rng)
    store = CertificateStore.generate(node, a, now=T0, rng=rng)
    assert len(store) == 2
    assert store.default.aid == node.aid
    assert store.aids() == (node.aid, a.aid)
    assert a.aid in store and b.aid not in store
    assert store.get(b.aid) is None
    a_cert = store.get(a.aid)
    assert a_cert is not None and a_cert.identity is a

    assert store.select(str(a.aid)) is a_cert
    assert store.select(str(a.aid).lower()) is a_cert
    assert store.select(f"  {a.aid} ") is a_cert  # a2ald's ParseAddress trims too
    for sni in (None, "", str(b.aid), "example.com", "a0" * 21 + "00", str(a.aid).upper()):
        assert store.select(sni) is store.default

    b_cert = local(b, rng)
    store.add(b_cert)
    assert store.select(str(b.aid)) is b_cert and len(store) == 3
    store.remove(b.aid)
    store.remove(b.aid)  # absent: nothing happens
    assert store.select(str(b.aid)) is store.default
    with pytest.raises(UsageError, match="default"):
        store.remove(node.aid)
    fresh = local(node, rng)
    store.add(fresh)  # replacing the default's certificate
    assert store.default is fresh and store.get(node.aid) is fresh and len(store) == 2


def test_configurations() -> None:
    rng = SeededRng(13)
    me, them = local(native(rng), rng), native(rng).aid
    cc = client_configuration(me, them)
    assert cc.is_client
    assert cc.alpn_protocols == [ALPN] == ["a2al-quic-1"]
    assert cc.server_name == str(them)
    assert cc.certificate is me.certificate and cc.private_key is me.private_key
    assert cc.verify_mode == ssl.CERT_NONE
    assert cc.session_ticket is None
    assert cc.idle_timeout == IDLE_TIMEOUT_S == 90.0
    assert cc.max_datagram_size == MAX_DATAGRAM_SIZE == 1200
    bare = client_configuration(None, them, idle_timeout=5.0, max_datagram_size=1452)
    assert bare.certificate is None and bare.private_key is None
    assert (bare.idle_timeout, bare.max_datagram_size) == (5.0, 1452)

    store = CertificateStore(me)
    sc = server_configuration(store)
    assert not sc.is_client
    assert sc.alpn_protocols == [ALPN]
    assert sc.certificate is me.certificate and sc.private_key is me.private_key
    assert (sc.idle_timeout, sc.max_datagram_size) == (90.0, 1200)


def test_connection_arguments_are_checked() -> None:
    rng = SeededRng(14)
    me = local(native(rng), rng)
    store = CertificateStore(me)
    them = native(rng).aid

    def wall() -> float:
        return T0

    cc = client_configuration(me, them)
    with pytest.raises(UsageError, match="expected="):
        A2ALQuicConnection(configuration=cc, now_wall=wall)
    with pytest.raises(UsageError, match="no store="):
        A2ALQuicConnection(configuration=cc, now_wall=wall, expected=them, store=store)
    sc = server_configuration(store)
    with pytest.raises(UsageError, match="store="):
        A2ALQuicConnection(configuration=sc, now_wall=wall, original_destination_connection_id=b"x")
    with pytest.raises(UsageError, match="no expected="):
        A2ALQuicConnection(
            configuration=sc,
            now_wall=wall,
            store=store,
            expected=them,
            original_destination_connection_id=b"x",
        )
    with pytest.raises(UsageError, match="CERT_NONE"):
        A2ALQuicConnection(
            configuration=dataclasses.replace(cc, verify_mode=ssl.CERT_REQUIRED),
            now_wall=wall,
            expected=them,
        )
    ticket = tls.SessionTicket(
        age_add=0,
        cipher_suite=tls.CipherSuite.AES_128_GCM_SHA256,
        not_valid_after=datetime.datetime.fromtimestamp(T0 + 60, tz=datetime.UTC),
        not_valid_before=datetime.datetime.fromtimestamp(T0, tz=datetime.UTC),
        resumption_secret=b"",
        server_name=str(them),
        ticket=b"t",
    )
    with pytest.raises(UsageError, match="resumption"):
        A2ALQuicConnection(
            configuration=dataclasses.replace(cc, session_ticket=ticket),
            now_wall=wall,
            expected=them,
        )
    client = A2ALQuicConnection(configuration=cc, now_wall=wall, expected=them)
    assert client.local_identity_aid == me.aid
    assert client.server_name == str(them)
    assert client.peer_identity is None and not client.handshake_confirmed


# ------------------------------------------------------------------------ handshakes


def test_native_handshake_confirms_client_only_after_handshake_done() -> None:
    rng = SeededRng(20)
    alice, bob = native(rng), native(rng)
    store = CertificateStore.generate(bob, now=T0, rng=rng)
    wire = dial(local(alice, rng), bob.aid, store)

    # ClientHello -> server flight: the client "completes" before the server saw its cert
    assert wire.to_server() > 0
    assert wire.server is not None
    assert wire.server.server_name == str(bob.aid)
    assert wire.server.local_identity_aid == bob.aid
    assert wire.to_client() > 0
    client_done = completed(wire.client_events)
    assert client_done is not None and client_done.alpn_protocol == ALPN
    assert not wire.client.handshake_confirmed
    assert wire.client.peer_identity is None
    assert not wire.server.handshake_confirmed

    # client certificate + Finished -> the server verifies and completes
    assert wire.to_server() > 0
    server_done = completed(wire.server_events)
    assert server_done is not None and server_done.alpn_protocol == ALPN
    assert wire.server.handshake_confirmed
    assert wire.server.peer_identity == PeerIdentity(alice.aid, bytes(alice.key.public), None)
    assert not wire.client.handshake_confirmed  # HANDSHAKE_DONE still in flight

    # HANDSHAKE_DONE -> the client is confirmed
    assert wire.to_client() > 0
    assert wire.client.handshake_confirmed
    assert wire.client.peer_identity == PeerIdentity(bob.aid, bytes(bob.key.public), None)
    assert wire.client.local_identity_aid == alice.aid
    wire.run()
    assert terminated(wire.client_events) is None and terminated(wire.server_events) is None


def test_data_flows_after_the_handshake() -> None:
    rng = SeededRng(21)
    alice, bob = native(rng), native(rng)
    wire = dial(local(alice, rng), bob.aid, CertificateStore.generate(bob, now=T0, rng=rng))
    wire.run()
    assert wire.client.handshake_confirmed and wire.server is not None
    sid = wire.client.get_next_available_stream_id()
    wire.client.send_stream_data(sid, b"a2r1" + bytes(bob.aid), end_stream=True)
    wire.run()
    got = [e for e in wire.server_events if isinstance(e, events.StreamDataReceived)]
    assert b"".join(e.data for e in got) == b"a2r1" + bytes(bob.aid)
    assert got[-1].end_stream and got[-1].stream_id == sid == 0


def test_pending_send_bytes_counts_unacknowledged_data() -> None:
    rng = SeededRng(32)
    alice, bob = native(rng), native(rng)
    wire = dial(local(alice, rng), bob.aid, CertificateStore.generate(bob, now=T0, rng=rng))
    wire.run()
    sid = wire.client.get_next_available_stream_id()
    assert pending_send_bytes(wire.client, sid) == 0  # no such stream yet
    wire.client.send_stream_data(sid, bytes(5000))
    assert pending_send_bytes(wire.client, sid) == 5000
    wire.to_server()  # sent, not yet acknowledged
    assert pending_send_bytes(wire.client, sid) == 5000
    for _ in range(5):  # let the server's delayed ACK go out
        wire.now += 0.05
        assert wire.server is not None
        wire.server.handle_timer(wire.now)
        wire.run()
    assert pending_send_bytes(wire.client, sid) == 0


def test_server_picks_the_certificate_named_by_sni() -> None:
    rng = SeededRng(22)
    node, agent1, agent2, caller = native(rng), delegated(rng), delegated(rng), delegated(rng)
    store = CertificateStore.generate(node, agent1, agent2, now=T0, rng=rng)
    for target in (agent2, agent1, node):
        wire = dial(local(caller, rng), target.aid, store)
        wire.run()
        assert wire.server is not None
        assert wire.server.server_name == str(target.aid)
        assert wire.server.local_identity_aid == target.aid
        assert wire.client.handshake_confirmed and wire.server.handshake_confirmed
        assert wire.client.peer_identity == PeerIdentity(
            target.aid, bytes(target.key.public), target.delegation
        )
        # a delegated client: the server believes the agent AID after checking the proof
        assert wire.server.peer_identity == PeerIdentity(
            caller.aid, bytes(caller.key.public), caller.delegation
        )
        assert wire.client.local_identity_aid == caller.aid


def test_unparseable_sni_gets_the_default_certificate() -> None:
    rng = SeededRng(23)
    node, agent, caller = native(rng), delegated(rng), native(rng)
    store = CertificateStore.generate(node, agent, now=T0, rng=rng)
    config = client_configuration(local(caller, rng), node.aid)
    config.server_name = "node.example"
    wire = Wire(config, node.aid, store)
    wire.run()
    assert wire.server is not None
    assert wire.server.server_name == "node.example"
    assert wire.server.local_identity_aid == node.aid
    assert wire.client.handshake_confirmed
    assert wire.client.peer_identity is not None and wire.client.peer_identity.aid == node.aid


def test_unknown_sni_gets_the_default_and_the_client_refuses_it() -> None:
    rng = SeededRng(24)
    node, caller, absent = native(rng), native(rng), delegated(rng)
    store = CertificateStore.generate(node, now=T0, rng=rng)
    wire = dial(local(caller, rng), absent.aid, store)
    wire.to_server()
    assert wire.server is not None and wire.server.local_identity_aid == node.aid
    assert_refused(wire, by_server=False, reason=f"is for {node.aid}, not {absent.aid}")


def test_client_refuses_a_server_that_is_someone_else() -> None:
    rng = SeededRng(25)
    caller, expected, impostor = native(rng), native(rng), native(rng)
    store = CertificateStore.generate(impostor, now=T0, rng=rng)
    wire = dial(local(caller, rng), expected.aid, store)
    assert_refused(wire, by_server=False, reason=f"is for {impostor.aid}, not {expected.aid}")
    assert completed(wire.client_events) is None


@pytest.mark.parametrize("kind", sorted(BAD_DELEGATIONS))
def test_client_refuses_a_bad_server_delegation(kind: str) -> None:
    rng = SeededRng(26)
    node, caller = native(rng), native(rng)
    bad = bad_delegation(kind, rng)
    store = CertificateStore(local(node, rng))
    store.add(bad)
    wire = dial(local(caller, rng), bad.aid, store)
    wire.to_server()
    assert wire.server is not None and wire.server.local_identity_aid == bad.aid
    assert_refused(wire, by_server=False, reason=BAD_DELEGATIONS[kind])
    assert completed(wire.client_events) is None


@pytest.mark.parametrize("kind", sorted(BAD_DELEGATIONS))
def test_server_refuses_a_bad_client_delegation(kind: str) -> None:
    # a2ald would take the claimed agent AID on trust; we check the proof
    rng = SeededRng(27)
    node = native(rng)
    store = CertificateStore.generate(node, now=T0, rng=rng)
    wire = dial(bad_delegation(kind, rng), node.aid, store)
    assert_refused(wire, by_server=True, reason=BAD_DELEGATIONS[kind])
    # the TLS 1.3 trap: the client saw HandshakeCompleted, but is never confirmed
    assert completed(wire.client_events) is not None


def test_server_refuses_a_client_without_certificate() -> None:
    rng = SeededRng(28)
    node = native(rng)
    wire = dial(None, node.aid, CertificateStore.generate(node, now=T0, rng=rng))
    assert_refused(wire, by_server=True, reason="client certificate required")
    assert completed(wire.client_events) is not None


def test_wrong_alpn_is_refused() -> None:
    rng = SeededRng(29)
    caller, node = native(rng), native(rng)
    config = client_configuration(local(caller, rng), node.aid)
    config.alpn_protocols = ["h3"]
    wire = Wire(config, node.aid, CertificateStore.generate(node, now=T0, rng=rng))
    assert_refused(
        wire, by_server=True, reason="No common ALPN protocols", code=NO_APPLICATION_PROTOCOL
    )
    assert completed(wire.client_events) is None


def test_expiry_is_judged_by_the_wall_clock() -> None:
    rng = SeededRng(30)
    node = native(rng)
    agent = delegated(rng, issued_at=T0 - 1000, expires_at=T0 + 3600)
    store = CertificateStore.generate(node, agent, now=T0, rng=rng)
    caller = local(native(rng), rng)
    ok = dial(caller, agent.aid, store)
    ok.run()
    assert ok.client.handshake_confirmed
    late = dial(caller, agent.aid, store, wall=T0 + 3600 + 60)
    assert_refused(late, by_server=False, reason="expired")


def test_handshake_survives_a_retry() -> None:
    # a Retry makes the client rebuild its TLS context: the checks must be swapped in again
    rng = SeededRng(31)
    caller, node = native(rng), native(rng)
    store = CertificateStore.generate(node, now=T0, rng=rng)
    wire = dial(local(caller, rng), node.aid, store)
    [(first, _)] = wire.client.datagrams_to_send(wire.now)
    header = pull_quic_header(Buffer(data=first), host_cid_length=8)
    assert header.packet_type == QuicPacketType.INITIAL
    retry_cid = bytes(range(8))
    retry = encode_quic_retry(
        version=header.version,
        source_cid=retry_cid,
        destination_cid=header.source_cid,
        original_destination_cid=header.destination_cid,
        retry_token=b"token",
    )
    wire.client.receive_datagram(retry, SERVER_ADDR, wire.now)
    wire.server = A2ALQuicConnection(
        configuration=server_configuration(store),
        now_wall=lambda: T0,
        store=store,
        original_destination_connection_id=header.destination_cid,
        retry_source_connection_id=retry_cid,
    )
    wire.run()
    assert wire.client.handshake_confirmed and wire.server.handshake_confirmed
    assert wire.client.peer_identity is not None and wire.client.peer_identity.aid == node.aid
    assert wire.server.peer_identity is not None and wire.server.peer_identity.aid == caller.aid


# ------------------------------------------------------------------------ a2ald's ClientHello


def a2ald_client_hello() -> tuple[bytes, list[bytes]]:
    """The first connection a2ald 0.3.5 dialled in the captures: the DCID of its first
    Initial and the Initial datagrams that carry its ClientHello."""
    quic = load_captures("quic")
    head = pull_quic_header(Buffer(data=bytes.fromhex(quic[0]["hex"])), host_cid_length=8)
    hello = []
    for row in quic:
        data = bytes.fromhex(row["hex"])
        header = pull_quic_header(Buffer(data=data), host_cid_length=8)
        if (
            row["src"] == quic[0]["src"]
            and header.packet_type == QuicPacketType.INITIAL
            and header.destination_cid == head.destination_cid
        ):
            hello.append(data)
    return head.destination_cid, hello


def test_server_reads_the_sni_of_a_real_a2ald_client_hello() -> None:
    """a2ald 0.3.5 (quic-go) dialled a peer in the captures; its ClientHello spans two
    Initial packets. Our server parses it, reads the AID in the SNI, falls back to its
    default certificate (it is not that AID) and asks for a client certificate."""
    dcid, hello = a2ald_client_hello()
    assert len(hello) == 2

    rng = SeededRng(40)
    store = CertificateStore.generate(native(rng), now=T0, rng=rng)
    server = A2ALQuicConnection(
        configuration=server_configuration(store),
        now_wall=lambda: T0,
        store=store,
        original_destination_connection_id=dcid,
    )
    for data in hello:
        server.receive_datagram(data, ("127.0.0.1", 41213), 0.0)
    sni = server.server_name
    assert sni is not None
    assert str(Aid.from_str(sni)) == sni  # the checksummed display form of a native AID
    assert Aid.from_str(sni).version == 0xA0
    assert server.local_identity_aid == store.default.aid
    negotiated = []
    while (event := server.next_event()) is not None:
        negotiated.append(event)
    assert negotiated == [events.ProtocolNegotiated(alpn_protocol=ALPN)]
    assert server.datagrams_to_send(0.0)  # ServerHello, CertificateRequest, Certificate, ...
    assert server.peer_identity is None and not server.handshake_confirmed


def test_signing_key_seed_builds_the_tls_key() -> None:
    key = SigningKey(bytes(range(32)))
    ident = Identity.from_key(key)
    _, tls_key = make_certificate(ident, now=T0, rng=SeededRng(1))
    assert tls_key.sign(b"m") == key.sign(b"m")
