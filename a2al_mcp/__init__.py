"""a2al-mcp: a pure-Python node of the A2AL agent network, with an MCP server on top.

This facade is the public API. It does not import the MCP server, so ``import a2al_mcp``
never loads the MCP SDK.
"""

from ._clock import Clock, SystemClock
from ._random import Rng, SeededRng, SystemRng
from ._version import __version__
from .config import (
    DhtConfig,
    MailboxConfig,
    NatConfig,
    NodeConfig,
    QuicConfig,
    load_config,
)
from .errors import (
    A2ALError,
    ConfigError,
    ConnectionClosed,
    DecodeError,
    ExtraMissing,
    HandshakeFailed,
    LimitExceeded,
    NetworkError,
    NodeClosed,
    NotFound,
    RequestTimeout,
    Unreachable,
    UsageError,
    VerificationError,
)
from .identity import (
    Aid,
    DelegatedIdentity,
    DelegationProof,
    Identity,
    NodeId,
    SigningKey,
    VerifyKey,
)
from .protocol.payloads import (
    AgentProfilePayload,
    EndpointPayload,
    MailboxPayload,
    TopicPayload,
    topic_key,
)
from .protocol.records import RecType, SignedRecord

__all__ = [
    "A2ALError",
    "AgentProfilePayload",
    "Aid",
    "Clock",
    "ConfigError",
    "ConnectionClosed",
    "DecodeError",
    "DelegatedIdentity",
    "DelegationProof",
    "DhtConfig",
    "EndpointPayload",
    "ExtraMissing",
    "HandshakeFailed",
    "Identity",
    "LimitExceeded",
    "MailboxConfig",
    "MailboxPayload",
    "NatConfig",
    "NetworkError",
    "NodeClosed",
    "NodeConfig",
    "NodeId",
    "NotFound",
    "QuicConfig",
    "RecType",
    "RequestTimeout",
    "Rng",
    "SeededRng",
    "SignedRecord",
    "SigningKey",
    "SystemClock",
    "SystemRng",
    "TopicPayload",
    "Unreachable",
    "UsageError",
    "VerificationError",
    "VerifyKey",
    "__version__",
    "load_config",
    "topic_key",
]
