"""The DHT core's counters, as :meth:`DhtCore.statistics <a2al_mcp.dht.core.DhtCore.statistics>`
returns them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .._dataclass import dataclass

if TYPE_CHECKING:
    from .responder import Responder
    from .store import StoreStats

__all__ = ["DhtStats", "collect_stats"]


@dataclass(frozen=True, slots=True)
class DhtStats:
    """Counters of the DHT core."""

    received: int
    sent: int
    requests_answered: int
    responses_matched: int
    dropped_decode: int
    dropped_verify: int
    dropped_oversize: int
    """Datagrams longer than any A2AL sender writes
    (:data:`~a2al_mcp.dht.core.MAX_RECEIVE`), dropped undecoded."""
    dropped_unsolicited: int
    """Responses nobody asked for (NAT_PROBE_REQ/ECHO go to the node as events)."""
    dropped_rate_limited: int
    """STOREs dropped unanswered by a rate limit (per address plus per prefix)."""
    rpc_timeouts: int
    peers: int
    stored_records: int
    stored_keys: int
    rate_limited_ip: int = 0
    """STOREs dropped by the per-address rate limit (``limits.dht_stores_per_ip_s``)."""
    rate_limited_prefix: int = 0
    """STOREs dropped by the per-/24 (IPv4) or per-/64 (IPv6) rate limit."""
    stored_bytes: int = 0
    """Encoded bytes of the records in the store."""
    stored_vouched: int = 0
    """Records in the store that are ours or from peers that answered us."""
    store_evicted: int = 0
    """Records dropped to make room for higher-ranked ones."""
    store_refused_keys: int = 0
    """Puts refused (STORE_RESP reason 1): the distinct-key cap (``limits.dht_keys``)."""
    store_refused_records: int = 0
    """Puts refused (reason 1): the total-record cap (``limits.dht_records``)."""
    store_refused_bytes: int = 0
    """Puts refused (reason 1): the total-bytes cap (``limits.dht_bytes``)."""
    store_refused_per_key: int = 0
    """Puts refused (reason 1): the key's cap (``limits.dht_records_per_key``, category caps)."""
    store_rejected_invalid: int = 0
    """Puts refused (reason 2): invalid, expired, future-dated or unauthorised records."""
    cancelled_ops: int = 0
    """Operations stopped by :meth:`DhtCore.cancel` before they finished."""


def collect_stats(c: Mapping[str, int], r: Responder, store: StoreStats, peers: int) -> DhtStats:
    """The core's counters ``c``, its responder's and its store's, as one snapshot."""
    return DhtStats(
        received=c["received"], sent=c["sent"], requests_answered=c["answered"],
        responses_matched=c["matched"], dropped_decode=c["decode"],
        dropped_verify=c["verify"] + r.invalid, dropped_oversize=c["oversize"],
        dropped_unsolicited=c["unsolicited"] + r.unsolicited,
        dropped_rate_limited=r.rate_limited_ip + r.rate_limited_prefix,
        rpc_timeouts=c["timeouts"], peers=peers,
        stored_records=store.records, stored_keys=store.keys,
        rate_limited_ip=r.rate_limited_ip, rate_limited_prefix=r.rate_limited_prefix,
        stored_bytes=store.bytes, stored_vouched=store.vouched, store_evicted=store.evicted,
        store_refused_keys=store.refused_keys, store_refused_records=store.refused_records,
        store_refused_bytes=store.refused_bytes, store_refused_per_key=store.refused_per_key,
        store_rejected_invalid=store.rejected_invalid, cancelled_ops=c["cancelled"],
    )  # fmt: skip
