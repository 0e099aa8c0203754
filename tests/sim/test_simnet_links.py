"""The pieces SimNetwork is built from, tested alone: a link's fate for one datagram
(:func:`transit`) and the auto-assigned virtual addresses (:func:`virtual_addr`)."""

from __future__ import annotations

import math
import random

import pytest

from a2al_mcp._types import Addr
from a2al_mcp.testing.simnet_links import Link, transit
from a2al_mcp.testing.simnet_nodes import DEFAULT_PORT, fmt_addr, virtual_addr

A: Addr = ("10.0.0.1", DEFAULT_PORT)
B: Addr = ("10.0.0.2", DEFAULT_PORT)


def test_plain_link_gives_one_copy_at_the_latency_and_draws_nothing() -> None:
    rnd = random.Random(3)
    state = rnd.getstate()
    assert transit(Link(latency_s=0.25), None, A, B, b"x", rnd) == (0.25,)
    assert rnd.getstate() == state


def test_draw_order_is_loss_jitter_duplicate_jitter() -> None:
    link = Link(latency_s=0.5, jitter_s=0.25, loss=0.5, duplicate=0.5)
    for seed in range(50):
        got = transit(link, None, A, B, b"x", random.Random(seed))
        ref = random.Random(seed)
        if ref.random() < 0.5:
            assert got == "lost"
            continue
        first = 0.5 + ref.random() * 0.25
        if ref.random() < 0.5:
            assert got == (first, 0.5 + ref.random() * 0.25)
        else:
            assert got == (first,)


def test_router_drops_before_any_draw_and_adds_delay() -> None:
    seen: list[tuple[Addr, Addr, bytes]] = []

    def drop(src: Addr, dst: Addr, data: bytes) -> bool:
        seen.append((src, dst, data))
        return False

    rnd = random.Random(1)
    state = rnd.getstate()
    assert transit(Link(latency_s=0.1, loss=1.0), drop, A, B, b"hi", rnd) == "router"
    assert seen == [(A, B, b"hi")]
    assert rnd.getstate() == state
    assert transit(Link(latency_s=0.25), lambda *_: True, A, B, b"", rnd) == (0.25,)
    assert transit(Link(latency_s=0.25), lambda *_: 0.5, A, B, b"", rnd) == (0.75,)


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan])
def test_router_delay_must_be_finite_and_not_negative(bad: float) -> None:
    with pytest.raises(ValueError, match="router returned"):
        transit(Link(latency_s=0.1), lambda *_: bad, A, B, b"", random.Random(0))


def test_virtual_addresses_skip_network_and_broadcast_bytes() -> None:
    assert virtual_addr(0) == ("10.0.0.1", DEFAULT_PORT)
    assert virtual_addr(253) == ("10.0.0.254", DEFAULT_PORT)
    assert virtual_addr(254) == ("10.0.1.1", DEFAULT_PORT)
    assert virtual_addr(254 * 256) == ("10.1.0.1", DEFAULT_PORT)
    assert virtual_addr(254 * 65536 - 1) == ("10.255.255.254", DEFAULT_PORT)
    with pytest.raises(ValueError, match="out of auto-assigned"):
        virtual_addr(254 * 65536)


def test_fmt_addr_brackets_ipv6_only() -> None:
    assert fmt_addr(("10.0.0.1", 4121)) == "10.0.0.1:4121"
    assert fmt_addr(("::1", 4121)) == "[::1]:4121"
