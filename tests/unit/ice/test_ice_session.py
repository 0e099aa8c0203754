"""IceSession's handling of what the peer signals, without sockets (nothing is gathered here:
gathering binds every interface, so it runs only in the NAT testbed, tests/nat/test_ice.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from a2al_mcp import SeededRng
from a2al_mcp._clock import SystemClock
from a2al_mcp.errors import DecodeError, LimitExceeded, UsageError
from a2al_mcp.ice import IceConfig, IceSession

pytestmark = pytest.mark.anyio

CAPTURED = json.loads((Path(__file__).parent / "captured_ice_frames.json").read_text())
CANDIDATES = [entry["c"] for entry in CAPTURED["cand"]]
CRED = CAPTURED["cred"][0]


def session(**config: object) -> IceSession:
    return IceSession(IceConfig(**config), controlling=False, clock=SystemClock(),  # type: ignore[arg-type]
                      rng=SeededRng(7))  # fmt: skip


async def test_every_captured_candidate_is_taken_and_counted() -> None:
    async with session() as ice:
        for text in CANDIDATES:
            assert await ice.add_remote_candidate(text)
        stats = ice.statistics()
    assert stats.remote == {"host": 10, "srflx": 20, "relay": 4}
    assert stats.remote_malformed == stats.remote_unsupported == 0


async def test_malformed_is_raised_and_counted_unsupported_is_ignored_and_counted() -> None:
    async with session() as ice:
        with pytest.raises(DecodeError):
            await ice.add_remote_candidate("1 1 udp 1 10.0.0.2 0 typ host")
        with pytest.raises(DecodeError):
            await ice.add_remote_candidate(b"1 1 udp 1 10.0.0.2 5 typ host")
        assert not await ice.add_remote_candidate("1 1 tcp 1 10.0.0.2 9 typ host tcptype active")
        assert not await ice.add_remote_candidate("1 1 udp 1 x.local 9 typ host")
        assert not await ice.add_remote_candidate("1 1 udp 1 10.0.0.3 9 typ prflx")
        assert not await ice.add_remote_candidate("1 2 udp 1 10.0.0.4 9 typ host")
        stats = ice.statistics()
    assert (stats.remote_malformed, stats.remote_unsupported, stats.remote) == (2, 4, {})


async def test_the_candidate_count_and_length_are_capped() -> None:
    async with session(max_remote_candidates=3, max_candidate_chars=64) as ice:
        with pytest.raises(DecodeError):
            await ice.add_remote_candidate(CANDIDATES[1] + " generation 0" * 4)
        for port in (1, 2, 3):
            assert await ice.add_remote_candidate(f"1 1 udp 1 10.0.0.2 {port} typ host")
        with pytest.raises(LimitExceeded):
            await ice.add_remote_candidate("1 1 udp 1 10.0.0.2 4 typ host")
        stats = ice.statistics()
    assert (stats.remote, stats.remote_malformed, stats.remote_over_limit) == ({"host": 3}, 1, 1)


async def test_nothing_is_taken_after_end_of_candidates_or_close() -> None:
    async with session() as ice:
        await ice.end_of_candidates()
        await ice.end_of_candidates()  # a repeated eoc is harmless
        assert not await ice.add_remote_candidate(CANDIDATES[0])
    assert not await ice.add_remote_candidate(CANDIDATES[1])
    await ice.close()  # idempotent
    assert ice.statistics().remote_unsupported == 2


async def test_remote_credentials() -> None:
    async with session() as ice:
        with pytest.raises(DecodeError):
            ice.set_remote_credentials("abc", CRED["p"])
        ice.set_remote_credentials(CRED["u"], CRED["p"])
        ice.set_remote_credentials(CRED["u"], CRED["p"])  # the same again: ignored
        other = CAPTURED["cred"][1]
        with pytest.raises(UsageError):
            ice.set_remote_credentials(other["u"], other["p"])
        stats = ice.statistics()
    assert (stats.remote_bad_credentials, stats.checks_unauthenticated) == (2, 0)


async def test_local_credentials_are_pion_shaped_and_fresh() -> None:
    async with session() as a, IceSession(IceConfig(), controlling=True,
                                          clock=SystemClock()) as b:  # fmt: skip
        assert len(a.local_credentials.ufrag) == 16 and len(a.local_credentials.pwd) == 32
        assert a.local_credentials != b.local_credentials


async def test_connect_needs_gather_and_an_open_session() -> None:
    ice = session()
    with pytest.raises(UsageError):
        await ice.connect()
    await ice.close()
    with pytest.raises(UsageError):
        await ice.gather()
    assert ice.selected is None
