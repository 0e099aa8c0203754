"""a2al-mcp: a pure-Python node of the A2AL agent network, with an MCP server on top.

This facade is the public API: the node, its value objects and errors, and the tool catalogue.
It does not import the MCP server, so ``import a2al_mcp`` never loads the MCP SDK.
"""

from . import agentcall
from ._clock import Clock, SystemClock
from ._random import Rng, SeededRng, SystemRng
from ._version import __version__
from .agentcall import AgentReply
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
    AgentCallError,
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
from .node import Node, NodeStatus, ResolvedEndpoint, ServiceEntry
from .protocol.payloads import (
    AgentProfilePayload,
    EndpointPayload,
    MailboxPayload,
    TopicPayload,
    topic_key,
)
from .protocol.records import RecType, SignedRecord
from .toolspec import TOOLS, ToolFailure, ToolSpec, call_tool

__all__ = [
    "TOOLS",
    "A2ALError",
    "AgentCallError",
    "AgentProfilePayload",
    "AgentReply",
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
    "Node",
    "NodeClosed",
    "NodeConfig",
    "NodeId",
    "NodeStatus",
    "NotFound",
    "QuicConfig",
    "RecType",
    "RequestTimeout",
    "ResolvedEndpoint",
    "Rng",
    "SeededRng",
    "ServiceEntry",
    "SignedRecord",
    "SigningKey",
    "SystemClock",
    "SystemRng",
    "ToolFailure",
    "ToolSpec",
    "TopicPayload",
    "Unreachable",
    "UsageError",
    "VerificationError",
    "VerifyKey",
    "__version__",
    "agentcall",
    "call_tool",
    "load_config",
    "topic_key",
]
