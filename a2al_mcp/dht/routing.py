"""The Kademlia routing table (a2al-wire §4.7). Sans-I/O: every method takes ``now``.

256 buckets indexed by the common-prefix length with our NodeID, K = 16 entries each in LRU
order. *Direct* contact (a request from the peer, or an answer to ours) makes an entry
verified; *hearsay* (a NodeInfo in someone's FIND_* answer) never evicts anyone: it waits in
a per-bucket pending list. Peers that fail twice in a row are *bad* and back off
exponentially. Loopback and link-local addresses are taken only from direct contact,
unless our own node lives on loopback (a test network), as a2ald 0.3.5 does.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import ipaddress
from collections import OrderedDict, deque
from collections.abc import Iterable
from enum import IntEnum
from typing import Final

from .._dataclass import dataclass
from .._types import Addr
from ..errors import DecodeError
from ..identity.aid import Aid, NodeId
from ..protocol.dht_messages import NodeInfo
from ..protocol.timers import LIVE_FRESH_S, PENDING_TTL_S
from ..protocol.timers import PEER_BACKOFF_BASE_S as BACKOFF_BASE_S

__all__ = ["HEARSAY_PROBE_MIN_BUCKET", "Health", "Peer", "RoutingStats", "RoutingTable"]

HEARSAY_PROBE_MIN_BUCKET: Final = 3
"""A new peer heard of second-hand this near (bucket index) or nearer gets one PING."""

K: Final = 16
PENDING_MAX: Final = 5
BAD_AFTER_FAILURES: Final = 2
QUESTIONABLE_AFTER_S: Final = 900.0
"""A full bucket's least-recently-seen entry is pinged only when silent this long."""


class Health(IntEnum):
    """Ordering used everywhere: good before unknown before bad."""

    GOOD = 0
    UNKNOWN = 1
    BAD = 2


def _family(addr: Addr) -> int:
    return 6 if ":" in addr[0] else 4


@dataclass(slots=True)
class Peer:
    """What the table knows of one peer.

    Dial addresses are kept per IP family in slots (a2al-wire §4.7): *live* (the last address
    heard, directly or as hearsay; hearsay never replaces a verified one) and *anchor* (an
    address we were given for this peer: a bootstrap seed, an advertised endpoint). There is
    no *ephemeral* (ICE) slot: this node does no hole punching. :meth:`dial` picks one.
    """

    aid: Aid
    node_id: NodeId
    addr: Addr
    """The most recent live address (any family)."""
    verified: bool
    """Heard from directly (its address is proven)."""
    last_seen: float
    failures: int = 0
    retry_at: float = 0.0
    live: dict[int, tuple[Addr, bool, float]] = dataclasses.field(default_factory=dict)
    """Family (4 or 6) → (address, verified, when)."""
    anchors: dict[int, Addr] = dataclasses.field(default_factory=dict)
    """Family → an address we were given for this peer."""

    def __post_init__(self) -> None:
        if not self.live:
            self.live[_family(self.addr)] = (self.addr, self.verified, self.last_seen)

    @property
    def health(self) -> Health:
        if self.failures >= BAD_AFTER_FAILURES:
            return Health.BAD
        return Health.GOOD if self.verified else Health.UNKNOWN

    def set_live(self, addr: Addr, verified: bool, now: float) -> None:
        """Record a live address; hearsay does not replace a verified one of its family."""
        fam = _family(addr)
        old = self.live.get(fam)
        if verified or old is None or not old[1]:
            self.live[fam] = (addr, verified, now)
            self.addr = addr

    def dial(self, now: float) -> Addr:
        """Where to send: a verified live address younger than 5 minutes, else an anchor,
        else any live address; IPv4 before IPv6 at each step."""
        for fam in (4, 6):
            entry = self.live.get(fam)
            if entry is not None and entry[1] and now - entry[2] < LIVE_FRESH_S:
                return entry[0]
        for fam in (4, 6):
            if fam in self.anchors:
                return self.anchors[fam]
        for fam in (4, 6):
            entry = self.live.get(fam)
            if entry is not None:
                return entry[0]
        return self.addr


@dataclass(frozen=True, slots=True)
class RoutingStats:
    """Counts for status and simulations."""

    peers: int
    good: int
    unknown: int
    bad: int
    pending: int
    buckets_used: int


