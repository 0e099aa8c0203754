"""Hostile handshakes against both inbound stacks, and hostile servers against both of our
clients (issue 14, findings 1 and 8), in memory (no sockets).

A hostile client here is a plain aioquic client whose TLS output is rewritten on its way out
(key shares of every group too short, empty, too long or not on the curve; garbage, truncated
and oversized messages; a bad CertificateVerify...) or whose certificate is odd (none, junk
chain entries after a valid leaf, a key of an unknown algorithm, P-256). Every case runs
against our aioquic server (:class:`~a2al_mcp.transport.tls.A2ALQuicConnection`) and our qh3
server (:class:`~a2al_mcp.transport.tls_qh3.Qh3ServerConnection`). The test fails if either
lets an exception escape the connection (qh3's Rust panic on a short X25519MLKEM768 share
did: it ended the node), if a refused handshake does not end in a CONNECTION_CLOSE (a
half-open connection would hold a slot), or if qh3 accepts anything aioquic refuses.

The hypothesis tests at the end mutate the ClientHello and the client's second flight at
random. Examples per test: ``A2AL_MCP_FUZZ_EXAMPLES`` (default 50; by hand, e.g.
``A2AL_MCP_FUZZ_EXAMPLES=100000``, for a long run).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import pytest
from aioquic import tls as aq_tls
from aioquic._buffer import Buffer  # aioquic.buffer re-exports it implicitly (mypy)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection as AioquicConnection
from aioquic.quic.packet import pull_quic_header
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from a2al_mcp._containment import containable
from a2al_mcp._random import SeededRng
from a2al_mcp.transport import qh3_handshake, tls_qh3
from a2al_mcp.transport.tls import (
    MAX_HANDSHAKE_MESSAGE,
    A2ALQuicConnection,
    CertificateStore,
    client_configuration,
    server_configuration,
)
from tests.unit.transport.test_tls import (
    CLIENT_ADDR,
    LATENCY,
    SERVER_ADDR,
    T0,
    custom_certificate,
    local,
    native,
)

_RNG = SeededRng(1414)
NODE = native(_RNG)
CALLER = local(native(_RNG), _RNG)
STORE = CertificateStore.generate(NODE, now=T0, rng=_RNG)

SERVER_STACKS = ("aioquic", "qh3")
CLIENT_STACKS = ("aioquic", "qh3")

X25519, P256, MLKEM = 0x001D, 0x0017, 0x11EC
CERTIFICATE, CERTIFICATE_VERIFY, FINISHED = 11, 15, 20

Mutate = Callable[[aq_tls.Epoch, bytes], bytes]


def _examples() -> int:
    try:
        return max(1, int(os.environ.get("A2AL_MCP_FUZZ_EXAMPLES", "")))
    except ValueError:
        return 50


FUZZ = settings(
    max_examples=_examples(),
    deadline=None,
    database=None,
    # the default run (CI) is the same every time; the long mode explores new inputs
    derandomize="A2AL_MCP_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ------------------------------------------------------------------------ harness


@dataclasses.dataclass(frozen=True)
class Outcome:
    accepted: bool
    """The server confirmed the handshake with a verified peer."""
    closed: int | None
    """Error code of the server's ConnectionTerminated (None: it never closed)."""
    leaked: str | None
    """An exception that escaped the server connection (the bug)."""
    waiting: bool = False
    """The server's TLS still holds part of a handshake message (it waits for the rest)."""


def hostile_client(config: QuicConfiguration, mutate: Mutate | None) -> AioquicConnection:
    """A plain aioquic client whose TLS output goes through ``mutate`` on its way out."""
    conn = AioquicConnection(configuration=config)
    if mutate is None:
        return conn
    initialize = conn._initialize

    def _initialize(peer_cid: bytes) -> None:
        initialize(peer_cid)
        handle = conn.tls.handle_message

        def handle_message(input_data: bytes, output_buf: dict[aq_tls.Epoch, Buffer]) -> None:
            handle(input_data, output_buf)
            for epoch, buf in output_buf.items():
                if data := buf.data:
                    buf.seek(0)
                    buf.push_bytes(mutate(epoch, data))

        conn.tls.handle_message = handle_message  # type: ignore[method-assign]

    conn._initialize = _initialize  # type: ignore[method-assign]
    return conn


