"""What a simulated path does to one datagram: latency, jitter, loss, duplication, the router hook.

:func:`transit` is the whole decision, drawn from the network's one ``random.Random``; the
driver (:class:`~a2al_mcp.testing.simnet.SimNetwork`) only schedules what it returns.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from a2al_mcp._types import Addr

__all__ = ["Link", "Router", "transit"]

Router: TypeAlias = Callable[[Addr, Addr, bytes], bool | float]
"""``fn(src, dst, data)``: ``False`` drops the datagram, ``True`` lets it pass unchanged, and a
number ``>= 0`` lets it pass with that many extra seconds of delay."""


@dataclass(frozen=True, slots=True)
class Link:
    """One direction of a path between two nodes.

    Each datagram takes ``latency_s + uniform(0, jitter_s)`` seconds, so jitter can reorder
    datagrams sent close together.
    """

    latency_s: float
    """Fixed one-way delay in seconds, ``>= 0``."""
    jitter_s: float = 0.0
    """Extra delay drawn uniformly from ``[0, jitter_s]`` per datagram and per copy."""
    loss: float = 0.0
    """Probability in ``[0, 1]`` that a datagram is dropped."""
    duplicate: float = 0.0
    """Probability in ``[0, 1]`` that a datagram that was not lost arrives twice."""

    def __post_init__(self) -> None:
        for name in ("latency_s", "jitter_s", "loss", "duplicate"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"Link.{name} must be a finite number >= 0, got {value!r}")
        for name in ("loss", "duplicate"):
            if getattr(self, name) > 1:
                raise ValueError(f"Link.{name} is a probability, got {getattr(self, name)!r}")


def transit(
    link: Link,
    router: Router | None,
    src: Addr,
    dst: Addr,
    data: bytes,
    rnd: random.Random,
) -> Literal["router", "lost"] | tuple[float, ...]:
    """Decide the fate of one datagram sent over ``link`` from ``src`` to ``dst``.

    The router hook is consulted first, then loss is drawn, then the jitter of the first copy,
    then duplication and the jitter of the second copy, always in this order so that a seed
    gives the same run.

    Returns:
        ``"router"`` or ``"lost"`` when the datagram is dropped, else the delay of each copy
        (one, or two when the link duplicated it), in the order they were drawn.

    Raises:
        ValueError: The router returned a number that is not a finite delay ``>= 0``.
    """
    delay = link.latency_s
    if router is not None:
        verdict = router(src, dst, data)
        if verdict is False:
            return "router"
        if verdict is not True:
            extra = float(verdict)
            if not math.isfinite(extra) or extra < 0:
                raise ValueError(f"router returned {verdict!r}; want a bool or a delay >= 0")
            delay += extra
    if link.loss and rnd.random() < link.loss:
        return "lost"
    jitter = link.jitter_s
    first = delay + rnd.random() * jitter if jitter else delay
    if link.duplicate and rnd.random() < link.duplicate:
        second = delay + rnd.random() * jitter if jitter else delay
        return (first, second)
    return (first,)
