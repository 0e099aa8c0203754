"""Render the tool catalogue (:mod:`a2al_mcp.toolspec`) as MCP tools bound to one Node."""

from __future__ import annotations

import inspect
import json
from typing import Annotated, Any

from pydantic import Field

from .._version import __version__
from ..node.node import Node
from ..toolspec import TOOLS, ToolFailure, ToolSpec, call_tool
from ._compat import (
    Context,
    ToolError,
    add_resource,
    new_server,
    publish_resource_updated,
    report_progress,
    serve_legacy_subscriptions,
    tool_hints,
)
from .guard import FrontStats

__all__ = ["INBOX_URI", "INSTRUCTIONS", "STATUS_URI", "build_server"]

TITLE = "A2AL agent network"
INBOX_URI = "a2al://inbox"
STATUS_URI = "a2al://status"
_SLOW = {
    "publish": "publishing the signed record to the DHT",
    "discover": "searching the DHT",
    "resolve": "looking the AID up in the DHT",
    "connect": "resolving and opening a verified QUIC connection",
    "fetch": "resolving, connecting and sending the request",
    "send_mailbox": "resolving the recipient, delivering and storing the note",
    "call_agent": "reaching the agent and waiting for its reply",
}

INSTRUCTIONS = (
    "a2al-mcp connects this assistant to the A2AL agent network: every agent has a permanent "
    "cryptographic address (AID). Call status first. Use publish to announce yourself, "
    "discover to find agents by capability, resolve to check one is online, fetch or connect "
    "to talk to it directly, call_agent to message an A2A agent (by AID or skill), and "
    "send_mailbox when it is offline or unreachable; read_mailbox "
    "shows notes left for you. Errors start with a stable code (e.g. NOT_FOUND, UNREACHABLE)."
)


def _signature(spec: ToolSpec) -> inspect.Signature:
    required, optional = [], []
    for name, field in spec.input_model.model_fields.items():
        ann: Any = Annotated[(field.annotation, *field.metadata,
                              Field(description=field.description))]  # fmt: skip
        if field.is_required():
            required.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                              annotation=ann))  # fmt: skip
        else:
            default = field.get_default(call_default_factory=True)
            optional.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                              annotation=ann, default=default))  # fmt: skip
    ctx = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context,
                            default=None)  # fmt: skip
    return inspect.Signature(required + optional + [ctx], return_annotation=dict[str, Any])


def _tool_function(node: Node, spec: ToolSpec, front_stats: FrontStats | None) -> Any:
    async def run(ctx: Any = None, **kwargs: Any) -> dict[str, Any]:
        slow = _SLOW.get(spec.name)
        if slow:
            await report_progress(ctx, 0, 1, slow)
        try:
            result = await call_tool(node, spec.name, kwargs)
        except ToolFailure as exc:
            raise ToolError(str(exc)) from None
        if slow:
            await report_progress(ctx, 1, 1, "done")
        if spec.name == "status" and front_stats is not None:
            result["mcp_front"] = front_stats.as_dict()
        return result

    run.__name__ = spec.name
    run.__doc__ = spec.description
    run.__signature__ = _signature(spec)  # type: ignore[attr-defined]
    run.__annotations__ = {"ctx": Context, "return": dict[str, Any]}  # the SDK injects ctx
    return run


def build_server(node: Node, *, name: str = "a2al", front_stats: FrontStats | None = None) -> Any:
    """An MCP server whose tools act on ``node`` (which the caller keeps open); the ``status``
    tool and resource add what the stdio/HTTP front refused (``mcp_front``) when given."""
    server = new_server(name, INSTRUCTIONS, title=TITLE, version=__version__)
    for spec in TOOLS:
        server.add_tool(
            _tool_function(node, spec, front_stats),
            name=spec.name,
            description=spec.description,
            annotations=tool_hints(read_only=spec.read_only),
        )

    async def inbox() -> str:
        notes = await node.read_mailbox(peek=True, limit=200)
        return json.dumps({"unread": len(notes), "messages": [
            {"id": n.msg_id.hex(), "from": str(n.sender), "text": n.text,
             "received_at": int(n.received_at)} for n in notes]})  # fmt: skip

    async def status() -> str:
        result = await call_tool(node, "status", {})
        if front_stats is not None:
            result["mcp_front"] = front_stats.as_dict()
        return json.dumps(result)

    inbox_help = "Unread mailbox notes (subscribe: updated when a note arrives)"
    add_resource(server, INBOX_URI, "inbox", inbox_help, inbox)
    add_resource(server, STATUS_URI, "status", "This node's status", status)
    legacy = serve_legacy_subscriptions(server, {INBOX_URI, STATUS_URI})
    node.on_mail(
        lambda note: node.spawn(lambda: publish_resource_updated(server, INBOX_URI, legacy))
    )
    return server