def _server(stack: str, first: bytes) -> Any:
    dcid = pull_quic_header(Buffer(data=first), host_cid_length=8).destination_cid
    if stack == "qh3":
        return tls_qh3.qh3_server_connection(
            STORE, original_destination_connection_id=dcid, now_wall=lambda: T0
        )
    return A2ALQuicConnection(configuration=server_configuration(STORE), now_wall=lambda: T0,
                              store=STORE, original_destination_connection_id=dcid)  # fmt: skip


class _Side:
    """Calls into one connection; what escapes is recorded (``leaked``), never raised,
    unless it is cancellation or exit."""

    def __init__(self) -> None:
        self.leaked: str | None = None
        self.closed: int | None = None

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except BaseException as exc:
            if not containable(exc):
                raise
            self.leaked = self.leaked or f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
            return None

    def drain(self, conn: Any) -> None:
        while (event := self.call(conn.next_event)) is not None:
            if type(event).__name__ == "ConnectionTerminated" and self.closed is None:
                self.closed = event.error_code


def exchange(client: Any, make_server: Callable[[bytes], Any]) -> tuple[Any, _Side, _Side]:
    """Run ``client`` against the server ``make_server`` builds from the first datagram:
    flights both ways, then the server's timers until it closed (or a bound)."""
    cside, sside = _Side(), _Side()
    now = 0.0
    client.connect(SERVER_ADDR, now=now)
    server = None
    for _ in range(12):
        now += LATENCY
        sent = cside.call(client.datagrams_to_send, now) or []
        for data, _addr in sent:
            if server is None:
                server = make_server(data)
            sside.call(server.receive_datagram, data, CLIENT_ADDR, now)
        cside.drain(client)
        if server is None:
            break
        sside.drain(server)
        now += LATENCY
        back = sside.call(server.datagrams_to_send, now) or []
        for data, _addr in back:
            cside.call(client.receive_datagram, data, SERVER_ADDR, now)
        cside.drain(client)
        if not sent and not back:
            break
    assert server is not None
    for _ in range(40):  # a refused handshake must end; an accepted one idles out
        if (sside.closed is not None or sside.leaked) and (
            cside.closed is not None or cside.leaked
        ):
            break
        sides = ((client, cside), (server, sside))
        timers = [(t, c, side) for c, side in sides if (t := side.call(c.get_timer)) is not None]
        if not timers:
            break
        now = max(now, min(t for t, _, _ in timers))
        for t, conn, side in timers:
            if t <= now:
                side.call(conn.handle_timer, now)
            side.call(conn.datagrams_to_send, now)  # lost: each side ends on its own
            side.drain(conn)
    return server, cside, sside


def run_case(stack: str, config: QuicConfiguration, mutate: Mutate | None) -> Outcome:
    server, _, sside = exchange(hostile_client(config, mutate), lambda d: _server(stack, d))
    accepted = bool(server.handshake_confirmed and server.peer_identity is not None)
    ctx = server._tls.tls if stack == "qh3" else server.tls
    return Outcome(accepted=accepted, closed=sside.closed, leaked=sside.leaked,
                   waiting=bool(ctx._receive_buffer))  # fmt: skip


def is_alert(error_code: int) -> bool:
    """A QUIC CRYPTO_ERROR (0x100 + TLS alert, RFC 9001 §4.8)."""
    return 0x100 <= error_code < 0x200


def assert_differential(config: QuicConfiguration, mutate: Mutate | None) -> dict[str, Outcome]:
    """Run one client against both servers: neither may leak an exception; qh3 must refuse
    whatever aioquic refuses, and close with an alert wherever aioquic does (not idle out
    with the connection half-open)."""
    got = {stack: run_case(stack, config, mutate) for stack in SERVER_STACKS}
    for stack, out in got.items():
        assert out.leaked is None, f"{stack} server leaked {out.leaked}"
    aioquic, qh3 = got["aioquic"], got["qh3"]
    assert aioquic.accepted or not qh3.accepted, got
    if aioquic.closed is not None and is_alert(aioquic.closed) and not qh3.waiting:
        # (qh3 may still wait where aioquic alerted: they negotiate different cipher
        # suites, so a cut message can be complete for one and incomplete for the other)
        assert qh3.closed is not None and is_alert(qh3.closed), got
    return got


