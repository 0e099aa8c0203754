"""a2al-mcp: a pure-Python node of the A2AL agent network, with an MCP server on top.

This facade is the public API: the node, its value objects and errors, and the tool catalogue.
It stays light: the identities and records (which load cryptography and cbor2), the node and
the tool catalogue (anyio, aioquic, pydantic) are imported on first use, and the MCP server
never, so ``import a2al_mcp`` loads only the configuration, the errors, the clock and the
randomness protocols (what the stdio proxy needs).
"""

import typing as _typing

from ._clock import Clock, SystemClock
from ._random import Rng, SeededRng, SystemRng
from ._version import __version__
from .config import (
    DhtConfig,
    HubConfig,
    LimitsConfig,
    MailboxConfig,
    NatConfig,
    NodeConfig,
    QuicConfig,
    load_config,
)
from .errors import (
    A2ALError,
    AccessDenied,
    AgentCallError,
    BadAid,
    BadArguments,
    ConfigError,
    ConnectionClosed,
    DecodeError,
    ExtraMissing,
    HandshakeFailed,
    InternalError,
    LimitExceeded,
    NetworkError,
    NodeClosed,
    NotFound,
    RequestTimeout,
    UnknownTool,
    Unreachable,
    UsageError,
    VerificationError,
)

if _typing.TYPE_CHECKING:  # imported on first use: see __getattr__
    from .agentcall import AgentReply
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
    from .remote_mcp.stream_transport import A2AL_CODE, StreamTransport
    from .toolspec import TOOLS, ToolFailure, ToolSpec, call_tool

__all__ = [  # noqa: RUF022 (plain sorted order, checked by a test)
    "A2ALError",
    "A2AL_CODE",
    "AccessDenied",
    "AgentCallError",
    "AgentProfilePayload",
    "AgentReply",
    "Aid",
    "BadAid",
    "BadArguments",
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
    "HubConfig",
    "Identity",
    "InternalError",
    "LimitExceeded",
    "LimitsConfig",
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
    "StreamTransport",
    "SystemClock",
    "SystemRng",
    "TOOLS",
    "ToolFailure",
    "ToolSpec",
    "TopicPayload",
    "UnknownTool",
    "Unreachable",
    "UsageError",
    "VerificationError",
    "VerifyKey",
    "__version__",
    "call_tool",
    "load_config",
    "topic_key",
]

_LAZY = {
    "Aid": "identity",
    "DelegatedIdentity": "identity",
    "DelegationProof": "identity",
    "Identity": "identity",
    "NodeId": "identity",
    "SigningKey": "identity",
    "VerifyKey": "identity",
    "AgentProfilePayload": "protocol.payloads",
    "EndpointPayload": "protocol.payloads",
    "MailboxPayload": "protocol.payloads",
    "TopicPayload": "protocol.payloads",
    "topic_key": "protocol.payloads",
    "RecType": "protocol.records",
    "SignedRecord": "protocol.records",
    "Node": "node",
    "NodeStatus": "node",
    "ResolvedEndpoint": "node",
    "ServiceEntry": "node",
    "AgentReply": "agentcall",
    "TOOLS": "toolspec",
    "ToolFailure": "toolspec",
    "ToolSpec": "toolspec",
    "call_tool": "toolspec",
    "A2AL_CODE": "remote_mcp.stream_transport",
    "StreamTransport": "remote_mcp.stream_transport",
}


def __getattr__(name: str) -> object:
    """Identities, records, the node and the tool catalogue, imported on first use (PEP 562),
    so that ``import a2al_mcp`` (and the stdio proxy, which imports the CLI) loads neither
    cryptography nor cbor2, the networking stack or pydantic."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
