"""Using another agent's MCP tools by AID: :class:`RemoteMcp`, one warm session of the
official ``mcp`` client (2.x, or 1.x: :mod:`.sdk_client`) per remote agent, over A2AL streams
(:mod:`.stream_transport`).

A session is opened on first use (the SDK's handshake, one round trip or two) by a task of
the node, and kept until the node closes or the session fails (the next use opens a new
one). The client offers the server nothing: no sampling, no elicitation, no roots, no
server-to-client stream, so the remote server cannot reach back into the caller's node.

Limits (``[limits]``): ``remote_mcp_response_max_bytes`` per answer,
``remote_mcp_call_timeout_s`` per call (connecting included) and
``remote_mcp_calls_per_agent`` calls at once to one agent (more are refused, ``LIMIT``).
Errors: what the remote server answered is :class:`~a2al_mcp.errors.AgentCallError`
(``AGENT_ERROR``) whose text starts ``the remote MCP server`` and keeps the server's text;
what happened on this side keeps its own class (``ACCESS_DENIED``, ``TIMEOUT``, ``LIMIT``…).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import anyio

from .. import errors as _errors
from ..config import LimitsConfig
from ..errors import A2ALError, AgentCallError, LimitExceeded, RequestTimeout
from .sdk_client import SdkError, SdkSession, http_module, open_session
from .spec import MCP_PATH
from .stream_transport import A2AL_CODE, StreamTransport

if TYPE_CHECKING:
    from ..identity.aid import Aid
    from ..node.node import Node

__all__ = ["RemoteMcp", "remote_mcp"]

logger = logging.getLogger(__name__)

URL: Final = "http://a2al-agent" + MCP_PATH
"""The URL the SDK is given: its host never resolves (the transport sends it on a stream)."""
_ERROR_TEXT_MAX: Final = 2000
_MARGIN_S: Final = 1.0
"""The transport cuts a request off at the call timeout, answering why; the SDK's own
timeout and the call's are later by this much and twice this much (backstops)."""


def _error_class(code: str) -> type[A2ALError]:
    for name in _errors.__all__:
        cls = getattr(_errors, name)
        if isinstance(cls, type) and issubclass(cls, A2ALError) and cls.code == code:
            return cls
    return A2ALError


def translate(exc: Exception, aid: Aid, operation: str) -> A2ALError:
    """``exc`` as an A2AL error: a local failure keeps its code; the rest is the remote's."""
    error_data: Any = getattr(exc, "error", None)  # the SDK's ErrorData
    data = getattr(error_data, "data", None)
    message = str(getattr(error_data, "message", exc))
    if isinstance(data, dict) and isinstance(data.get(A2AL_CODE), str):
        cls = _error_class(data[A2AL_CODE])
        text = message.removeprefix(f"{data[A2AL_CODE]}: ")
        try:
            error = cls(text, aid=aid, operation=operation)
        except TypeError:  # a class with other arguments
            error = A2ALError(text, aid=aid, operation=operation)
    else:
        code = getattr(error_data, "code", None)
        error = AgentCallError(f"the remote MCP server answered error {code}: "
                               f"{message[:_ERROR_TEXT_MAX]}", code,
                               aid=aid, operation=operation)  # fmt: skip
    error.__cause__ = exc
    return error


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _telling(exc: BaseException) -> BaseException:
    """The exception in ``exc`` (a task group's group, maybe) that says what failed."""
    leaves = _leaves(exc)
    for kind in (SdkError, A2ALError):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return leaves[0] if leaves else exc


@dataclasses.dataclass(eq=False)
class _Session:
    aid: Aid
    ready: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    done: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    stop: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    client: SdkSession | None = None
    error: BaseException | None = None


