"""A manual clock for tests and simulations.

:class:`FakeClock` satisfies the :class:`a2al_mcp._clock.Clock` protocol, but its time moves only
when the test (or :class:`a2al_mcp.testing.simnet.SimNetwork`) moves it. The wall clock is the
monotonic clock plus a fixed offset, so simulated time also moves record timestamps and expiry::

    clock = FakeClock()
    wall_offset = clock.wall() - clock.monotonic()   # what a driver hands to a core
    clock.advance(30.0)
"""

from __future__ import annotations

import math

__all__ = ["FakeClock"]


class FakeClock:
    """A clock whose time moves only through :meth:`advance` and :meth:`set`.

    Args:
        start_monotonic: The initial monotonic reading, in seconds. It is deliberately not zero
            by default, so code that assumes "time starts at 0" is caught.
        wall_offset: Seconds added to the monotonic reading to give :meth:`wall` (Unix time).
    """

    __slots__ = ("_now", "_wall_offset")

    def __init__(
        self, start_monotonic: float = 1000.0, wall_offset: float = 1_700_000_000.0
    ) -> None:
        _check_finite("start_monotonic", start_monotonic)
        _check_finite("wall_offset", wall_offset)
        self._now = float(start_monotonic)
        self._wall_offset = float(wall_offset)

    def monotonic(self) -> float:
        """The current monotonic time, in seconds."""
        return self._now

    def wall(self) -> float:
        """The current Unix time: ``monotonic() + wall_offset``."""
        return self._now + self._wall_offset

    @property
    def wall_offset(self) -> float:
        """``wall() - monotonic()``, constant for the clock's lifetime."""
        return self._wall_offset

    def advance(self, seconds: float) -> float:
        """Move time forward.

        Args:
            seconds: How far to move, ``>= 0``.

        Returns:
            The new monotonic time.

        Raises:
            ValueError: If ``seconds`` is negative or not finite.
        """
        _check_finite("seconds", seconds)
        if seconds < 0:
            raise ValueError(f"cannot advance a monotonic clock by {seconds!r} s")
        self._now += seconds
        return self._now

    def set(self, t: float) -> None:
        """Jump to the monotonic time ``t``.

        Args:
            t: The new monotonic time; it must not be earlier than the current one.

        Raises:
            ValueError: If ``t`` is earlier than :meth:`monotonic` or not finite.
        """
        _check_finite("t", t)
        if t < self._now:
            raise ValueError(f"monotonic time cannot go back from {self._now!r} to {t!r}")
        self._now = float(t)

    def __repr__(self) -> str:
        return f"FakeClock(monotonic={self._now!r}, wall_offset={self._wall_offset!r})"


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