def assert_refused(got: dict[str, Outcome], *, waits: bool = False) -> None:
    """Both refused; qh3 with an alert, unless the message is incomplete (``waits``: a
    server cannot tell a slow client from a liar; the handshake timeout ends it)."""
    assert not got["aioquic"].accepted and not got["qh3"].accepted, got
    closed = got["qh3"].closed
    if not waits:
        assert closed is not None and is_alert(closed), got


# ------------------------------------------------------------------------ mutations


def messages(data: bytes) -> list[tuple[int, bytes]]:
    """Split a TLS handshake flight into (type, body) pairs."""
    out, i = [], 0
    while i + 4 <= len(data):
        n = int.from_bytes(data[i + 1 : i + 4], "big")
        out.append((data[i], data[i + 4 : i + 4 + n]))
        i += 4 + n
    return out


def join(msgs: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes([t]) + len(b).to_bytes(3, "big") + b for t, b in msgs)


def on_hello(change: Callable[[aq_tls.ClientHello], None]) -> Mutate:
    """Rewrite the ClientHello's fields."""

    def mutate(epoch: aq_tls.Epoch, data: bytes) -> bytes:
        if epoch != aq_tls.Epoch.INITIAL:
            return data
        hello = aq_tls.pull_client_hello(Buffer(data=data))
        change(hello)
        buf = Buffer(capacity=16384)
        aq_tls.push_client_hello(buf, hello)
        return buf.data

    return mutate


def key_shares(*shares: tuple[int, bytes]) -> Mutate:
    def change(hello: aq_tls.ClientHello) -> None:
        hello.key_share = list(shares)
        hello.supported_groups = [g for g, _ in shares] or [X25519]

    return on_hello(change)


def raw_hello(rewrite: Callable[[bytes], bytes]) -> Mutate:
    """Replace the whole ClientHello message (header included) with ``rewrite(message)``."""

    def mutate(epoch: aq_tls.Epoch, data: bytes) -> bytes:
        return rewrite(data) if epoch == aq_tls.Epoch.INITIAL else data

    return mutate


def second_flight(rewrite: Callable[[list[tuple[int, bytes]]], list[tuple[int, bytes]]]) -> Mutate:
    """Rewrite the client's Certificate / CertificateVerify / Finished flight."""

    def mutate(epoch: aq_tls.Epoch, data: bytes) -> bytes:
        if epoch != aq_tls.Epoch.HANDSHAKE:
            return data
        return join(rewrite(messages(data)))

    return mutate


def replace_body(kind: int, body: Callable[[bytes], bytes]) -> Mutate:
    return second_flight(lambda ms: [(t, body(b) if t == kind else b) for t, b in ms])


def flip_last(body: bytes) -> bytes:
    return body[:-1] + bytes([body[-1] ^ 1])


_P256_POINT = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
)

KEY_SHARE_CASES: dict[str, Mutate] = {
    "x25519 empty": key_shares((X25519, b"")),
    "x25519 short": key_shares((X25519, b"\x09" * 31)),
    "x25519 long": key_shares((X25519, b"\x09" * 33)),
    "x25519 all zeros": key_shares((X25519, bytes(32))),
    "p256 empty": key_shares((P256, b"")),
    "p256 short": key_shares((P256, _P256_POINT[:64])),
    "p256 long": key_shares((P256, _P256_POINT + b"\x00")),
    "p256 not on the curve": key_shares((P256, b"\x04" + b"\x01" * 64)),
    "p256 compressed": key_shares((P256, b"\x02" + _P256_POINT[1:33])),
    "mlkem empty": key_shares((MLKEM, b"")),
    "mlkem 10 bytes": key_shares((MLKEM, b"\x07" * 10)),
    "mlkem short": key_shares((MLKEM, b"\x07" * 1215)),
    "mlkem long": key_shares((MLKEM, b"\x07" * 1217)),
    "mlkem server-sized": key_shares((MLKEM, b"\x07" * 1120)),
    "mlkem short then x25519": key_shares((MLKEM, b"\x07" * 10), (X25519, b"\x09" * 32)),
    "no key share": key_shares(),
    "unknown group only": key_shares((0x1234, b"\x01" * 32)),
}

