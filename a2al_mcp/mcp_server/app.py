"""Render the tool catalogue (:mod:`a2al_mcp.toolspec`) as MCP tools bound to one Node."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

from pydantic import Field

from ..node.node import Node
from ..toolspec import TOOLS, ToolFailure, ToolSpec, call_tool
from ._compat import ToolError, new_server, tool_hints

__all__ = ["INSTRUCTIONS", "build_server"]

INSTRUCTIONS = (
    "a2al-mcp connects this assistant to the A2AL agent network: every agent has a permanent "
    "cryptographic address (AID). Call status first. Use publish to announce yourself, "
    "discover to find agents by capability, resolve to check one is online, fetch or connect "
    "to talk to it directly, and send_mailbox when it is offline or unreachable; read_mailbox "
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
    return inspect.Signature(required + optional, return_annotation=dict[str, Any])


def _tool_function(node: Node, spec: ToolSpec) -> Any:
    async def run(**kwargs: Any) -> dict[str, Any]:
        try:
            return await call_tool(node, spec.name, kwargs)
        except ToolFailure as exc:
            raise ToolError(str(exc)) from None

    run.__name__ = spec.name
    run.__doc__ = spec.description
    run.__signature__ = _signature(spec)  # type: ignore[attr-defined]
    return run


def build_server(node: Node, *, name: str = "a2al") -> Any:
    """An MCP server whose tools act on ``node`` (which the caller keeps open)."""
    server = new_server(name, INSTRUCTIONS)
    for spec in TOOLS:
        server.add_tool(
            _tool_function(node, spec),
            name=spec.name,
            description=spec.description,
            annotations=tool_hints(read_only=spec.read_only),
        )
    return server