class RemoteMcp:
    """The MCP sessions of one node to remote agents (see :func:`remote_mcp`)."""

    def __init__(self, node: Node, limits: LimitsConfig | None = None) -> None:
        self._node = node
        self._limits = limits or LimitsConfig()
        self._sessions: dict[Aid, _Session] = {}
        self._calls: dict[Aid, int] = {}

    @property
    def limits(self) -> LimitsConfig:
        return self._limits

    async def list_tools(self, aid: Aid) -> list[dict[str, Any]]:
        """The remote server's tools (every page), each as the server described it (JSON)."""
        async with self._call(aid, "remote_tools") as client:
            tools: list[dict[str, Any]] = []
            cursor: str | None = None
            for _ in range(100):
                page, cursor = await client.list_tools_page(cursor)
                tools += page
                if cursor is None:
                    break
            return tools

    async def call_tool(self, aid: Aid, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call ``tool``: the result as the remote server gave it (``content``,
        ``structuredContent``, ``isError``), in its JSON form."""
        async with self._call(aid, "call_remote_tool") as client:
            return await client.call_tool(tool, arguments)

    @contextlib.asynccontextmanager
    async def _call(self, aid: Aid, operation: str) -> AsyncIterator[SdkSession]:
        """One call to ``aid``: its concurrency slot, the call timeout (connecting included)
        and the translation of what fails into A2AL errors."""
        limit = self._limits.remote_mcp_calls_per_agent
        running = self._calls.get(aid, 0)
        if running >= limit:
            raise LimitExceeded(f"{limit} calls to {aid} are already running (the limit "
                                "remote_mcp_calls_per_agent)", aid=aid,
                                operation=operation)  # fmt: skip
        self._calls[aid] = running + 1
        timeout_s = self._limits.remote_mcp_call_timeout_s
        try:
            with anyio.fail_after(timeout_s + 2 * _MARGIN_S):
                yield await self._client(aid)
        except A2ALError:
            raise
        except TimeoutError as exc:
            self.drop(aid)
            raise RequestTimeout(f"no answer from {aid} within {timeout_s:g} s (the call "
                                 "timeout)", aid=aid, operation=operation) from exc  # fmt: skip
        except SdkError as exc:
            raise translate(exc, aid, operation) from exc
        except (anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            self.drop(aid)
            raise AgentCallError(f"the MCP session with {aid} ended; call again to open a new "
                                 "one", aid=aid, operation=operation) from exc  # fmt: skip
        finally:
            left = self._calls.get(aid, 1) - 1
            if left > 0:
                self._calls[aid] = left
            else:
                self._calls.pop(aid, None)

    async def _client(self, aid: Aid) -> SdkSession:
        session = self._sessions.get(aid)
        if session is None or session.done.is_set():
            session = _Session(aid)
            self._sessions[aid] = session
            self._node.spawn(lambda: self._run(session))
        await session.ready.wait()
        if session.client is None:
            self._sessions.pop(aid, None)
            error = _telling(session.error) if session.error is not None else None
            if isinstance(error, SdkError):
                raise translate(error, aid, "connect")
            if isinstance(error, A2ALError):
                raise error
            raise AgentCallError(f"could not open an MCP session with {aid}: "
                                 f"{type(error).__name__}: {error}"[:_ERROR_TEXT_MAX],
                                 aid=aid, operation="connect") from error  # fmt: skip
        return session.client

    async def _run(self, session: _Session) -> None:
        limits = self._limits
        transport = StreamTransport(self._node, session.aid, http=http_module,
                                    max_body=limits.remote_mcp_response_max_bytes,
                                    timeout_s=limits.remote_mcp_call_timeout_s)  # fmt: skip
        try:
            async with open_session(transport, URL, read_timeout_s=limits.remote_mcp_call_timeout_s
                                    + _MARGIN_S) as client:  # fmt: skip
                session.client = client
                session.ready.set()
                await session.stop.wait()
        except Exception as exc:
            session.error = exc
            logger.debug("remote_mcp.session_ended aid=%s error=%r", session.aid, exc)
        finally:
            session.client = None
            session.done.set()
            session.ready.set()
            if self._sessions.get(session.aid) is session:
                del self._sessions[session.aid]

    def drop(self, aid: Aid) -> None:
        """Close the session with ``aid`` (the next use opens a new one)."""
        session = self._sessions.pop(aid, None)
        if session is not None:
            session.stop.set()

    def sessions(self) -> tuple[Aid, ...]:
        """The agents with a warm session."""
        return tuple(a for a, s in self._sessions.items() if s.client is not None)


_POOLS: weakref.WeakKeyDictionary[Node, RemoteMcp] = weakref.WeakKeyDictionary()


def remote_mcp(node: Node, limits: LimitsConfig | None = None) -> RemoteMcp:
    """The :class:`RemoteMcp` of ``node`` (made on first use, with ``limits`` or the
    node's ``[limits]``)."""
    pool = _POOLS.get(node)
    if pool is None:
        pool = _POOLS[node] = RemoteMcp(node, limits or node.config.limits)
    return pool
