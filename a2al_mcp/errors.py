"""The one exception hierarchy of a2al-mcp.

Every public raise is an :class:`A2ALError`. Each class carries a stable ``code``
that never changes once released; the MCP layer reports failures as
``"CODE: message"`` and the CLI maps codes to exit statuses::

    A2ALError                      A2AL_ERROR   base
    ├── ConfigError                CONFIG       invalid or missing configuration
    ├── UsageError                 USAGE        caller misuse / wrong state
    │   ├── UnknownTool            UNKNOWN_TOOL   no tool of that name
    │   └── BadArguments           BAD_ARGUMENTS  a tool's arguments do not validate
    │       └── BadAid             BAD_AID        an argument is not an AID
    ├── DecodeError                DECODE       malformed wire data
    ├── VerificationError          VERIFY       bad signature, delegation, AID pin, stale record
    │   └── ExtraMissing           EXTRA_MISSING  an optional dependency is needed
    ├── NotFound                   NOT_FOUND    no record for AID/topic/mail
    ├── NetworkError               NETWORK
    │   ├── RequestTimeout         TIMEOUT      (also a builtin TimeoutError)
    │   ├── Unreachable            UNREACHABLE  no usable endpoint
    │   ├── HandshakeFailed        HANDSHAKE    TLS/ALPN/stream-0 failure
    │   ├── ConnectionClosed       CLOSED       carries error_code, reason
    │   └── AccessDenied           ACCESS_DENIED  the peer refused us; carries reason
    ├── LimitExceeded              LIMIT        payload over a cap, rate limit, queue full
    ├── NodeClosed                 NODE_CLOSED  API used after close / node crashed
    ├── AgentCallError             AGENT_ERROR  an A2A agent answered with an error
    └── InternalError              INTERNAL     a bug: an unexpected exception (its cause)

Every tool failure (:class:`~a2al_mcp.ToolFailure`) has the code of one of these classes.

Context is carried as attributes, never only in the text: every error has ``aid`` (the agent
concerned), ``operation`` (what was being done), ``path`` (the file concerned) and ``hint``
(what the caller can do about it), each ``None`` (or empty) when it does not apply;
``message`` is the text without the hint. Subclasses add what is theirs (the remote
``error_code`` of :class:`ConnectionClosed`, the ``rpc_code`` and ``http_status`` of
:class:`AgentCallError`). The error that led to one is its ``__cause__``; match on the
class, ``code`` or attributes, never on ``str(exc)``.

Remote garbage never raises out of a protocol core: codecs raise only
:class:`DecodeError` (or :class:`VerificationError` from explicit verify calls)
and the cores drop and count. Bad argument *types* stay ``TypeError``.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "A2ALError",
    "AccessDenied",
    "AgentCallError",
    "BadAid",
    "BadArguments",
    "ConfigError",
    "ConnectionClosed",
    "DecodeError",
    "ExtraMissing",
    "HandshakeFailed",
    "InternalError",
    "LimitExceeded",
    "NetworkError",
    "NodeClosed",
    "NotFound",
    "RequestTimeout",
    "UnknownTool",
    "Unreachable",
    "UsageError",
    "VerificationError",
]


class A2ALError(Exception):
    """Base class of every error this package raises on purpose. ``str(exc)`` is
    ``message``, then ``"; "`` and ``hint`` when there is one."""

    code: ClassVar[str] = "A2AL_ERROR"

    def __init__(
        self,
        message: str = "",
        *,
        aid: object = None,
        operation: str | None = None,
        path: str | None = None,
        hint: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.aid = aid
        """The agent (an :class:`~a2al_mcp.Aid`) the failure concerns, if one does."""
        self.operation = operation
        self.path = path
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__() or self.__class__.__name__
        return f"{text}; {self.hint}" if self.hint else text


class ConfigError(A2ALError):
    """Invalid or missing configuration."""

    code: ClassVar[str] = "CONFIG"


class UsageError(A2ALError):
    """The caller used the API wrongly (wrong state, impossible combination)."""

    code: ClassVar[str] = "USAGE"


class UnknownTool(UsageError):
    """There is no tool of that name in the catalogue."""

    code: ClassVar[str] = "UNKNOWN_TOOL"


class BadArguments(UsageError):
    """A tool's arguments do not validate (a field missing, of the wrong type or range)."""

    code: ClassVar[str] = "BAD_ARGUMENTS"


class BadAid(BadArguments):
    """An argument that should be an AID is not one (its ``__cause__`` says why)."""

    code: ClassVar[str] = "BAD_AID"


class DecodeError(A2ALError):
    """Malformed wire data: bytes that do not parse as the expected structure."""

    code: ClassVar[str] = "DECODE"


class VerificationError(A2ALError):
    """A signature, delegation proof, AID pin or freshness rule failed."""

    code: ClassVar[str] = "VERIFY"


class ExtraMissing(VerificationError):
    """Verifying this needs an optional dependency that is not installed."""

    code: ClassVar[str] = "EXTRA_MISSING"


class NotFound(A2ALError):
    """No record exists for the requested AID, topic or message."""

    code: ClassVar[str] = "NOT_FOUND"


class NetworkError(A2ALError):
    """A network operation failed."""

    code: ClassVar[str] = "NETWORK"


class RequestTimeout(NetworkError, TimeoutError):
    """A network operation did not finish in time."""

    code: ClassVar[str] = "TIMEOUT"


class Unreachable(NetworkError):
    """No usable endpoint answered."""

    code: ClassVar[str] = "UNREACHABLE"


class HandshakeFailed(NetworkError):
    """The TLS, ALPN or stream-0 handshake failed."""

    code: ClassVar[str] = "HANDSHAKE"


class ConnectionClosed(NetworkError):
    """The connection was closed (by us, the peer, or an error)."""

    code: ClassVar[str] = "CLOSED"

    def __init__(
        self,
        reason: str = "",
        *,
        error_code: int = 0,
        aid: object = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(reason or "connection closed", aid=aid, operation=operation)
        self.error_code = error_code
        """The QUIC application error code (or stream reset code) that closed it."""
        self.reason = reason


class AccessDenied(NetworkError):
    """The peer refused us (its access list, a token, or no service for us). ``reason`` is
    what the peer said, if it said anything."""

    code: ClassVar[str] = "ACCESS_DENIED"

    def __init__(
        self,
        message: str = "",
        *,
        reason: str = "",
        aid: object = None,
        operation: str | None = None,
        hint: str = "",
    ) -> None:
        super().__init__(message, aid=aid, operation=operation, hint=hint)
        self.reason = reason


class LimitExceeded(A2ALError):
    """A payload exceeds its cap, a rate limit hit, or a queue is full."""

    code: ClassVar[str] = "LIMIT"


class NodeClosed(A2ALError):
    """The node is closed (or crashed; see ``__cause__``)."""

    code: ClassVar[str] = "NODE_CLOSED"


class AgentCallError(A2ALError):
    """An A2A agent answered, but not with a result: a JSON-RPC error, an HTTP error status,
    or something that is not A2A. ``rpc_code`` is the JSON-RPC error code when there is one,
    ``http_status`` the HTTP status of the answer."""

    code: ClassVar[str] = "AGENT_ERROR"

    def __init__(
        self,
        message: str,
        rpc_code: int | None = None,
        *,
        http_status: int | None = None,
        aid: object = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message, aid=aid, operation=operation)
        self.rpc_code = rpc_code
        self.http_status = http_status


class InternalError(A2ALError):
    """A bug: something failed that should not have. The unexpected exception is its
    ``__cause__`` (and the log has its traceback)."""

    code: ClassVar[str] = "INTERNAL"
