"""StunClient: transactions, bounded retransmission, matching, garbage; RFC 5769 vectors."""

from __future__ import annotations

from aioice import stun

from a2al_mcp._random import SeededRng
from a2al_mcp.nat.stun import CHANGE_IP, CHANGE_PORT, StunClient

SERVER = ("203.0.113.3", 3478)

# RFC 5769 §2.2 and §2.3: sample responses (SOFTWARE, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY,
# FINGERPRINT; aioice checks the fingerprint, so a mistyped byte fails the parse).
RFC5769_TXID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
RFC5769_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"
RFC5769_V4 = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000080001a147e112a643"
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    "80280004c07d4c96"
)
RFC5769_V6 = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9"
    "00080014a382954e4be67bf11784c97c8292c275bfe3ed41"
    "80280004c8fb0b4c"
)


class FixedRng(SeededRng):
    """Hands out the RFC 5769 transaction ID first."""

    def __init__(self, first: bytes) -> None:
        super().__init__(1)
        self._first: bytes | None = first

    def bytes(self, n: int) -> bytes:
        if self._first is not None and n == len(self._first):
            out, self._first = self._first, None
            return out
        return super().bytes(n)


def answer(request: bytes, mapped=("198.51.100.21", 4121), **attrs) -> bytes:
    req = stun.parse_message(request)
    msg = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE,
                       transaction_id=req.transaction_id,
                       attributes={"XOR-MAPPED-ADDRESS": mapped, **attrs})  # fmt: skip
    return bytes(msg)


def test_rfc5769_ipv4_and_ipv6_responses() -> None:
    v6 = ("2001:db8:1234:5678:11:2233:4455:6677", 32853)
    for data, mapped in ((RFC5769_V4, ("192.0.2.1", 32853)), (RFC5769_V6, v6)):
        parsed = stun.parse_message(data)
        assert parsed.check_message_integrity(RFC5769_PASSWORD)  # the vector is intact
        client = StunClient(FixedRng(RFC5769_TXID))
        assert client.request(SERVER, 0.0, purpose="binding") == RFC5769_TXID
        got = client.receive(data, SERVER, 0.1)
        assert got is not None and got.mapped == mapped and got.txid == RFC5769_TXID
        assert got.purpose == "binding" and client.pending() == 0 and client.stats.answered == 1


def test_request_bytes_and_change_request() -> None:
    client = StunClient(SeededRng(3))
    client.request(SERVER, 0.0)
    client.request(SERVER, 0.0, change=CHANGE_IP | CHANGE_PORT)
    client.request(SERVER, 0.0, change=CHANGE_PORT)
    plain, both, port = (stun.parse_message(d) for d, _ in client.datagrams())
    assert plain.message_method == stun.Method.BINDING
    assert plain.message_class == stun.Class.REQUEST and plain.attributes == {}
    assert both.attributes == {"CHANGE-REQUEST": 0x06}
    assert port.attributes == {"CHANGE-REQUEST": 0x02}
    assert len({plain.transaction_id, both.transaction_id, port.transaction_id}) == 3


def test_retransmits_doubling_then_times_out() -> None:
    client = StunClient(SeededRng(3), rto_s=0.5, tries=3)
    txid = client.request(SERVER, 10.0, purpose="binding")
    [(first, to)] = client.datagrams()
    assert to == SERVER and client.get_timer() == 10.5
    assert client.handle_timer(10.49) == [] and client.datagrams() == []
    assert client.handle_timer(10.5) == []
    assert client.datagrams() == [(first, SERVER)]  # same bytes, same transaction
    assert client.get_timer() == 11.5
    assert client.handle_timer(11.5) == [] and client.datagrams() == [(first, SERVER)]
    assert client.get_timer() == 13.5
    [timeout] = client.handle_timer(13.5)
    assert (timeout.txid, timeout.server, timeout.purpose) == (txid, SERVER, "binding")
    assert client.datagrams() == [] and client.get_timer() is None
    assert (client.stats.sent, client.stats.retransmitted, client.stats.timeouts) == (3, 2, 1)
    # a late answer is unmatched now
    assert client.receive(answer(first), SERVER, 14.0) is None and client.stats.unmatched == 1


def test_answer_after_retransmission_ends_the_transaction() -> None:
    client = StunClient(SeededRng(3))
    client.request(SERVER, 0.0)
    [(data, _)] = client.datagrams()
    client.handle_timer(0.5)
    client.datagrams()
    got = client.receive(answer(data), ("203.0.113.4", 3479), 0.6)
    assert got is not None and got.source == ("203.0.113.4", 3479)
    assert client.get_timer() is None and client.receive(answer(data), SERVER, 0.7) is None
    assert client.stats.unmatched == 1  # the duplicate answer


def test_other_address_and_response_origin() -> None:
    client = StunClient(SeededRng(3))
    client.request(SERVER, 0.0)
    [(data, _)] = client.datagrams()
    got = client.receive(answer(data, **{"OTHER-ADDRESS": ("203.0.113.4", 3479),
                                         "RESPONSE-ORIGIN": SERVER}), SERVER, 0.1)  # fmt: skip
    assert got is not None and got.other == ("203.0.113.4", 3479) and got.origin == SERVER


def test_error_response_is_an_answer_without_mapping() -> None:
    client = StunClient(SeededRng(3))
    client.request(SERVER, 0.0, change=CHANGE_IP)
    [(data, _)] = client.datagrams()
    req = stun.parse_message(data)
    err = stun.Message(stun.Method.BINDING, stun.Class.ERROR, transaction_id=req.transaction_id,
                       attributes={"ERROR-CODE": (420, "Unknown Attribute")})  # fmt: skip
    got = client.receive(bytes(err), SERVER, 0.1)
    assert got is not None and got.mapped is None and got.error == 420
    assert client.stats.errors == 1


def test_garbage_and_unmatched_are_dropped_and_counted() -> None:
    client = StunClient(SeededRng(3))
    client.request(SERVER, 0.0)
    [(data, _)] = client.datagrams()
    truncated = data[:-1]
    bad_length = data[:2] + b"\x00\x08" + data[4:]
    forged = answer(bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST)))
    request_echo = data  # our own request reflected back: not a response
    indication = bytes(
        stun.Message(
            stun.Method.BINDING,
            stun.Class.INDICATION,
            transaction_id=stun.parse_message(data).transaction_id,
        )
    )
    unknown_method = b"\x0f\xff" + data[2:]
    for junk in (truncated, bad_length, b"\x00" * 20 + b"\xff", unknown_method):
        assert client.receive(junk, SERVER, 0.1) is None
    for junk in (forged, request_echo, indication):
        assert client.receive(junk, SERVER, 0.1) is None
    assert client.stats.garbage == 4 and client.stats.unmatched == 3
    assert client.pending() == 1  # still waiting for the real answer
    assert client.receive(answer(data), SERVER, 0.2) is not None


def test_pending_transactions_are_bounded() -> None:
    client = StunClient(SeededRng(3), max_pending=2)
    assert client.request(SERVER, 0.0) is not None
    assert client.request(SERVER, 0.0) is not None
    assert client.request(SERVER, 0.0) is None
    assert client.stats.refused == 1 and len(client.datagrams()) == 2
