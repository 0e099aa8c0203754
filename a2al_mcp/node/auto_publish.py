"""AutoPublisher: the node's endpoint records follow what it knows of its address.

Two duties, one loop (run by the node's supervisor):

* **republish at once** — when the NAT view changes (a new consensus or STUN address, a new
  NAT type, a gateway mapping won or lost, a network change), :meth:`AutoPublisher.changed`
  wakes the loop, which renews the endpoint record of every published identity right away
  (:meth:`~.publisher.Publisher.republish_endpoints`), instead of at the next 30-min renewal;
* **auto-publish** — with ``enabled`` (a node run by ``serve`` / ``node run`` whose
  configuration keeps ``auto_publish`` on, as a2ald's), the node's own endpoint record is
  published by itself as soon as there is an address to publish, and published again every
  :data:`RETRY_S` while that fails (no peer took it yet).

Changes that come while a republish runs are folded into one more round after it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

from ..errors import A2ALError
from ..identity.aid import Aid
from .publisher import Publisher

__all__ = ["RETRY_S", "AutoPublisher"]

logger = logging.getLogger(__name__)

RETRY_S: Final = 5.0
"""An auto-publish that found no address or no peer is tried again this often."""
SETTLE_MAX_S: Final = 1.0
"""The node's first auto-publish waits at most this long for a STUN test or a found
gateway's first mapping request under way, so that its first record carries the NAT type
and address they are about to tell. An answered RFC 5780 test (full cone) takes
milliseconds; an unanswered one (port-restricted, symmetric) takes the STUN retransmissions
(3.5 s), and waiting for that only delays a record that is already right: 1 s is the
trade (measured in the NAT testbed: 3 s held the port-restricted and symmetric records
2 s longer)."""
_SETTLE_STEP_S: Final = 0.05
_MAX_IN_FLIGHT: Final = 2
"""Rounds at once: the one waiting for its lookup, and one with the newest change."""


class AutoPublisher:
    """Republishes endpoint records when the NAT view changes; publishes the node's own
    record by itself when ``enabled``."""

    def __init__(
        self,
        publisher: Publisher,
        *,
        node_aid: Aid,
        enabled: bool,
        knows_address: Callable[[], bool],
        joined: Callable[[], Awaitable[object]],
        settling: Callable[[], bool] = lambda: False,
        retry_s: float = RETRY_S,
        settle_max_s: float = SETTLE_MAX_S,
    ) -> None:
        """
        Args:
            publisher: the node's publisher.
            node_aid: the node's own AID (the identity auto-published).
            enabled: publish the node's record by itself.
            knows_address: there is an address to publish now.
            joined: waits until the network join has finished.
            settling: a test whose answer may change the record is under way.
            retry_s: how often a failed auto-publish is tried again.
            settle_max_s: how long the first auto-publish waits while ``settling``.
        """
        self._publisher = publisher
        self._aid = node_aid
        self.enabled = enabled
        self._knows_address = knows_address
        self._joined = joined
        self._retry_s = retry_s
        self._settling = settling
        self._settle_max_s = settle_max_s
        self._held = False
        self._first_in_flight = False
        self._in_flight = 0
        self._wake = anyio.Event()
        self._dirty = False
        self.republished = 0
        """Rounds of :meth:`~.publisher.Publisher.republish_endpoints` run on a change."""
        self.auto_published = 0
        """Times the node's record was published by itself."""

    def changed(self) -> None:
        """The NAT view changed: republish at once (synchronous, from the event path)."""
        self._dirty = True
        self._wake.set()

    async def run(self) -> None:
        """The loop: wait for a change (or :data:`RETRY_S` while an auto-publish is due),
        then publish or republish. A change that comes while a round is still waiting for
        its lookup (seconds, with dead peers in the network) starts a second round at once
        instead of after it (:data:`_MAX_IN_FLIGHT`): the newer record wins by its seq."""
        await self._joined()
        async with anyio.create_task_group() as tg:
            while True:
                self._wake = anyio.Event()
                if self._in_flight < _MAX_IN_FLIGHT and (self._dirty or self._due()):
                    self._in_flight += 1
                    tg.start_soon(self._one_round)
                with anyio.move_on_after(self._retry_s if self._due() else float("inf")):
                    await self._wake.wait()

    async def _one_round(self) -> None:
        waited = True
        try:
            waited = await self._round()
        finally:
            self._in_flight -= 1
            if self._dirty and waited:  # a change that came during this round: go again now
                self._wake.set()

    def _due(self) -> bool:
        return self.enabled and self._aid not in self._publisher.published()

    async def _round(self) -> bool:
        """One publish or republish; False when it returned at once leaving the change to
        the first publish under way (which goes again when it ends)."""
        if self._due():
            if self._first_in_flight:
                return False
            self._dirty = False
            if not self._knows_address():
                return True
            self._first_in_flight = True
            try:
                if not self._held:  # the first record: let a test under way finish first
                    self._held = True
                    for _ in range(round(self._settle_max_s / _SETTLE_STEP_S)):
                        if not self._settling():
                            break
                        await anyio.sleep(_SETTLE_STEP_S)
                await self._publisher.publish(self._aid)
                self.auto_published += 1
                logger.info("auto_publish.published aid=%s", self._aid.short())
            except A2ALError as exc:
                logger.info("auto_publish.not_yet aid=%s reason=%s", self._aid.short(), exc)
            finally:
                self._first_in_flight = False
            return True
        dirty, self._dirty = self._dirty, False
        if dirty and self._publisher.published():
            self.republished += 1
            try:
                await self._publisher.republish_endpoints()
            except A2ALError as exc:  # closing (NodeClosed), or no DHT at all
                logger.info("auto_publish.republish_failed reason=%s", exc)
        return True
