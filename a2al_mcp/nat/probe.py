"""NAT_PROBE in both roles (a2al-wire §4.4, §6.1). Pure.

Requester: ask up to ``probe_peers`` peers with a public IPv4 to send a NAT_PROBE_ECHO to our
claimed external address, one random 8-byte token each, and wait ``probe_window_s``. An echo
only proves that peers *already in contact* reach us (the testbed's D5: the echo comes from the
peer's DHT socket, which our NAT has state for), so the result is reachability evidence, never
a proof of full cone.

Responder: a NAT_PROBE_REQ asks us to send a datagram to an address of the asker's choosing,
which makes it a reflection vector. We answer only when the claimed IP is the requester's own
source IP, at most ``echo_per_requester_s`` per requester IP and ``echo_global_per_s`` in all
(each a token bucket); every refusal is counted by reason.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from .._dataclass import dataclass
from .._types import Addr
from .addresses import is_plausible_wan, is_v4, normalise, parse_ip
from .config import NatSenseConfig

if TYPE_CHECKING:
    from .._random import Rng

__all__ = ["TOKEN_LEN", "ProbeRequester", "ProbeResponder", "ProbeStats"]

TOKEN_LEN: Final = 8


@dataclass(slots=True)
class ProbeStats:
    rounds: int = 0
    requests_sent: int = 0
    echoes: int = 0
    """Echoes that matched a token of the running round."""
    echoes_unmatched: int = 0
    echoes_sent: int = 0
    """NAT_PROBE_ECHOs we sent as responder."""
    refused_mismatch: int = 0
    """NAT_PROBE_REQs whose claimed IP is not the requester's source IP (or port 0)."""
    refused_requester_rate: int = 0
    refused_global_rate: int = 0


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens, self.updated = burst, now

    def take(self, now: float, rate: float, burst: float) -> bool:
        self.tokens = min(burst, self.tokens + max(0.0, now - self.updated) * rate)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class ProbeRequester:
    """One probe round at a time."""

    def __init__(self, rng: Rng, config: NatSenseConfig, stats: ProbeStats) -> None:
        self._rng = rng
        self._cfg = config
        self._stats = stats
        self._tokens: dict[bytes, Addr] = {}
        self._deadline: float | None = None
        self._echoed = False

    @property
    def running(self) -> bool:
        return self._deadline is not None

    def start(self, candidates: Iterable[Addr], claimed: Addr,
              now: float) -> list[tuple[Addr, bytes]]:  # fmt: skip
        """Begin a round: ``(peer, token)`` pairs to send a NAT_PROBE_REQ claiming
        ``claimed`` to; empty (and no round) when no candidate has a public IPv4."""
        pool = list(dict.fromkeys(normalise(a) for a in candidates
                                  if is_v4(a[0]) and is_plausible_wan(a[0])))  # fmt: skip
        chosen: list[Addr] = []
        while pool and len(chosen) < self._cfg.probe_peers:
            chosen.append(pool.pop(self._rng.randrange(len(pool))))
        if not chosen:
            return []
        self._tokens = {self._rng.bytes(TOKEN_LEN): peer for peer in chosen}
        self._deadline = now + self._cfg.probe_window_s
        self._echoed = False
        self._stats.rounds += 1
        self._stats.requests_sent += len(self._tokens)
        return [(peer, token) for token, peer in self._tokens.items()]

    def echo(self, token: bytes, now: float) -> bool:
        """An echo arrived; True if it is the first of the running round."""
        if self._deadline is None or token not in self._tokens:
            self._stats.echoes_unmatched += 1
            return False
        del self._tokens[token]
        self._stats.echoes += 1
        first = not self._echoed
        self._echoed = True
        return first

    def handle_timer(self, now: float) -> bool | None:
        """The round's result when its window ended now: True (an echo came) or False."""
        if self._deadline is None or now < self._deadline:
            return None
        self._deadline = None
        self._tokens = {}
        return self._echoed

    def get_timer(self) -> float | None:
        return self._deadline

    def stop(self) -> None:
        self._deadline = None
        self._tokens = {}


class ProbeResponder:
    """Decides whether a NAT_PROBE_REQ gets its echo."""

    def __init__(self, config: NatSenseConfig, stats: ProbeStats) -> None:
        self._cfg = config
        self._stats = stats
        self._per_ip: OrderedDict[str, _Bucket] = OrderedDict()
        self._global: _Bucket | None = None

    def allow(self, source: Addr, claimed: Addr, now: float) -> bool:
        """True if we should send the echo to ``claimed`` (counted); False is counted by reason."""
        src, dst = parse_ip(source[0]), parse_ip(claimed[0])
        if src is None or dst is None or src != dst or not 0 < claimed[1] < 65536:
            self._stats.refused_mismatch += 1
            return False
        cfg = self._cfg
        key = str(src)
        bucket = self._per_ip.get(key)
        if bucket is None:
            bucket = self._per_ip[key] = _Bucket(cfg.echo_requester_burst, now)
            while len(self._per_ip) > cfg.echo_requesters_max:
                self._per_ip.popitem(last=False)
        self._per_ip.move_to_end(key)
        if not bucket.take(now, cfg.echo_per_requester_s, cfg.echo_requester_burst):
            self._stats.refused_requester_rate += 1
            return False
        if self._global is None:
            self._global = _Bucket(cfg.echo_global_burst, now)
        if not self._global.take(now, cfg.echo_global_per_s, cfg.echo_global_burst):
            bucket.tokens += 1.0  # not this requester's fault
            self._stats.refused_global_rate += 1
            return False
        self._stats.echoes_sent += 1
        return True
