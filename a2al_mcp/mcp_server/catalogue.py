"""The MCP server's content, in its wire form, without the ``mcp`` SDK: the tool listing, a
tool call's result, the resources, the passphrase elicitation and who subscribed to what.

Both servers answer from here: the SDK's (:mod:`.app` binds these to the SDK's server, for
streamable HTTP and for sessions the SDK serves) and the node's own line sessions
(:mod:`.session`, which never imports the SDK: importing it costs the node process about
22 MiB). Every dict here is what the SDK (mcp 2.3) puts on the wire for the same thing;
tests/mcp/test_direct_calls.py replays one session both ways and compares the answers.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, Field

from ..errors import InternalError, UnknownTool
from ..mcp_handshake import INSTRUCTIONS, TITLE
from ..node.node import Node
from ..toolresults import quote
from ..toolspec import (
    TOOL_PROGRESS,
    TOOLS,
    AskSecret,
    ToolFailure,
    ToolSpec,
    call_tool,
    check_arguments,
    delivery_fields,
    note_fields,
    run_checked,
)
from .guard import FrontStats

__all__ = [
    "INBOX_URI",
    "INSTRUCTIONS",
    "LEGACY_SUBSCRIBERS_MAX",
    "PASSPHRASE_KEY",
    "STATUS_URI",
    "TITLE",
    "Elicit",
    "ElicitRefused",
    "LegacySubscriptions",
    "Passphrase",
    "Progress",
    "ToolAnswer",
    "checked_call",
    "given",
    "input_schema",
    "listed_tools",
    "outcome",
    "passphrase_from",
    "passphrase_prompt",
    "read_resource",
    "refusal",
    "resource_list",
    "tool_annotations_wire",
    "tool_call_result",
]

logger = logging.getLogger(__name__)

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
    "call_agents": "reaching the agents and waiting for their replies",
    "get_agent_card": "reaching the agent and checking its card against its profile",
    "remote_tools": "reaching the agent's MCP server and listing its tools",
    "call_remote_tool": "reaching the agent's MCP server and waiting for the tool's result",
}
SPECS: dict[str, ToolSpec] = {spec.name: spec for spec in TOOLS}

Progress = Callable[[float, float, str], Awaitable[None]]
"""Reports progress of the running call: ``(progress, total, message)``."""
Elicit = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Sends ``elicitation/create`` with these params; returns the client's result (raises
:class:`ElicitRefused` when the client answered with an error)."""
ToolAnswer = Callable[..., Awaitable[dict[str, Any]]]
"""``(name, arguments, progress, elicit=None)`` -> the ``CallToolResult`` in its wire form."""


class ElicitRefused(Exception):
    """The client answered ``elicitation/create`` with a JSON-RPC error: the tool call is
    answered with that error (as the SDK does)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message")))
        self.error = error


# --- tools/list


def tool_annotations_wire(spec: ToolSpec) -> dict[str, Any]:
    """The MCP tool annotations of ``spec`` (wire names): its title and all four hints."""
    hints = spec.hints
    fields: dict[str, Any] = {"title": spec.title or None, "readOnlyHint": spec.read_only}
    if hints is not None:
        fields.update(readOnlyHint=hints.read_only, destructiveHint=hints.destructive,
                      idempotentHint=hints.idempotent, openWorldHint=hints.open_world)  # fmt: skip
    return {k: fields[k] for k in sorted(fields) if fields[k] is not None}


def input_schema(spec: ToolSpec) -> dict[str, Any]:
    """The closed JSON schema of ``spec``'s arguments (``additionalProperties: false``)."""
    schema = spec.input_model.model_json_schema()
    schema["additionalProperties"] = False
    props = schema.setdefault("properties", {})
    for name, field in spec.input_model.model_fields.items():
        if field.default_factory is not None and name in props:  # state [] and {} too
            props[name]["default"] = field.get_default(call_default_factory=True)
    return schema


