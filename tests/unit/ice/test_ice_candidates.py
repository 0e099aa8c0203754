"""pion's candidate grammar (a2al_mcp.ice.candidates): every string a2ald 0.3.5 sent in the
testbed captures, hostile input, and a round trip under hypothesis."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from aioice import Candidate
from hypothesis import given
from hypothesis import strategies as st

from a2al_mcp.errors import DecodeError, UsageError
from a2al_mcp.ice.candidates import (
    MAX_CANDIDATE_CHARS,
    UnsupportedCandidate,
    parse_candidate,
    render_candidate,
)

CAPTURED = json.loads((Path(__file__).parent / "captured_ice_frames.json").read_text())
CANDIDATES = [entry["c"] for entry in CAPTURED["cand"]]


def test_the_capture_has_every_type_a2ald_sends() -> None:
    types = {text.split()[7] for text in CANDIDATES}
    assert types == {"host", "srflx", "relay"}
    assert len(CANDIDATES) == 34


@pytest.mark.parametrize("text", CANDIDATES)
def test_every_captured_candidate_parses_and_renders_back_byte_for_byte(text: str) -> None:
    candidate = parse_candidate(text)
    fields = text.split()
    assert candidate.foundation == fields[0]
    assert candidate.component == 1
    assert candidate.transport == "udp"
    assert candidate.priority == int(fields[3])
    assert candidate.host == fields[4]
    assert candidate.port == int(fields[5])
    assert candidate.type == fields[7]
    if candidate.type == "host":
        assert (candidate.related_address, candidate.related_port) == (None, None)
    else:
        assert candidate.related_address == "0.0.0.0"
        assert candidate.related_port == int(fields[11])
    assert render_candidate(candidate) == text


def test_a_captured_relay_candidate_in_detail() -> None:
    c = parse_candidate(
        "2151461983 1 udp 16777215 203.0.113.3 49655 typ relay raddr 0.0.0.0 rport 51971"
    )
    assert (c.host, c.port, c.type, c.priority) == ("203.0.113.3", 49655, "relay", 16777215)
    assert (c.related_address, c.related_port) == ("0.0.0.0", 51971)


def test_ours_render_in_pions_form() -> None:
    host = Candidate("9f3a", 1, "UDP", 2130706431, "10.0.0.2", 5000, "host")
    assert render_candidate(host) == "9f3a 1 udp 2130706431 10.0.0.2 5000 typ host"
    srflx = Candidate("ab", 1, "udp", 1694498815, "198.51.100.1", 6000, "srflx", "10.0.0.2", 5000)
    assert render_candidate(srflx) == (
        "ab 1 udp 1694498815 198.51.100.1 6000 typ srflx raddr 10.0.0.2 rport 5000"
    )
    v6 = Candidate("1", 1, "udp", 2130706431, "2001:DB8::0:1", 5000, "host")
    assert render_candidate(v6) == "1 1 udp 2130706431 2001:db8::1 5000 typ host"
    # pion leaves raddr out when the related port is 0
    no_port = Candidate("1", 1, "udp", 1, "203.0.113.3", 9, "relay", "0.0.0.0", 0)
    assert render_candidate(no_port) == "1 1 udp 1 203.0.113.3 9 typ relay"


@pytest.mark.parametrize(
    "candidate",
    [
        Candidate("1", 1, "tcp", 1, "10.0.0.2", 9, "host", tcptype="active"),
        Candidate("1", 1, "udp", 1, "10.0.0.2", 9, "bogus"),
        Candidate("x y", 1, "udp", 1, "10.0.0.2", 9, "host"),
        Candidate("1", 0, "udp", 1, "10.0.0.2", 9, "host"),
        Candidate("1", 1, "udp", 1 << 32, "10.0.0.2", 9, "host"),
        Candidate("1", 1, "udp", 1, "10.0.0.2", 0, "host"),
    ],
)
def test_what_pion_could_not_read_is_not_rendered(candidate: Candidate) -> None:
    with pytest.raises(UsageError):
        render_candidate(candidate)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("candidate:1 1 UDP 2122194687 192.168.1.1 5000 typ host", ("192.168.1.1", "host")),
        ("1 1 Udp 2122194687 192.168.1.1 5000 typ host generation 0", ("192.168.1.1", "host")),
        ("1 1 udp 2122194687 192.168.1.1 5000 typ host tcptype passive", ("192.168.1.1", "host")),
        ("1 1 udp 2122194687 2001:db8::1 5000 typ host", ("2001:db8::1", "host")),
        ("1 1 udp 2122194687 2001:DB8:0::1 5000 typ host", ("2001:db8::1", "host")),
        ("1 1 udp 1 10.0.0.1 5000 typ prflx raddr 0.0.0.0 rport 0", ("10.0.0.1", "prflx")),
        ("1  1 udp 1 10.0.0.1   5000 typ host", ("10.0.0.1", "host")),
        ("0001 1 udp 0 10.0.0.1 00001 typ host network-id 3 network-cost 10", ("10.0.0.1", "host")),
    ],
)
def test_accepted_variants(text: str, expected: tuple[str, str]) -> None:
    candidate = parse_candidate(text)
    assert (candidate.host, candidate.type) == expected


@pytest.mark.parametrize(
    "text",
    [
        "1 1 tcp 1518280447 10.0.0.2 9 typ host tcptype active",
        "1 1 TCP 1518280447 10.0.0.2 9 typ host tcptype passive",
        "1 1 udp 2130706431 6f3c1b1e-2e1a-4e1c-9e0a-1b2c3d4e5f60.local 5000 typ host",
        "1 1 udp 2130706431 fe80::1%eth0 5000 typ host",
    ],
)
def test_tcp_mdns_and_zoned_candidates_are_unsupported(text: str) -> None:
    with pytest.raises(UnsupportedCandidate):
        parse_candidate(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1 1 udp 2130706431 10.0.0.2 5000 typ",
        "1 1 udp 2130706431 10.0.0.2 5000 type host",
        "1 1 sctp 2130706431 10.0.0.2 5000 typ host",
        "1 1 udp 2130706431 10.0.0.2 5000 typ bogus",
        "1 0 udp 2130706431 10.0.0.2 5000 typ host",
        "1 257 udp 2130706431 10.0.0.2 5000 typ host",
        "1 +1 udp 2130706431 10.0.0.2 5000 typ host",
        "1 1_0 udp 2130706431 10.0.0.2 5000 typ host",
        "1 1 udp -1 10.0.0.2 5000 typ host",
        "1 1 udp 4294967296 10.0.0.2 5000 typ host",
        "1 1 udp 99999999999999999999 10.0.0.2 5000 typ host",
        "1 1 udp 2130706431 10.0.0.2 0 typ host",
        "1 1 udp 2130706431 10.0.0.2 65536 typ host",
        "1 1 udp 2130706431 10.0.0.256 5000 typ host",
        "1 1 udp 2130706431 example.com 5000 typ host",
        "1 1 udp 2130706431 [2001:db8::1] 5000 typ host",
        "1 1 udp 2130706431 10.0.0.2 5000 typ srflx raddr 0.0.0.0",
        "1 1 udp 2130706431 10.0.0.2 5000 typ srflx raddr 0.0.0.0 rport",
        "1 1 udp 2130706431 10.0.0.2 5000 typ srflx rport 5",
        "1 1 udp 2130706431 10.0.0.2 5000 typ srflx raddr x rport 5",
        "1 1 udp 2130706431 10.0.0.2 5000 typ srflx raddr 0.0.0.0 rport 70000",
        "1 1 udp 2130706431 10.0.0.2 5000 typ srflx raddr 0.0.0.0 rport 1 rport 2",
        "1 1 udp 2130706431 10.0.0.2 5000 typ host tcptype sideways",
        "1 1 udp 2130706431 10.0.0.2 5000 typ host gen\u00e9ration 0",
        "1 1 udp 2130706431 10.0.0.2 5000 typ host\tgeneration 0",
        "1 1 udp 2130706431 10.0.0.2 5000 typ host\n",
        "f\u00f6 1 udp 2130706431 10.0.0.2 5000 typ host",
        "123456789012345678901234567890123 1 udp 1 10.0.0.2 5000 typ host",
        "1 1 udp 1 10.0.0.2 5000 typ host" + " a b" * 9,
        "1 1 udp 1 10.0.0.2 5000 typ host" + " " * MAX_CANDIDATE_CHARS,
        "candidate: 1 udp 1 10.0.0.2 5000 typ host",
    ],
)
def test_malformed_candidates_raise_decode_error(text: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_candidate(text)
    assert not isinstance(info.value, UnsupportedCandidate)
    assert info.value.operation == "parse ICE candidate"


def test_the_length_cap_is_the_callers() -> None:
    text = CANDIDATES[0]
    with pytest.raises(DecodeError):
        parse_candidate(text, max_chars=len(text) - 1)
    assert parse_candidate(text, max_chars=len(text)).port > 0


@pytest.mark.parametrize("value", [None, b"1 1 udp 1 10.0.0.2 5 typ host", 5, ["x"]])
def test_non_text_is_a_decode_error(value: object) -> None:
    with pytest.raises(DecodeError):
        parse_candidate(value)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- hypothesis

_ICE_CHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
foundations = st.text(_ICE_CHAR, min_size=1, max_size=32)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str).filter(lambda a: "%" not in a)
addresses = ipv4 | ipv6
ports = st.integers(1, 0xFFFF)


@st.composite
def candidates(draw: st.DrawFn) -> Candidate:
    typ = draw(st.sampled_from(["host", "srflx", "prflx", "relay"]))
    related = draw(st.none() | st.tuples(addresses, ports)) if typ != "host" else None
    return Candidate(
        foundation=draw(foundations),
        component=draw(st.integers(1, 256)),
        transport=draw(st.sampled_from(["udp", "UDP"])),
        priority=draw(st.integers(0, 0xFFFFFFFF)),
        host=draw(addresses),
        port=draw(ports),
        type=typ,
        related_address=None if related is None else related[0],
        related_port=None if related is None else related[1],
    )


@given(candidates())
def test_render_then_parse_is_the_identity(candidate: Candidate) -> None:
    text = render_candidate(candidate)
    back = parse_candidate(text)
    assert back.foundation == candidate.foundation
    assert back.component == candidate.component
    assert back.transport == "udp"
    assert back.priority == candidate.priority
    assert ipaddress.ip_address(back.host) == ipaddress.ip_address(candidate.host)
    assert back.port == candidate.port
    assert back.type == candidate.type
    assert back.related_address == (
        None
        if candidate.related_address is None
        else str(ipaddress.ip_address(candidate.related_address))
    )
    assert back.related_port == candidate.related_port
    assert render_candidate(back) == text
    assert len(text) <= MAX_CANDIDATE_CHARS


@given(st.text(max_size=300))
def test_arbitrary_text_parses_or_raises_decode_error(text: str) -> None:
    try:
        candidate = parse_candidate(text)
    except DecodeError:
        return
    assert render_candidate(candidate)


_TOKENS = st.sampled_from(
    ["1", "0", "udp", "tcp", "typ", "host", "srflx", "relay", "prflx", "raddr", "rport",
     "tcptype", "active", "generation", "10.0.0.1", "::1", "65535", "65536", "4294967296",
     "-1", "x.local", "", "candidate:1"]
)  # fmt: skip


@given(st.lists(_TOKENS | st.text(_ICE_CHAR + ".:%", max_size=12), max_size=30))
def test_token_soup_parses_or_raises_decode_error(tokens: list[str]) -> None:
    try:
        candidate = parse_candidate(" ".join(tokens))
    except DecodeError:
        return
    assert parse_candidate(render_candidate(candidate)).port == candidate.port


@given(st.sampled_from(CANDIDATES), st.data())
def test_mutated_captures_parse_or_raise_decode_error(text: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(text)))
    insert = data.draw(st.text(max_size=4))
    cut = data.draw(st.integers(0, 4))
    mutated = text[:i] + insert + text[i + cut :]
    try:
        candidate = parse_candidate(mutated)
    except DecodeError:
        return
    assert parse_candidate(render_candidate(candidate)).host == candidate.host