HELLO_CASES: dict[str, Mutate] = {
    "wrong alpn": on_hello(lambda h: setattr(h, "alpn_protocols", ["h3"])),
    "no alpn": on_hello(lambda h: setattr(h, "alpn_protocols", None)),
    "no ed25519 signature": on_hello(lambda h: setattr(h, "signature_algorithms", [0x0403])),
    "no tls 1.3": on_hello(lambda h: setattr(h, "supported_versions", [0x0303])),
    "garbage hello": raw_hello(lambda m: b"\x01\x00\x01\x00" + bytes(range(256))),
    "incomplete hello": raw_hello(lambda m: m[:4] + m[4 : len(m) // 2]),
    "truncated hello": raw_hello(
        lambda m: b"\x01" + (len(m) // 2 - 4).to_bytes(3, "big") + m[4 : len(m) // 2]
    ),
    "unknown message type": raw_hello(lambda m: b"\x63" + m[1:]),
    "empty hello": raw_hello(lambda m: b"\x01\x00\x00\x00"),
    "oversized hello": raw_hello(
        lambda m: b"\x01" + (MAX_HANDSHAKE_MESSAGE + 1).to_bytes(3, "big") + m[4:]
    ),
}

FLIGHT_CASES: dict[str, Mutate] = {
    "certificate list longer than the message": replace_body(
        CERTIFICATE, lambda b: b[:1] + (len(b) + 100).to_bytes(3, "big") + b[4:]
    ),
    "certificate entry longer than the list": replace_body(
        CERTIFICATE, lambda b: b[:4] + (len(b) + 100).to_bytes(3, "big") + b[7:]
    ),
    "certificate truncated": replace_body(CERTIFICATE, lambda b: b[: len(b) // 2]),
    "certificate empty body": replace_body(CERTIFICATE, lambda b: b""),
    "certificate garbage": replace_body(
        CERTIFICATE, lambda b: b"\x00\x00\x00\x05\x00\x00\x02\xff\xff"
    ),
    "zero-length certificate entry": replace_body(
        CERTIFICATE, lambda b: b"\x00\x00\x00\x05\x00\x00\x00\x00\x00"
    ),
    "bad certificate verify signature": replace_body(CERTIFICATE_VERIFY, flip_last),
    "certificate verify not ed25519": replace_body(
        CERTIFICATE_VERIFY, lambda b: b"\x04\x03" + b[2:]
    ),
    "certificate verify truncated": replace_body(CERTIFICATE_VERIFY, lambda b: b[:3]),
    "bad finished": replace_body(FINISHED, flip_last),
    "certificate missing": second_flight(lambda ms: [m for m in ms if m[0] != CERTIFICATE]),
    "certificate verify missing": second_flight(
        lambda ms: [m for m in ms if m[0] != CERTIFICATE_VERIFY]
    ),
    "unknown message first": second_flight(lambda ms: [(0x63, b"junk"), *ms]),
    "client hello again": second_flight(lambda ms: [(1, b"\x03\x03" + bytes(40)), *ms]),
    "garbage flight": lambda e, d: (
        b"\x0b\x00\x00\xc8" + bytes(range(200)) if e == aq_tls.Epoch.HANDSHAKE else d
    ),
    "incomplete certificate": lambda e, d: d[:40] if e == aq_tls.Epoch.HANDSHAKE else d,
    "oversized certificate": lambda e, d: (
        b"\x0b" + (MAX_HANDSHAKE_MESSAGE + 1).to_bytes(3, "big") + d[4:]
        if e == aq_tls.Epoch.HANDSHAKE
        else d
    ),
}


class _Der:
    """A certificate object for the hostile client: only ``public_bytes`` is asked for."""

    def __init__(self, der: bytes) -> None:
        self._der = der

    def public_bytes(self, encoding: object) -> bytes:
        return self._der


def _config(**changes: Any) -> QuicConfiguration:
    cfg = client_configuration(CALLER, NODE.aid)
    for name, value in changes.items():
        setattr(cfg, name, value)
    return cfg


def _unknown_key_algorithm() -> _Der:
    der = CALLER.certificate.public_bytes(serialization.Encoding.DER)
    spki = bytes.fromhex("300506032b6570032100")  # AlgorithmIdentifier Ed25519, BIT STRING
    assert der.count(spki) == 1
    return _Der(der.replace(spki, bytes.fromhex("300506032b657f032100")))  # 1.3.101.127


def _p256_client() -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    return {"certificate": custom_certificate(key), "private_key": key}


CONFIG_CASES: dict[str, Callable[[], QuicConfiguration]] = {
    "no client certificate": lambda: client_configuration(None, NODE.aid),
    "junk entries after a valid leaf": lambda: _config(
        certificate_chain=[_Der(b"\x30\x03\x02\x01\x00"), _Der(b"junk")]
    ),
    "junk entry after a valid leaf": lambda: _config(certificate_chain=[_Der(b"junk")]),
    "client key of an unknown algorithm": lambda: _config(certificate=_unknown_key_algorithm()),
    "p256 client certificate": lambda: _config(**_p256_client()),
    "wrong alpn in the configuration": lambda: _config(alpn_protocols=["h3"]),
}


# ------------------------------------------------------------------------ differential


def test_an_honest_client_is_accepted_by_both_stacks() -> None:
    got = assert_differential(_config(), None)
    assert got["aioquic"].accepted and got["qh3"].accepted
    # and the rewriting machinery alone changes nothing
    got = assert_differential(_config(), lambda epoch, data: data)
    assert got["aioquic"].accepted and got["qh3"].accepted


@pytest.mark.parametrize("case", sorted(KEY_SHARE_CASES))
def test_hostile_key_shares_are_refused_with_an_alert(case: str) -> None:
    assert_refused(
        assert_differential(_config(), KEY_SHARE_CASES[case]), waits=case.startswith("incomplete")
    )


@pytest.mark.parametrize("case", sorted(HELLO_CASES))
def test_hostile_client_hellos_are_refused_with_an_alert(case: str) -> None:
    assert_refused(
        assert_differential(_config(), HELLO_CASES[case]), waits=case.startswith("incomplete")
    )


@pytest.mark.parametrize("case", sorted(FLIGHT_CASES))
def test_hostile_client_flights_are_refused_with_an_alert(case: str) -> None:
    assert_refused(
        assert_differential(_config(), FLIGHT_CASES[case]), waits=case.startswith("incomplete")
    )


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_hostile_client_certificates_are_refused_with_an_alert(case: str) -> None:
    assert_refused(assert_differential(CONFIG_CASES[case](), None))


def test_mlkem_share_lengths_are_those_of_qh3() -> None:
    """The lengths we check against are the ones qh3's X25519MLKEM768 produces
    (draft-ietf-tls-ecdhe-mlkem: 1184 + 32 from the client, 1088 + 32 from the server)."""
    from qh3 import _hazmat

    client = _hazmat.X25519ML768KeyExchange()
    server = _hazmat.X25519ML768KeyExchange()
    share = client.public_key()
    assert len(share) == tls_qh3.X25519MLKEM768_CLIENT_SHARE == 1216
    secret = server.exchange(share)
    reply = server.shared_ciphertext()
    assert len(reply) == tls_qh3.X25519MLKEM768_SERVER_SHARE == 1120
    assert client.exchange(reply) == secret


# ------------------------------------------------------------------------ hostile servers


def _our_client(stack: str) -> Any:
    if stack == "qh3":
        return tls_qh3.qh3_client_connection(CALLER, NODE.aid, now_wall=lambda: T0)
    return A2ALQuicConnection(configuration=client_configuration(CALLER, NODE.aid),
                              now_wall=lambda: T0, expected=NODE.aid)  # fmt: skip


SERVER_SHARES: dict[str, tuple[int, bytes]] = {
    "mlkem 10 bytes": (MLKEM, b"\x07" * 10),
    "mlkem empty": (MLKEM, b""),
    "mlkem client-sized": (MLKEM, b"\x07" * 1216),
    "mlkem long": (MLKEM, b"\x07" * 1121),
    "x25519 short": (X25519, b"\x09" * 31),
    "x25519 all zeros": (X25519, bytes(32)),
    "p256 not on the curve": (P256, b"\x04" + b"\x01" * 64),
    "a group never offered": (0x0018, b"\x04" + b"\x01" * 96),
}


@pytest.mark.parametrize("client_stack", CLIENT_STACKS)
@pytest.mark.parametrize("case", sorted(SERVER_SHARES))
def test_our_clients_fail_cleanly_on_a_hostile_server_hello(
    case: str, client_stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hostile server's ServerHello with a bad key share (a short X25519MLKEM768 one made
    qh3's client panic: the dialling node died) ends only that connection, with an alert."""
    group, share = SERVER_SHARES[case]
    monkeypatch.setattr(qh3_handshake, "_key_exchange", lambda hello: (group, share, bytes(32)))
    client = _our_client(client_stack)
    _, cside, _ = exchange(client, lambda d: _server("qh3", d))
    assert cside.leaked is None, f"our {client_stack} client leaked {cside.leaked}"
    assert not client.handshake_confirmed and client.peer_identity is None
    assert cside.closed is not None and is_alert(cside.closed)


# ------------------------------------------------------------------------ fuzz


def _mutations() -> st.SearchStrategy[Callable[[bytes], bytes]]:
    """Random edits of a handshake message (header ``type | length`` kept or not)."""
    flips = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)), min_size=1,
                     max_size=8)  # fmt: skip

    def flip(edits: list[tuple[int, int]]) -> Callable[[bytes], bytes]:
        def apply(m: bytes) -> bytes:
            out = bytearray(m)
            for pos, xor in edits:
                out[pos % len(out)] ^= xor
            return bytes(out)

        return apply

    def cut(at: int, fix: bool) -> Callable[[bytes], bytes]:
        def apply(m: bytes) -> bytes:
            body = m[4 : 4 + at % max(1, len(m) - 4)]
            n = len(body) if fix else int.from_bytes(m[1:4], "big")
            return m[:1] + n.to_bytes(3, "big") + body

        return apply

    def splice(at: int, junk: bytes) -> Callable[[bytes], bytes]:
        def apply(m: bytes) -> bytes:
            i = 4 + at % max(1, len(m) - 4)
            body = m[4:i] + junk + m[i:]
            return m[:1] + len(body).to_bytes(3, "big") + body

        return apply

    def replace(junk: bytes) -> Callable[[bytes], bytes]:
        return lambda m: m[:1] + len(junk).to_bytes(3, "big") + junk

    return st.one_of(
        flips.map(flip),
        st.builds(cut, st.integers(0, 1 << 16), st.booleans()),
        st.builds(splice, st.integers(0, 1 << 16), st.binary(min_size=1, max_size=64)),
        st.binary(max_size=600).map(replace),
    )


@FUZZ
@given(edit=_mutations())
def test_fuzz_client_hello_against_both_stacks(edit: Callable[[bytes], bytes]) -> None:
    assert_differential(_config(), raw_hello(edit))


@FUZZ
@given(edit=_mutations(), which=st.sampled_from([CERTIFICATE, CERTIFICATE_VERIFY, FINISHED]))
def test_fuzz_client_second_flight_against_both_stacks(
    edit: Callable[[bytes], bytes], which: int
) -> None:
    def mutate(epoch: aq_tls.Epoch, data: bytes) -> bytes:
        if epoch != aq_tls.Epoch.HANDSHAKE:
            return data
        out = b""
        for t, body in messages(data):
            m = bytes([t]) + len(body).to_bytes(3, "big") + body
            out += edit(m) if t == which else m
        return out

    assert_differential(_config(), mutate)
