"""The caller's dial strategy (a2al_mcp.node.dial_strategy): which paths start when, from both
records' facts, and the per-peer cache of what worked. Pure: no sockets."""

from __future__ import annotations

import pytest

from a2al_mcp import SystemRng
from a2al_mcp.identity import Identity
from a2al_mcp.identity.aid import Aid
from a2al_mcp.node.dial_strategy import (
    HEAD_START_MAX_S,
    HEAD_START_MIN_S,
    PathCache,
    PathTry,
    UsedPath,
    head_start_s,
    plan_dial,
)

HUB = ("ws://203.0.113.1:4120",)
HUBS = ("ws://203.0.113.1:4120", "ws://198.51.100.2:4121")
ADDR = ("203.0.113.9", 4121)


def _aid() -> Aid:
    return Identity.generate(SystemRng()).aid


@pytest.mark.parametrize("target_nat", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("own_nat", [0, 1, 2, 3, 4])
def test_without_a_hub_in_the_record_only_the_direct_path_runs(
    target_nat: int, own_nat: int
) -> None:
    plan = plan_dial(target_nat=target_nat, hubs=(), own_nat=own_nat, has_direct=True)
    assert plan.hub_after_s is None and plan.direct_first is None


@pytest.mark.parametrize("target_nat", [2, 3, 4])
@pytest.mark.parametrize("own_nat", [0, 1, 2, 3, 4])
def test_a_target_behind_a_restricting_nat_rings_its_hubs_at_once(
    target_nat: int, own_nat: int
) -> None:
    plan = plan_dial(target_nat=target_nat, hubs=HUBS, own_nat=own_nat, has_direct=True)
    assert plan.hub_after_s == 0.0
    assert f"type {target_nat}" in plan.reason


@pytest.mark.parametrize("target_nat", [0, 1])
@pytest.mark.parametrize("own_nat", [0, 1, 2, 3, 4])
def test_a_public_or_unknown_target_with_hubs_rings_them_at_once_when_nothing_is_cached(
    target_nat: int, own_nat: int
) -> None:
    """a2ald 0.3.5 publishes a port-restricted NAT as 1 (testbed D5): a public or cone caller
    does not wait a head start on a record that may lie."""
    plan = plan_dial(target_nat=target_nat, hubs=HUB, own_nat=own_nat, has_direct=True)
    assert plan.hub_after_s == 0.0 and plan.direct_first is None


@pytest.mark.parametrize("target_nat", [0, 1])
@pytest.mark.parametrize(("own_nat", "after"), [(0, HEAD_START_MAX_S), (1, HEAD_START_MAX_S),
                                                 (2, 0.0), (3, 0.0), (4, 0.0)])  # fmt: skip
def test_direct_worked_last_time_gives_it_a_head_start_unless_we_are_behind_a_nat(
    target_nat: int, own_nat: int, after: float
) -> None:
    cached = UsedPath("direct", ADDR, rtt_s=1.0, took_s=1.0)  # a slow RTT: the longest wait
    plan = plan_dial(target_nat=target_nat, hubs=HUB, own_nat=own_nat, has_direct=True,
                     cached=cached)  # fmt: skip
    assert plan.hub_after_s == after and plan.direct_first == ADDR


def test_a_record_without_a_dialable_url_uses_the_hub_alone() -> None:
    plan = plan_dial(target_nat=1, hubs=HUB, own_nat=1, has_direct=False)
    assert plan.hub_after_s == 0.0


def test_the_head_start_follows_the_cached_rtt_within_bounds() -> None:
    assert head_start_s(None) == HEAD_START_MAX_S
    assert head_start_s(0.001) == HEAD_START_MIN_S
    assert head_start_s(0.1) == pytest.approx(0.3)
    assert head_start_s(2.0) == HEAD_START_MAX_S
    cached = UsedPath("direct", ADDR, rtt_s=0.08, took_s=0.08)
    plan = plan_dial(target_nat=1, hubs=HUB, own_nat=1, has_direct=True, cached=cached)
    assert plan.hub_after_s == pytest.approx(0.24)
    plan = plan_dial(target_nat=0, hubs=HUB, own_nat=0, has_direct=True, cached=cached)
    assert plan.hub_after_s == pytest.approx(0.24)
    assert plan.direct_first == ADDR


@pytest.mark.parametrize("kind", ["punched", "ice", "relay"])
def test_a_cached_hub_path_rings_the_hub_at_once_even_for_a_public_record(kind: str) -> None:
    cached = UsedPath(kind, ADDR, rtt_s=0.3, took_s=0.3)  # type: ignore[arg-type]
    plan = plan_dial(target_nat=1, hubs=HUB, own_nat=1, has_direct=True, cached=cached)
    assert plan.hub_after_s == 0.0 and plan.direct_first is None
    assert kind in plan.reason
    # with no hub in the newer record, the punch cannot be tried: direct only
    plan = plan_dial(target_nat=1, hubs=(), own_nat=1, has_direct=True, cached=cached)
    assert plan.hub_after_s is None


def test_a_cached_direct_address_is_dialled_first_with_or_without_hubs() -> None:
    cached = UsedPath("direct", ADDR, rtt_s=0.01, took_s=0.01)
    for hubs in ((), HUB):
        plan = plan_dial(target_nat=3, hubs=hubs, own_nat=3, has_direct=True, cached=cached)
        assert plan.direct_first == ADDR


def test_the_cache_expires_entries_after_its_ttl() -> None:
    cache = PathCache(capacity=4, ttl_s=10.0)
    peer = _aid()
    path = UsedPath("punched", ADDR, 0.2, 0.2)
    cache.put(peer, path, now=100.0)
    assert cache.get(peer, now=110.0) == path
    assert cache.get(peer, now=110.5) is None
    assert len(cache) == 0  # the expired entry is gone, not only hidden


def test_the_cache_is_bounded_and_evicts_the_least_recently_stored() -> None:
    cache = PathCache(capacity=2, ttl_s=60.0)
    a, b, c = _aid(), _aid(), _aid()
    cache.put(a, UsedPath("direct", ADDR, 0.1, 0.1), now=0.0)
    cache.put(b, UsedPath("direct", ADDR, 0.1, 0.1), now=1.0)
    cache.put(a, UsedPath("punched", ADDR, 0.2, 0.2), now=2.0)  # a is stored again: newest
    cache.put(c, UsedPath("direct", ADDR, 0.1, 0.1), now=3.0)
    assert len(cache) == 2
    assert cache.get(b, now=3.0) is None
    held = cache.get(a, now=3.0)
    assert held is not None and held.kind == "punched"
    cache.forget(a)
    assert cache.get(a, now=3.0) is None and cache.get(c, now=3.0) is not None


def test_a_path_try_describes_when_it_started_how_long_it_took_and_how_it_ended() -> None:
    t = PathTry("punched", started_s=0.5, took_s=8.25, outcome="hole punch failed: no go")
    assert t.describe() == "punched (+0.50 s, 8.25 s: hole punch failed: no go)"
