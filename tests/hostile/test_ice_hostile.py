"""Hostile input for an ICE session (issue 18): what a peer signals through the hub's room —
malformed, oversized and too many candidates, bad credentials — raises the documented errors
(:class:`~a2al_mcp.errors.DecodeError`, :class:`~a2al_mcp.errors.LimitExceeded`), is counted
in :class:`~a2al_mcp.ice.session.IceStatistics`, and leaves the session usable: good
candidates and credentials are still taken afterwards. Connectivity checks that do not carry
our credentials are answered 401 and counted.

(tests/unit/ice/test_ice_session.py has one case of each; only the last test here gathers and
sends, on 127.0.0.1 alone.)
"""

from __future__ import annotations

import aioice.ice
import pytest

from a2al_mcp import SeededRng
from a2al_mcp._clock import SystemClock
from a2al_mcp.errors import DecodeError, LimitExceeded, RequestTimeout, Unreachable, UsageError
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
        for n, text in enumerate((GOOD.format(port=9), "garbage", "x" * (1 << 20)), start=1):
            with pytest.raises(LimitExceeded):
                await ice.add_remote_candidate(text)
            assert ice.statistics().remote_over_limit == n
        stats = ice.statistics()
        assert (stats.remote, stats.remote_malformed) == ({"host": 8}, 0)
        # so does an unsupported one: the limit is checked before anything is parsed
        with pytest.raises(LimitExceeded):
            await ice.add_remote_candidate("1 1 tcp 1 10.0.0.2 9 typ host tcptype active")
        assert ice.statistics().remote_over_limit == 4
        ice.set_remote_credentials(UFRAG, PWD)
        await ice.end_of_candidates()
        assert not await ice.add_remote_candidate(GOOD.format(port=10))  # after eoc: ignored
        stats = ice.statistics()
    assert (stats.remote, stats.remote_unsupported, stats.remote_over_limit) == ({"host": 8}, 1, 4)


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
        for n, (ufrag, pwd) in enumerate(BAD_CREDENTIALS, start=1):
            with pytest.raises(DecodeError):
                ice.set_remote_credentials(ufrag, pwd)
            assert ice.statistics().remote_bad_credentials == n
        ice.set_remote_credentials(UFRAG, PWD)
        ice.set_remote_credentials(UFRAG, PWD)  # a repeat is ignored (and not counted)
        assert ice.statistics().remote_bad_credentials == len(BAD_CREDENTIALS)
        for ufrag, pwd in BAD_CREDENTIALS:  # still refused, and the first pair stays
            with pytest.raises(DecodeError):
                ice.set_remote_credentials(ufrag, pwd)
        with pytest.raises(UsageError):  # a different well-formed pair: the peer changed
            ice.set_remote_credentials("Zz" + UFRAG[2:], PWD)
        assert await ice.add_remote_candidate(GOOD.format(port=1))
        stats = ice.statistics()
        assert stats.remote == {"host": 1}
        assert stats.remote_bad_credentials == 2 * len(BAD_CREDENTIALS) + 1


async def test_checks_signed_with_the_wrong_password_are_refused_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer whose connectivity checks do not carry our password (it was given another, or
    forges them): every check is answered 401, counted in ``checks_unauthenticated``, and no
    pair is selected on its side. Both agents gather on 127.0.0.1 only (aioice's host
    addresses leave loopback out; here they are loopback alone): nothing leaves the host."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    config = IceConfig(connect_timeout_s=1.0)
    clock = SystemClock()
    async with (
        IceSession(config, controlling=False, clock=clock, rng=SeededRng(1)) as a,
        IceSession(config, controlling=True, clock=clock, rng=SeededRng(2)) as b,
    ):
        a_cands, b_cands = await a.gather(), await b.gather()
        assert a_cands and b_cands
        a.set_remote_credentials(b.local_credentials.ufrag, b.local_credentials.pwd)
        forged = "x" * len(a.local_credentials.pwd)  # B signs its checks with a wrong key
        b.set_remote_credentials(a.local_credentials.ufrag, forged)
        for text in a_cands:
            await b.add_remote_candidate(text)
        await b.end_of_candidates()
        with pytest.raises((Unreachable, RequestTimeout)):
            await b.connect()
        stats = a.statistics()
    assert stats.checks_unauthenticated >= 1
    assert b.statistics().checks_unauthenticated == 0  # A never checked B: it had no candidate
