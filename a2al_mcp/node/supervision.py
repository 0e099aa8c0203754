"""Supervisor: runs the node's tasks in its task group and contains what they raise.

Peer-driven work (:meth:`Supervisor.spawn`: a stream handler, a mailbox store, a route
deadline...) ends on its own failure only; a background loop (:meth:`Supervisor.start`:
republish, rejoin, keep-alive, mailbox poll) that fails is started again after
``restart_s``. Every failure is counted (:attr:`~Supervisor.tasks`, :attr:`~Supervisor.loops`,
:attr:`~Supervisor.last`) and logged at most once per kind per ``log_interval_s``.
Cancellation and exit propagate: what may be contained is
:func:`~a2al_mcp._containment.containable`'s call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import anyio.abc

from .._clock import Clock
from .._containment import containable

__all__ = ["LOG_INTERVAL_S", "LOOP_RESTART_S", "Supervisor"]

logger = logging.getLogger(__name__)

LOG_INTERVAL_S: Final = 30.0
"""A contained failure of one kind is logged at most this often (always counted)."""
LOOP_RESTART_S: Final = 1.0
"""A background loop that failed is started again after this long."""


class Supervisor:
    """Spawns into one task group while attached; counts and logs contained failures."""

    def __init__(
        self,
        *,
        clock: Clock,
        log_interval_s: float = LOG_INTERVAL_S,
        restart_s: float = LOOP_RESTART_S,
    ) -> None:
        self._clock = clock
        self._log_interval_s = log_interval_s
        self._restart_s = restart_s
        self._tg: anyio.abc.TaskGroup | None = None
        self._last_log: dict[str, float] = {}
        self.tasks = 0
        """Spawned tasks that raised."""
        self.loops = 0
        """Failures of background loops (each started again)."""
        self.last = ""
        """The type name of the most recent contained exception (empty if none)."""

    def attach(self, tg: anyio.abc.TaskGroup) -> None:
        """Run tasks in ``tg`` from now on (the owner is open)."""
        self._tg = tg

    def detach(self) -> None:
        """Ignore :meth:`spawn` from now on (the owner is closing)."""
        self._tg = None

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn()`` as a task (ignored when detached). Whatever it raises ends that task
        only: counted, logged at most once per interval; cancellation and exit propagate."""
        if self._tg is None:
            return

        async def run() -> None:
            try:
                await fn()
            except BaseException as exc:
                if not containable(exc):
                    raise
                self.tasks += 1
                self.contained("task", exc)

        self._tg.start_soon(run)

    def start(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run the background ``loop`` under :meth:`supervise` (when attached)."""
        if self._tg is not None:
            self._tg.start_soon(self.supervise, loop)

    async def supervise(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run ``loop()``; if it fails (a peer's data, a full disk...), count it, log it
        and start it again after ``restart_s``, so the owner carries on."""
        while True:
            try:
                await loop()
                return
            except BaseException as exc:
                if not containable(exc):
                    raise
                self.loops += 1
                self.contained(f"loop.{getattr(loop, '__name__', 'loop')}", exc)
            await anyio.sleep(self._restart_s)

    def contained(self, kind: str, exc: BaseException) -> None:
        """Note one contained exception of ``kind`` (logged at most once per interval)."""
        self.last = type(exc).__name__
        now = self._clock.monotonic()
        last = self._last_log.get(kind)
        if last is None or now - last >= self._log_interval_s:
            self._last_log[kind] = now
            logger.warning("node.contained kind=%s error=%r", kind, exc, exc_info=exc)
