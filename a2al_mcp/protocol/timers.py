"""Timers of the A2AL protocol as a2ald 0.3.5 runs them: one place, each with its source.

Every ``§`` names a section of the wire description (``a2al-wire.md``, the shared protocol
notes this package was built from). These are what peers expect of us or what we mirror from
a2ald so that a mixed network behaves like an a2ald one; they are not configuration. Where a
setting may be tuned locally, its :mod:`a2al_mcp.config` field defaults to the value here
(``tests/unit/test_config_fields_used.py`` checks that the two agree; ``config`` sits below
this layer and cannot import it). Local tuning that a2ald does not define (back-off of our
own mailbox polling, the node's HTTP timeouts, …) stays with the code it tunes.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DIAL_BACKOFF_MAX_S",
    "DIAL_BACKOFF_START_S",
    "DIAL_STAGGER_S",
    "LIVE_FRESH_S",
    "LOOKUP_RPC_TIMEOUT_S",
    "MAINTENANCE_S",
    "PEER_BACKOFF_BASE_S",
    "PENDING_TTL_S",
    "POOL_IDLE_EVICT_S",
    "QUIC_HANDSHAKE_TIMEOUT_S",
    "QUIC_IDLE_TIMEOUT_S",
    "QUIC_KEEPALIVE_S",
    "REFRESH_COOLDOWNS_S",
    "REFRESH_PER_ROUND",
    "REPUBLISH_INTERVAL_S",
    "RPC_ATTEMPTS",
    "RPC_ATTEMPT_TIMEOUT_S",
    "SOFT_EXPIRY_S",
    "SUBSCRIPTION_TTL_S",
]

# --- DHT RPCs (§4.5 Timing, retries)

RPC_ATTEMPT_TIMEOUT_S: Final = 5.0
"""§4.5: a2ald's timeout of one attempt of an RPC made outside a lookup."""
RPC_ATTEMPTS: Final = 3
"""§4.5: a2ald's attempts of an RPC made outside a lookup (so at most 15 s; bootstrap PINGs
share such a 15 s budget, §4.10)."""
LOOKUP_RPC_TIMEOUT_S: Final = 2.0
"""§4.5, §4.8: deadline of each RPC inside an iterative lookup, of a replication STORE and of
a DHT_PUSH (one attempt). Default of ``dht.lookup_rpc_timeout_s``."""
PEER_BACKOFF_BASE_S: Final = 30.0
"""§4.5: a failing peer is retried after ``30 s << (failures - 1)`` (shift capped at 10)."""

# --- responders (§4.6) and the record store (§3.5)

SUBSCRIPTION_TTL_S: Final = 60.0
"""§4.6: a one-shot FIND_VALUE subscription lasts this long."""
SOFT_EXPIRY_S: Final = 120.0
"""§3.5, §4.6: a sovereign record path-cached by a non-publisher into an empty slot stays
visible this long unconfirmed."""

# --- routing table maintenance (§4.7)

MAINTENANCE_S: Final = 15.0
"""§4.7: period of the routing table's maintenance round."""
REFRESH_PER_ROUND: Final = 2
"""§4.7: under-filled buckets refreshed per maintenance round, at most."""
REFRESH_COOLDOWNS_S: Final = (30.0, 120.0, 600.0, 900.0)
"""§4.7: wait before refreshing a bucket again after 0, 1, 2, ≥ 3 futile refreshes."""
PENDING_TTL_S: Final = 7200.0
"""§4.7: a hearsay peer waiting for room in a full bucket is forgotten after this long."""
LIVE_FRESH_S: Final = 300.0
"""§4.7: a verified live address this young is preferred to an anchor."""

# --- publishing (§4.9)

REPUBLISH_INTERVAL_S: Final = 1800.0
"""§4.9: own records are re-published this often (TTL 3600 / 2). Default of
``dht.republish_interval_s``."""

# --- QUIC data plane (§5.1) and connections to AIDs (§5.5)

QUIC_HANDSHAKE_TIMEOUT_S: Final = 10.0
"""§5.1: a2ald's QUIC handshake idle timeout. Default of ``quic.handshake_timeout_s``."""
QUIC_IDLE_TIMEOUT_S: Final = 90.0
"""§5.1: a2ald's QUIC max idle timeout (the ``max_idle_timeout`` transport parameter).
Default of ``quic.idle_timeout_s``."""
QUIC_KEEPALIVE_S: Final = 25.0
"""§5.1: a2ald's QUIC keep-alive period, well under the idle timeout. Default of
``quic.keepalive_s``."""
DIAL_STAGGER_S: Final = 0.25
"""§5.5: Happy Eyeballs starts one dial attempt per endpoint this far apart."""
POOL_IDLE_EVICT_S: Final = 300.0
"""§5.5: a pooled connection unused this long is closed."""
DIAL_BACKOFF_START_S: Final = 15.0
"""§5.5: after a failed dial, the next one waits this long, doubling per failure ..."""
DIAL_BACKOFF_MAX_S: Final = 300.0
"""§5.5: ... up to this."""
