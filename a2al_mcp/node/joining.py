"""Joiner: how the node joins the network and stays joined.

The seeds are ``config.bootstrap``, then the peers saved at the last close
(``data_dir/peers.cache``), then — only with ``network = "public"`` — the public seed list.
:meth:`Joiner.join` bootstraps from all of them at start-up (a node no seed answers still
starts), :meth:`Joiner.rejoin_loop` tries again every 30 s while the routing table is empty,
and :meth:`Joiner.save_peers` keeps the routing table's peers for the next start. The DHT
comes in as a callable that raises ``NodeClosed`` when the node is not open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Final

import anyio

from .._types import Addr
from ..config import NodeConfig, parse_host_port
from ..dht.service import DhtService
from ..errors import ConfigError, RequestTimeout
from .seeds import load_peer_cache, lookup_public_seeds, save_peer_cache

__all__ = ["REJOIN_S", "Joiner"]

logger = logging.getLogger(__name__)

REJOIN_S: Final = 30.0
"""How often the seeds are tried again while the routing table is empty."""


class Joiner:
    """Bootstrap, rejoin and the peer cache of one node."""

    def __init__(self, config: NodeConfig, *, dht: Callable[[], DhtService]) -> None:
        """``dht`` returns the node's DHT service, or raises ``NodeClosed``."""
        self._config = config
        self._dht = dht

    async def bootstrap(self, seeds: Sequence[str] | None = None) -> int:
        """Join through ``seeds`` (``host:port``; default: ``config.bootstrap``). Returns
        the peer count.

        Raises:
            ConfigError: a seed is not ``host:port``.
            RequestTimeout: no seed answered in time.
        """
        addrs: list[Addr] = []
        for seed in seeds or self._config.bootstrap:
            host, port = parse_host_port(seed, what="bootstrap entry")
            addrs.append((host, port))
        event = await self._dht().bootstrap(addrs)
        if not event.ok:
            raise RequestTimeout("no bootstrap peer answered")
        return event.peers

    async def seeds(self) -> list[str]:
        """Every seed to try, de-duplicated, in order (see the module docstring)."""
        seeds = list(self._config.bootstrap)
        if self._config.data_dir is not None:
            seeds += load_peer_cache(self._config.data_dir)
        if self._config.network == "public":
            seeds += await lookup_public_seeds()
        return list(dict.fromkeys(seeds))

    async def join(self) -> None:
        """Bootstrap from every known seed; a node with no reachable seed still starts."""
        seeds = await self.seeds()
        if not seeds:
            return
        try:
            peers = await self.bootstrap(seeds)
        except RequestTimeout:
            logger.warning("bootstrap.failed seeds=%d: starting alone, will retry", len(seeds))
        else:
            logger.info("bootstrap.done peers=%d", peers)

    async def rejoin_loop(self) -> None:
        """While the routing table is empty, try the seeds again (every 30 s)."""
        while True:
            await anyio.sleep(REJOIN_S)
            if not self._dht().ready:
                await self.join()

    def save_peers(self, peers: Sequence[Addr]) -> None:
        """Keep ``peers`` (healthiest first) in ``data_dir/peers.cache`` for the next start;
        a failed write is logged, not raised."""
        if self._config.data_dir is None:
            return
        addrs = [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in peers]
        try:
            save_peer_cache(self._config.data_dir, addrs)
        except ConfigError as exc:
            logger.warning("peers.cache_write_failed reason=%s", exc)