@functools.lru_cache(maxsize=4096)
def _host_class(host: str) -> tuple[bool, bool]:
    """``(dialable, local)`` of an IP literal (memoised: every hearsay NodeInfo asks)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False, False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback however it is written
    return not (ip.is_unspecified or ip.is_multicast), ip.is_loopback or ip.is_link_local


def _is_local(host: str) -> bool:
    return _host_class(host)[1]


def _is_dialable(addr: Addr) -> bool:
    host, port = addr
    return port != 0 and _host_class(host)[0]


def _first(pair: tuple[int, Peer]) -> int:
    return pair[0]


class RoutingTable:
    """Buckets of peers keyed by the common-prefix length with ``self_id``."""

    def __init__(self, self_id: NodeId, *, allow_local_hearsay: bool = False) -> None:
        self.self_id = self_id
        self._self_int = int(self_id)
        self.allow_local_hearsay = allow_local_hearsay
        """Accept loopback/link-local addresses from hearsay (test networks on loopback)."""
        self._buckets: list[OrderedDict[NodeId, Peer]] = [OrderedDict() for _ in range(257)]
        # Replacement queues of the buckets that have had a candidate (257 empty deques
        # up front were ~190 KiB of a fresh node's heap: most buckets never get one).
        self._pending: dict[int, deque[tuple[float, Peer]]] = {}
        self._all: dict[NodeId, Peer] = {}
        """Every entry of every bucket, for scans that do not care about buckets."""

    # -- queries ----------------------------------------------------------------------

    def bucket_index(self, node_id: NodeId) -> int:
        """CPL of ``node_id`` with ours (256 only for ourselves)."""
        return 256 - (self._self_int ^ int(node_id)).bit_length()

    def bucket_size(self, index: int) -> int:
        """Entries in bucket ``index``."""
        return len(self._buckets[index])

    def verified_in_bucket(self, index: int) -> int:
        """Verified entries in bucket ``index``."""
        return sum(1 for p in self._buckets[index].values() if p.verified and not p.failures)

    def get(self, node_id: NodeId) -> Peer | None:
        """The entry for ``node_id``, if any."""
        return self._all.get(node_id)

    def __len__(self) -> int:
        return len(self._all)

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, NodeId) and self.get(node_id) is not None

    def peers(self) -> list[Peer]:
        """Every entry."""
        return list(self._all.values())

    def closest(
        self, target: NodeId, n: int = K, *, now: float | None = None, scan: int = 64
    ) -> list[Peer]:
        """Up to ``n`` peers near ``target``, by XOR distance, bad peers last; peers backing
        off (``now`` given) are left out.

        a2ald puts verified peers before unverified ones too; in a young network that hands
        out verified but distant peers and lookups converge on the wrong region, so only
        *bad* peers are demoted here.
        """
        t = int(target)
        scored = [
            (int(p.node_id) ^ t, p)
            for p in self._all.values()
            if now is None or p.failures == 0 or p.retry_at <= now
        ]
        nearest = heapq.nsmallest(scan, scored, key=_first)
        nearest.sort(key=lambda dp: (dp[1].failures >= BAD_AFTER_FAILURES, dp[0]))
        return [p for _, p in nearest[:n]]

    def statistics(self) -> RoutingStats:
        peers = self.peers()
        by = [p.health for p in peers]
        return RoutingStats(
            peers=len(peers),
            good=by.count(Health.GOOD),
            unknown=by.count(Health.UNKNOWN),
            bad=by.count(Health.BAD),
            pending=sum(len(q) for q in self._pending.values()),
            buckets_used=sum(1 for b in self._buckets if b),
        )

    # -- updates ----------------------------------------------------------------------

    def observe_direct(self, aid: Aid, addr: Addr, now: float) -> Peer | None:
        """A peer spoke to us (or answered us) from ``addr``.

        Returns:
            The least-recently-seen peer of a full bucket, which the caller should PING and
            :meth:`record_failure` if it does not answer; None otherwise.
        """
        node_id = aid.node_id
        if node_id == self.self_id or not _is_dialable(addr):
            return None
        idx = self.bucket_index(node_id)
        bucket = self._buckets[idx]
        peer = bucket.get(node_id)
        if peer is not None:
            peer.set_live(addr, True, now)
            peer.verified, peer.last_seen = True, now
            peer.failures, peer.retry_at = 0, 0.0
            bucket.move_to_end(node_id)
            return None
        new = Peer(aid, node_id, addr, verified=True, last_seen=now)
        if len(bucket) < K:
            bucket[node_id] = self._all[node_id] = new
            return None
        bad = next((p for p in bucket.values() if p.health is Health.BAD), None)
        if bad is not None:
            del bucket[bad.node_id], self._all[bad.node_id]
            bucket[node_id] = self._all[node_id] = new
            return None
        self._add_pending(idx, new, now)
        lru = next(iter(bucket.values()))
        # Only a questionable LRU entry is worth a PING (BEP 5): one heard from recently is
        # kept, and the newcomer waits in the pending list.
        return lru if now - lru.last_seen > QUESTIONABLE_AFTER_S else None

    def hearsay_usable(self, addr: Addr) -> bool:
        """May an address heard second-hand be dialled? (Not loopback/link-local, unless we
        are on loopback ourselves; never port 0, unspecified or multicast.)"""
        return _is_dialable(addr) and (self.allow_local_hearsay or not _is_local(addr[0]))

    def observe_hearsay(self, aid: Aid, addr: Addr, now: float) -> bool:
        """A peer named in someone's answer. Returns True if it was added to the table."""
        node_id = aid.node_id
        if node_id == self.self_id or not self.hearsay_usable(addr):
            return False
        idx = self.bucket_index(node_id)
        bucket = self._buckets[idx]
        peer = bucket.get(node_id)
        if peer is not None:
            peer.set_live(addr, False, now)  # never over a verified address of its family
            return False
        if len(bucket) < K:
            new = Peer(aid, node_id, addr, verified=False, last_seen=now)
            bucket[node_id] = self._all[node_id] = new
            return True
        self._add_pending(idx, Peer(aid, node_id, addr, verified=False, last_seen=now), now)
        return False

    def observe_answer(
        self, nodes: Iterable[NodeInfo], now: float
    ) -> tuple[list[tuple[Aid, Addr]], list[tuple[Addr, NodeId]]]:
        """The peers a FIND_NODE/FIND_VALUE answer names, each observed as hearsay.

        Returns the ones usable as lookup candidates and, in order, the new ones near enough
        (``HEARSAY_PROBE_MIN_BUCKET``) for a2ald's one opportunistic PING that verifies
        them. An undecodable address, or a NodeID that does not match its AID (a lie), is
        skipped."""
        usable: list[tuple[Aid, Addr]] = []
        probe: list[tuple[Addr, NodeId]] = []
        for n in nodes:
            try:
                addr = n.addr
            except DecodeError:
                continue
            if n.node_id != n.address.node_id:
                continue
            if (
                self.observe_hearsay(n.address, addr, now)
                and self.bucket_index(n.node_id) >= HEARSAY_PROBE_MIN_BUCKET
            ):
                probe.append((addr, n.node_id))
            if self.hearsay_usable(addr):
                usable.append((n.address, addr))
        return usable, probe

    def set_anchor(self, node_id: NodeId, addr: Addr) -> bool:
        """Remember an address we were given for a peer in the table (never loopback or
        link-local, as a2ald 0.3.5). Returns True if it was taken."""
        peer = self._all.get(node_id)
        if peer is None or not _is_dialable(addr) or _is_local(addr[0]):
            return False
        peer.anchors[_family(addr)] = addr
        return True

    def record_success(self, node_id: NodeId, now: float) -> None:
        """An RPC to the peer succeeded."""
        peer = self.get(node_id)
        if peer is not None:
            peer.failures, peer.retry_at, peer.verified, peer.last_seen = 0, 0.0, True, now
            self._buckets[self.bucket_index(node_id)].move_to_end(node_id)

    def record_failure(self, node_id: NodeId, now: float) -> None:
        """An RPC to the peer timed out. Bad peers back off and are replaced from pending."""
        idx = self.bucket_index(node_id)
        peer = self._buckets[idx].get(node_id)
        if peer is None:
            return
        peer.failures += 1
        shift = min(peer.failures - 1, 10)
        peer.retry_at = now + BACKOFF_BASE_S * (1 << shift)
        if peer.health is Health.BAD:
            self._promote_pending(idx, now, replacing=peer)

    def remove(self, node_id: NodeId) -> None:
        """Forget a peer."""
        self._buckets[self.bucket_index(node_id)].pop(node_id, None)
        self._all.pop(node_id, None)

    def _add_pending(self, idx: int, peer: Peer, now: float) -> None:
        queue = self._pending.get(idx)
        if queue is None:
            queue = self._pending[idx] = deque()
        for n, (_, p) in enumerate(queue):
            if p.node_id == peer.node_id:
                if peer.verified or not p.verified:  # direct news replaces hearsay
                    del queue[n]
                    break
                return
        queue.append((now, peer))
        while len(queue) > PENDING_MAX:
            queue.popleft()

    def _promote_pending(self, idx: int, now: float, *, replacing: Peer) -> None:
        queue = self._pending.get(idx)
        while queue:
            seen, candidate = queue.pop()  # newest first
            if now - seen > PENDING_TTL_S or candidate.node_id in self._all:
                continue
            bucket = self._buckets[idx]
            bucket.pop(replacing.node_id, None)
            self._all.pop(replacing.node_id, None)
            bucket[candidate.node_id] = self._all[candidate.node_id] = candidate
            return
