"""What every MCP session of one node shares: the node, the front's counters, who subscribed
to the inbox, and (only once a session needs it) the SDK's server.

:class:`ServerCore` is built once per node by ``a2al-mcp serve --stdio --standalone`` and
``a2al-mcp node run`` instead of the SDK's server: a desktop client's session is answered
by :class:`~.session.LineSession` without importing the ``mcp`` package (22 MiB of the
node's resident memory), and :meth:`ServerCore.sdk_server` builds the SDK's server the first
time a session the line session does not serve arrives (see :mod:`.line_front`).
"""

from __future__ import annotations

from typing import Any

from ..mcp_handshake import PROFILES, sdk_version
from ..node.node import Node
from .catalogue import INBOX_URI, STATUS_URI, LegacySubscriptions, ToolAnswer, tool_call_result
from .guard import FrontStats

__all__ = ["ServerCore"]


class ServerCore:
    """The MCP server of ``node`` (which the caller keeps open), SDK-free until asked."""

    def __init__(self, node: Node, *, front_stats: FrontStats | None = None) -> None:
        self.node = node
        self.front_stats = front_stats
        self.answer: ToolAnswer = tool_call_result(node, front_stats)
        self.subscriptions = LegacySubscriptions({INBOX_URI, STATUS_URI})
        """The line sessions that sent ``resources/subscribe`` (the SDK's server, once
        built, keeps its own)."""
        self.sdk = sdk_version()
        """The installed SDK's ``major.minor`` (found without importing it)."""
        self.direct = self.sdk in PROFILES
        """Line sessions are answered without the SDK: only where their answers were checked
        to be the installed SDK's (:data:`~a2al_mcp.mcp_handshake.PROFILES`); elsewhere
        (mcp 1.x, an SDK not checked yet) every session goes to the SDK."""
        self._sdk_server: Any = None
        node.on_mail(lambda note: node.spawn(self._mail_arrived))
        node.outbox().listen(lambda delivery: node.spawn(self._mail_arrived))  # its reply

    async def _mail_arrived(self) -> None:
        await self.subscriptions.notify(INBOX_URI)

    def sdk_server(self) -> Any:
        """The SDK's server for this node, built (and the SDK imported) on first use."""
        if self._sdk_server is None:
            from .app import build_server

            self._sdk_server = build_server(self.node, front_stats=self.front_stats)
        return self._sdk_server

    @property
    def sdk_built(self) -> bool:
        return self._sdk_server is not None
