"""Where a node finds its first peers: configured seeds, the peer cache, the public seeds.

The peer cache is a2ald's format (``peers.cache``: JSON ``{"peers": ["host:port", …]}``),
written atomically (``state.write_atomic``) at close from the healthiest routing peers. The
public seed list is the DNS TXT record ``_a2al-bootstrap.a2al.org``; it is looked up only
when the configuration says ``network = "public"``: joining the public network is an
explicit opt-in.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from ..config import PUBLIC_BOOTSTRAP_DNS, parse_host_port
from ..errors import ConfigError
from .state import ensure_dir, read_text, write_atomic

__all__ = ["load_peer_cache", "lookup_public_seeds", "parse_txt_seeds", "save_peer_cache"]

logger = logging.getLogger(__name__)

PEER_CACHE: Final = "peers.cache"
PEER_CACHE_MAX: Final = 64
PEER_CACHE_MAX_BYTES: Final = 64 * 1024
"""Largest peer cache read (64 entries of ``[v6]:port`` are ~4 KB); a longer one is ignored."""


def parse_txt_seeds(strings: Iterable[str]) -> list[str]:
    """Split TXT strings on ``,`` ``;`` or whitespace into valid ``host:port`` items."""
    out: list[str] = []
    for s in strings:
        for item in re.split(r"[,;\s]+", s.strip()):
            if not item:
                continue
            try:
                parse_host_port(item, what="seed")
            except ConfigError:
                logger.debug("seeds.skip item=%r", item)
                continue
            if item not in out:
                out.append(item)
    return out


async def lookup_public_seeds(name: str = PUBLIC_BOOTSTRAP_DNS) -> list[str]:
    """The public seeds from DNS (empty on any failure). Called only for the public opt-in."""
    import dns.asyncresolver  # dnspython, installed with aioice
    import dns.exception

    try:
        answer = await dns.asyncresolver.resolve(name, "TXT", lifetime=5.0)
    except dns.exception.DNSException as exc:
        logger.warning("seeds.public_lookup_failed name=%s reason=%s", name, exc)
        return []
    strings = [b"".join(r.strings).decode("ascii", "replace") for r in answer]
    return parse_txt_seeds(strings)


def load_peer_cache(data_dir: Path) -> list[str]:
    """Seeds remembered from the last run (empty if none). An unreadable or malformed cache
    is only a cache: it is logged with its path and ignored, and the next close rewrites it."""
    path = data_dir / PEER_CACHE
    try:
        data = json.loads(read_text(path, PEER_CACHE_MAX_BYTES))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        logger.warning("seeds.cache_unreadable path=%s reason=%s", path, exc)
        return []
    peers = data.get("peers") if isinstance(data, dict) else None
    if not isinstance(peers, list):
        logger.warning('seeds.cache_unreadable path=%s reason=no "peers" list', path)
        return []
    return parse_txt_seeds(p for p in peers if isinstance(p, str))[:PEER_CACHE_MAX]


def save_peer_cache(data_dir: Path, peers: Iterable[str]) -> None:
    """Write the cache atomically (:func:`~a2al_mcp.node.state.write_atomic`, mode 0600).

    Raises:
        ConfigError: the file could not be written (names the path).
    """
    ensure_dir(data_dir)
    payload = json.dumps({"peers": list(peers)[:PEER_CACHE_MAX]}, indent=1)
    write_atomic(data_dir / PEER_CACHE, payload)