def _output_schema(spec: ToolSpec) -> dict[str, Any]:
    """The result model's schema, as the SDK derives it from the tool's return annotation
    (an object root: a bare root ``$ref`` is inlined, ``$defs`` kept)."""
    schema = spec.result_model.model_json_schema()
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        definition = schema["$defs"][ref.removeprefix("#/$defs/")]
        schema = {**definition, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


_LISTED: list[dict[str, Any]] = []


def listed_tools() -> list[dict[str, Any]]:
    """``tools/list``'s tools (built once: the catalogue does not change)."""
    if not _LISTED:
        for spec in TOOLS:
            tool: dict[str, Any] = {
                "annotations": tool_annotations_wire(spec),
                "description": spec.description,
                "inputSchema": input_schema(spec),
                "name": spec.name,
                "outputSchema": _output_schema(spec),
            }
            if spec.title:
                tool["title"] = spec.title
            _LISTED.append(tool)
    copy: list[dict[str, Any]] = json.loads(json.dumps(_LISTED))  # the caller's own
    return copy


# --- tools/call


def refusal(failure: ToolFailure) -> dict[str, Any]:
    """The wire ``CallToolResult`` refusing a call as the client sent it (the SDK's
    middleware answer: ``CODE: sentence``, no SDK prefix)."""
    return {"content": [{"type": "text", "text": str(failure)}], "isError": True,
            "resultType": "complete"}  # fmt: skip


def checked_call(name: Any, arguments: Any) -> tuple[ToolSpec, BaseModel] | ToolFailure:
    """The tool and its checked arguments, or the failure refusing the call as sent."""
    spec = SPECS.get(name) if isinstance(name, str) else None
    if spec is None:
        shown = quote(name, 64) if isinstance(name, str) else "of that name"
        error = UnknownTool(f"there is no tool {shown}; tools/list names them")
        return ToolFailure.from_error(error)
    try:
        return spec, check_arguments(spec, arguments)
    except ToolFailure as exc:
        return exc


async def outcome(
    node: Node,
    spec: ToolSpec,
    arguments: Any,
    front_stats: FrontStats | None,
    progress: Progress | None,
    ask_secret: AskSecret | None = None,
) -> tuple[str, dict[str, Any] | None]:
    """Run ``spec`` on ``arguments`` (checked here, or already the input model's instance):
    its text and structured result, or ``CODE: sentence`` and None."""
    try:
        args = arguments if isinstance(arguments, BaseModel) else check_arguments(spec, arguments)
    except ToolFailure as exc:
        return str(exc), None
    slow = _SLOW.get(spec.name)
    if slow and progress is not None:
        await progress(0, 1, slow)
    forwarding = TOOL_PROGRESS.set(progress)  # call_agent's streamed updates
    try:
        result = await run_checked(node, spec, args, ask_secret=ask_secret)
    except ToolFailure as exc:
        return str(exc), None
    finally:
        TOOL_PROGRESS.reset(forwarding)
    if slow and progress is not None:
        await progress(1, 1, "done")
    if spec.name == "status" and front_stats is not None:
        result["mcp_front"] = front_stats.as_dict()
    return json.dumps(result, ensure_ascii=False), result


class Passphrase(BaseModel):
    passphrase: str = Field(min_length=8, description="At least 8 characters; needed again "
                            "to import the export.")  # fmt: skip


PASSPHRASE_KEY = "a2al_passphrase"


def passphrase_prompt(kwargs: dict[str, Any]) -> str:
    which = kwargs.get("aid") or "this node's identity"
    return (
        f"Passphrase to seal the export of {which} (at least 8 characters; it is needed again "
        "to import the export). It goes to the A2AL server only, not to the model."
    )


def passphrase_from(answer: Any) -> str | None:
    """The passphrase in an elicitation answer (accepted), or None (declined, cancelled)."""
    content = getattr(answer, "content", None)
    if content is None:  # the SDK's validated form (ctx.elicit) carries it in data
        data = getattr(answer, "data", None)
        content = {"passphrase": getattr(data, "passphrase", None)} if data else None
    if getattr(answer, "action", None) != "accept" or not isinstance(content, dict):
        return None
    value = content.get("passphrase")
    return value if isinstance(value, str) else None


def given(passphrase: str | None) -> AskSecret:
    async def ask(prompt: str) -> str | None:
        return passphrase

    return ask


class _BadElicitAnswer(Exception):
    """An accepted elicitation whose content is not a passphrase (the SDK fails the tool)."""


_ELICIT_ACTIONS = frozenset({"accept", "decline", "cancel"})


async def _elicited_passphrase(elicit: Elicit, kwargs: dict[str, Any]) -> str | None:
    """Ask the user (never the model) through the client: ``elicitation/create`` in form
    mode, the answer checked as the SDK checks it (``_BadElicitAnswer`` when it fails)."""
    schema = Passphrase.model_json_schema()
    result = await elicit({"mode": "form", "message": passphrase_prompt(kwargs),
                           "requestedSchema": schema})  # fmt: skip
    action = result.get("action") if isinstance(result, dict) else None
    if action not in _ELICIT_ACTIONS:
        raise _BadElicitAnswer("not an elicitation result")
    if action != "accept":
        return None
    content = result.get("content")
    try:
        return Passphrase.model_validate(content if content is not None else {}).passphrase
    except ValueError as exc:
        raise _BadElicitAnswer("the answer is not a passphrase") from exc


def tool_call_result(node: Node, front_stats: FrontStats | None = None) -> ToolAnswer:
    """How a session answers ``tools/call`` without the SDK: the ``CallToolResult`` in the
    wire form the SDK sends for the same call (a refusal as the SDK's ``strict_tools``
    middleware refuses, a tool's result or failure as the SDK renders what the tool function
    returns). ``identity_export`` asks its passphrase through ``elicit`` when given (the
    client said it can ask its user). Never raises but for cancellation and
    :class:`ElicitRefused`: an unexpected error is an ``INTERNAL`` failure."""

    async def answer(
        name: Any, arguments: Any, progress: Progress | None, elicit: Elicit | None = None
    ) -> dict[str, Any]:
        checked = checked_call(name, arguments)
        if isinstance(checked, ToolFailure):
            return refusal(checked)
        spec, args = checked
        ask_secret: AskSecret | None = None
        if spec.name == "identity_export" and elicit is not None:
            try:
                ask_secret = given(await _elicited_passphrase(elicit, args.model_dump()))
            except _BadElicitAnswer:  # the SDK's words for a tool that raised
                text = f"Error executing tool {spec.name}"
                return {"content": [{"text": text, "type": "text"}], "isError": True}
        try:
            text, result = await outcome(node, spec, args, front_stats, progress, ask_secret)
        except Exception as exc:  # run_checked turns every error into a failure: a bug
            logger.exception("mcp.direct_internal tool=%s", name)
            error = InternalError("an unexpected error happened; the server log has details",
                                  operation=name)  # fmt: skip
            error.__cause__ = exc
            text, result = str(ToolFailure.from_error(error, tool=name)), None
        content = [{"text": text, "type": "text"}]
        if result is None:
            return {"content": content, "isError": True}
        return {"content": content, "isError": False, "structuredContent": result}

    return answer


# --- resources

_RESOURCES = (
    (INBOX_URI, "inbox", "Unread mailbox notes (subscribe: updated when a note arrives)"),
    (STATUS_URI, "status", "This node's status"),
)


def resource_list() -> list[dict[str, Any]]:
    """``resources/list``'s resources."""
    return [{"description": text, "mimeType": "application/json", "name": name, "uri": uri}
            for uri, name, text in _RESOURCES]  # fmt: skip


OUTBOX_SHOWN_MAX = 50
"""Most ended outbox deliveries the inbox resource shows (newest first)."""


async def inbox_text(node: Node) -> str:
    notes = await node.read_mailbox(peek=True, limit=200)
    ended = [d for d in node.outbox().deliveries(limit=OUTBOX_SHOWN_MAX + 200)
             if d.state != "queued"][:OUTBOX_SHOWN_MAX]  # fmt: skip
    return json.dumps({"unread": len(notes), "messages": [note_fields(n) for n in notes],
                       "outbox_replies": [delivery_fields(d) for d in ended]})  # fmt: skip


async def status_text(node: Node, front_stats: FrontStats | None) -> str:
    result = await call_tool(node, "status", {})
    if front_stats is not None:
        result["mcp_front"] = front_stats.as_dict()
    return json.dumps(result)


async def read_resource(
    node: Node, uri: str, front_stats: FrontStats | None
) -> list[dict[str, Any]] | None:
    """``resources/read``'s contents of ``uri``; None when there is no such resource."""
    if uri == INBOX_URI:
        text = await inbox_text(node)
    elif uri == STATUS_URI:
        text = await status_text(node, front_stats)
    else:
        return None
    return [{"mimeType": "application/json", "text": text, "uri": uri}]


# --- resources/subscribe

LEGACY_SUBSCRIBERS_MAX = 256
"""Sessions subscribed through ``resources/subscribe`` per resource (a new one past it is
refused with an error); ended sessions leave by themselves (weak references)."""


class LegacySubscriptions:
    """``resources/subscribe`` / ``resources/unsubscribe`` (protocol ≤ 2025-11-25: today's
    desktop apps, and every mcp 1.x client): which sessions asked about which of ``uris``,
    each told by ``notifications/resources/updated`` (``session.send_resource_updated``)."""

    def __init__(self, uris: set[str]) -> None:
        self._uris = uris
        self._sessions: dict[str, weakref.WeakSet[Any]] = {u: weakref.WeakSet() for u in uris}

    def subscribe(self, uri: str, session: Any) -> None:
        if uri not in self._uris:
            raise ValueError(f"BAD_ARGUMENTS: no resource {uri[:100]!r} to subscribe to")
        sessions = self._sessions[uri]
        if session not in sessions and len(sessions) >= LEGACY_SUBSCRIBERS_MAX:
            raise ValueError(f"LIMIT: {LEGACY_SUBSCRIBERS_MAX} sessions already subscribe")
        sessions.add(session)

    def unsubscribe(self, uri: str, session: Any) -> None:
        if uri in self._sessions:
            self._sessions[uri].discard(session)

    async def notify(self, uri: str) -> None:
        for session in list(self._sessions.get(uri, ())):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # a session that ended meanwhile: it no longer listens
                self._sessions[uri].discard(session)
