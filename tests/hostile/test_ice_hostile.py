"""Hostile input for an ICE session (issue 18): what a peer signals through the hub's room —
malformed, oversized and too many candidates, bad credentials — raises the documented errors
(:class:`~a2al_mcp.errors.DecodeError`, :class:`~a2al_mcp.errors.LimitExceeded`), is counted
where :class:`~a2al_mcp.ice.session.IceStatistics` has a counter, and leaves the session
usable: good candidates and credentials are still taken afterwards.

(tests/unit/ice/test_ice_session.py has one case of each; nothing here gathers or sends.)
"""

from __future__ import annotations

import pytest

from a2al_mcp import SeededRng
from a2al_mcp._clock import SystemClock
from a2al_mcp.errors import DecodeError, LimitExceeded, UsageError
from a2al_mcp.ice import IceConfig, IceSession

pytestmark = pytest.mark.anyio

GOOD = "1 1 udp 2130706431 10.0.0.2 {port} typ host"
UFRAG, PWD = "kYGSNAIcGbKkXgCt", "ItfdoSBhgVrxyIjVFZKoprFaBWOOQDjO"

MALFORMED: list[object] = [
    None,
    42,
    b"1 1 udp 1 10.0.0.2 5 typ host",
    ["1 1 udp 1 10.0.0.2 5 typ host"],
    "",
    " " * 40,
    "candidate:",
    "1 1 udp 1 10.0.0.2 5 typ",  # seven fields
    "1 1 udp 1 10.0.0.2 5 typ host\x00",  # NUL
    "1 1 udp 1 10.0.0.2 5 typ host\n1 1 udp 1 10.0.0.3 5 typ host",  # two in one
    "1 1 udp 1 10.0.0.\u0662 5 typ host",  # a non-ASCII digit
    "1 1 sctp 1 10.0.0.2 5 typ host",
    "1 1 udp -1 10.0.0.2 5 typ host",
    "1 1 udp 4294967296 10.0.0.2 5 typ host",  # priority over 32 bits
    "1 0 udp 1 10.0.0.2 5 typ host",  # component 0
    "1 1 udp 1 10.0.0.2 0 typ host",  # port 0
    "1 1 udp 1 10.0.0.2 65536 typ host",
    "1 1 udp 1 10.0.0.2 0x10 typ host",
    "1 1 udp 1 999.0.0.2 5 typ host",
    "1 1 udp 1 example.com 5 typ host",
    "1 1 udp 1 ::ffff:zz 5 typ host",
    "1 1 udp 1 10.0.0.2 5 type host",
    "1 1 udp 1 10.0.0.2 5 typ bogus",
    "f*o 1 udp 1 10.0.0.2 5 typ host",  # foundation not ice-chars
    "1 1 udp 1 10.0.0.2 5 typ srflx raddr 10.0.0.1",  # raddr without rport
    "1 1 udp 1 10.0.0.2 5 typ srflx rport 9",  # rport without raddr
    "1 1 udp 1 10.0.0.2 5 typ srflx raddr 10.0.0.1 rport 9 raddr 10.0.0.1",
    "1 1 udp 1 10.0.0.2 5 typ host generation 0 generation 0",
    "1 1 udp 1 10.0.0.2 5 typ host " + "a b " * 9,  # more than 24 fields
    "1 1 udp 1 10.0.0.2 5 typ host ufrag " + "x" * 300,  # over max_candidate_chars
    "1 1 udp 1 10.0.0.2 5 typ host x" + "y" * (1 << 20),  # a megabyte
]


def session(**config: object) -> IceSession:
    return IceSession(IceConfig(**config), controlling=False, clock=SystemClock(),  # type: ignore[arg-type]
                      rng=SeededRng(11))  # fmt: skip


async def test_malformed_candidates_raise_and_are_counted_the_next_is_taken() -> None:
    async with session() as ice:
        for n, text in enumerate(MALFORMED, start=1):
            with pytest.raises(DecodeError):
                await ice.add_remote_candidate(text)
            assert ice.statistics().remote_malformed == n
            assert await ice.add_remote_candidate(GOOD.format(port=n))  # still taken
        stats = ice.statistics()
        ice.set_remote_credentials(UFRAG, PWD)
        await ice.end_of_candidates()
    assert stats.remote == {"host": len(MALFORMED)}
    assert (stats.remote_malformed, stats.remote_unsupported) == (len(MALFORMED), 0)


async def test_too_many_candidates_raise_limit_exceeded_and_the_session_goes_on() -> None:
    """Past ``max_remote_candidates`` every candidate raises (good or malformed: the limit
    comes first, nothing is parsed); what was taken stays, and credentials and the end of
    candidates are still taken."""
    async with session(max_remote_candidates=8) as ice:
        for port in range(1, 9):
            assert await ice.add_remote_candidate(GOOD.format(port=port))
        for text in (GOOD.format(port=9), "garbage", "x" * (1 << 20)):
            with pytest.raises(LimitExceeded):
                await ice.add_remote_candidate(text)
        stats = ice.statistics()
        assert (stats.remote, stats.remote_malformed) == ({"host": 8}, 0)
        # so does an unsupported one: the limit is checked before anything is parsed
        with pytest.raises(LimitExceeded):
            await ice.add_remote_candidate("1 1 tcp 1 10.0.0.2 9 typ host tcptype active")
        ice.set_remote_credentials(UFRAG, PWD)
        await ice.end_of_candidates()
        assert not await ice.add_remote_candidate(GOOD.format(port=10))  # after eoc: ignored
        stats = ice.statistics()
    assert (stats.remote, stats.remote_unsupported) == ({"host": 8}, 1)


BAD_CREDENTIALS: list[tuple[object, object]] = [
    (None, PWD),
    (UFRAG, None),
    (b"kYGSNAIcGbKkXgCt", PWD),
    (UFRAG, PWD.encode()),
    (123456, PWD),
    ("abc", PWD),  # ufrag under 4
    ("a" * 257, PWD),  # ufrag over 256
    (UFRAG, "p" * 21),  # password under 22
    (UFRAG, "p" * 257),
    ("kYGS NAIc", PWD),
    ("kYGS\x00NAIc", PWD),
    (UFRAG, PWD[:-1] + "="),
    ("ufrag\u00e9", PWD),
    ("a" * (1 << 20), PWD),
]


async def test_bad_credentials_raise_decode_error_and_good_ones_are_still_taken() -> None:
    async with session() as ice:
        for ufrag, pwd in BAD_CREDENTIALS:
            with pytest.raises(DecodeError):
                ice.set_remote_credentials(ufrag, pwd)
        ice.set_remote_credentials(UFRAG, PWD)
        ice.set_remote_credentials(UFRAG, PWD)  # a repeat is ignored
        for ufrag, pwd in BAD_CREDENTIALS:  # still refused, and the first pair stays
            with pytest.raises(DecodeError):
                ice.set_remote_credentials(ufrag, pwd)
        with pytest.raises(UsageError):  # a different well-formed pair: the peer changed
            ice.set_remote_credentials("Zz" + UFRAG[2:], PWD)
        assert await ice.add_remote_candidate(GOOD.format(port=1))
        assert ice.statistics().remote == {"host": 1}
