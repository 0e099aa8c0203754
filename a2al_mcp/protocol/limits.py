"""Interop constants of the A2AL wire protocol (a2ald 0.3.5). Not configuration."""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = 1
"""DHT header version (never checked on receive)."""
MAX_DATAGRAM: Final = 1200
"""Senders refuse to send DHT datagrams larger than this."""
MAX_BODY: Final = 1050
"""Responders trim responses so the canonical body stays within this."""
K: Final = 16
"""Bucket size and FIND_NODE answer size."""
TX_ID_LEN: Final = 20
"""Every DHT transaction ID is exactly this long."""
NAT_TOKEN_LEN: Final = 8

CLOCK_SKEW_S: Final = 60
"""Future-timestamp tolerance for records; grace after a delegation's expiry."""
DEFAULT_RECORD_TTL_S: Final = 3600
TOPIC_TTL_MAX_S: Final = 7200

TOPIC_PAYLOAD_MAX: Final = 512
MAILBOX_PAYLOAD_MAX: Final = 512
PROFILE_PAYLOAD_MAX: Final = 700
PROFILE_PAYLOAD_ADVISORY: Final = 350
BRIEF_MAX_CHARS: Final = 140
MAILBOX_BODY_MAX: Final = 389
"""Largest plaintext body whose sealed MailboxPayload still fits in 512 bytes."""

ENDPOINT_NAT_TYPE_MAX: Final = 4
ENDPOINT_SIGNAL_URL_MAX: Final = 2048
ENDPOINT_SIGNALS_MAX: Final = 8
ENDPOINT_TURNS_MAX: Final = 16
ENDPOINT_TURN_URL_MAX: Final = 512

MAILBOX_FRAME_RECORD_MAX: Final = 65536
"""Largest SignedRecord carried in an ``a2mb`` stream frame."""
CONTROL_PAYLOAD_MAX: Final = 4096
"""Largest stream-0 / admission control message payload."""
ACCESS_TOKEN_MAX: Final = 256

STORE_KEYS_MAX: Final = 100_000
SOVEREIGN_PER_KEY: Final = 8
TOPIC_PER_KEY: Final = 100
MAILBOX_PER_KEY: Final = 50
MAILBOX_PER_PUBKEY: Final = 4
