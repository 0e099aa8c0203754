"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import anyio

__all__ = ["pct", "thread"]


def pct(xs: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``xs``."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def thread(fn: Callable[..., Any], *a: Any) -> Any:
    """Run a blocking call (a2ald REST) in a worker thread."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *a))
