"""Render the tool catalogue (:mod:`a2al_mcp.toolspec`) as MCP tools bound to one Node."""

from __future__ import annotations

import inspect
import json
import logging
import weakref
from typing import Annotated, Any

from mcp.types import CallToolResult, ListToolsResult, ToolAnnotations
from pydantic import BaseModel, Field, WithJsonSchema

from .._version import __version__
from ..errors import InternalError, UnknownTool
from ..node.node import Node
from ..toolresults import quote
from ..toolspec import (
    TOOLS,
    AskSecret,
    ToolFailure,
    ToolSpec,
    call_tool,
    check_arguments,
    note_fields,
    run_checked,
)
from ._compat import (
    MCP_MAJOR,
    Context,
    add_resource,
    intercept_tools,
    new_server,
    publish_resource_updated,
    report_progress,
    serve_legacy_subscriptions,
)
from .direct import Progress, ToolAnswer
from .guard import FrontStats

__all__ = [
    "INBOX_URI",
    "INSTRUCTIONS",
    "STATUS_URI",
    "build_server",
    "direct_answer",
    "failure_result",
    "input_schema",
    "strict_tools",
    "tool_annotations",
    "tool_call_result",
]

logger = logging.getLogger(__name__)

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
    "shows notes left for you (every result's unread_mail counts the unread ones). Errors "
    "are 'CODE: sentence' with a stable code (e.g. BAD_ARGUMENTS, NOT_FOUND, UNREACHABLE)."
)


def _signature(spec: ToolSpec) -> inspect.Signature:
    """The tool function's signature as the SDK reads it: one parameter per argument, of its
    type and described by its own JSON schema. (On mcp 2 :func:`strict_tools` has checked the
    arguments before the SDK sees them, in our error format. The type stays: the SDK parses
    JSON text given for a parameter that is not typed ``str``.)"""
    schema = spec.input_model.model_json_schema()
    props = schema.get("properties", {})
    required, optional = [], []
    for name, field in spec.input_model.model_fields.items():
        ann: Any = Annotated[field.annotation, WithJsonSchema(props.get(name, {}))]
        if field.is_required():
            required.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                              annotation=ann))  # fmt: skip
        else:
            default = field.get_default(call_default_factory=True)
            optional.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                              annotation=ann, default=default))  # fmt: skip
    ctx = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context,
                            default=None)  # fmt: skip
    returns = _returns(spec)
    return inspect.Signature(required + optional + [ctx], return_annotation=returns)


def _returns(spec: ToolSpec) -> Any:
    """The return annotation the SDK reads the outputSchema from: the tool's result model.
    mcp 1.x also checks an error result's (absent) structured content against it, which
    would turn every failure into its own validation text: there the tools list no output
    schema, and failures stay ``CODE: sentence``."""
    if MCP_MAJOR == 2:
        return Annotated[CallToolResult, spec.result_model]
    return CallToolResult  # pragma: no cover - mcp 1.x


def _text_result(text: str, *, error: bool, structured: dict[str, Any] | None = None) -> Any:
    fields: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": error}
    if structured is not None:
        fields["structuredContent"] = structured
    return CallToolResult.model_validate(fields)


def failure_result(failure: ToolFailure) -> Any:
    """The ``CallToolResult`` of a failed call: ``CODE: sentence`` and nothing else (no SDK
    prefix, no validation dump)."""
    return _text_result(str(failure), error=True)


class _Passphrase(BaseModel):
    passphrase: str = Field(min_length=8, description="At least 8 characters; needed again "
                            "to import the export.")  # fmt: skip


def _elicits(ctx: Any) -> bool:
    """The client said it can ask its user for input (the ``elicitation`` capability)."""
    if ctx is None:
        return False
    try:
        caps = ctx.client_capabilities if MCP_MAJOR == 2 else ctx.session.client_params.capabilities
    except Exception:  # no session (a direct call): nobody to ask
        return False
    return caps is not None and getattr(caps, "elicitation", None) is not None


_PASSPHRASE_KEY = "a2al_passphrase"


def _passphrase_prompt(kwargs: dict[str, Any]) -> str:
    which = kwargs.get("aid") or "this node's identity"
    return (
        f"Passphrase to seal the export of {which} (at least 8 characters; it is needed again "
        "to import the export). It goes to the A2AL server only, not to the model."
    )


def _answer(answer: Any) -> str | None:
    """The passphrase in an elicitation answer (accepted), or None (declined, cancelled)."""
    content = getattr(answer, "content", None)
    if content is None:  # the SDK's validated form (ctx.elicit) carries it in data
        data = getattr(answer, "data", None)
        content = {"passphrase": getattr(data, "passphrase", None)} if data else None
    if getattr(answer, "action", None) != "accept" or not isinstance(content, dict):
        return None
    value = content.get("passphrase")
    return value if isinstance(value, str) else None


async def _ask_passphrase(ctx: Any, kwargs: dict[str, Any]) -> tuple[AskSecret | None, Any]:
    """How identity_export gets its passphrase from the user, never the model: an
    elicitation (a server request on protocols up to 2025-11-25; an ``input_required`` round
    on later ones, where the answer comes with the retried call). Returns the ``ask_secret``
    for :func:`call_tool` (None: the client cannot ask) or the ``InputRequiredResult`` to
    return first."""
    if not _elicits(ctx):
        return None, None
    prompt = _passphrase_prompt(kwargs)
    if MCP_MAJOR == 2:
        responses = ctx.input_responses
        if responses is not None and _PASSPHRASE_KEY in responses:
            given = _answer(responses[_PASSPHRASE_KEY])
            return _given(given), None
    try:
        given = _answer(await ctx.elicit(prompt, _Passphrase))
    except Exception as exc:
        if MCP_MAJOR != 2 or type(exc).__name__ != "NoBackChannelError":
            raise
        return None, _input_required(prompt)
    return _given(given), None


def _given(passphrase: str | None) -> AskSecret:
    async def ask(prompt: str) -> str | None:
        return passphrase

    return ask


def _input_required(prompt: str) -> Any:
    from mcp_types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult

    schema = _Passphrase.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    ask = ElicitRequest(params=ElicitRequestFormParams(message=prompt, requested_schema=schema))
    return InputRequiredResult(input_requests={_PASSPHRASE_KEY: ask})


async def _outcome(
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
    try:
        result = await run_checked(node, spec, args, ask_secret=ask_secret)
    except ToolFailure as exc:
        return str(exc), None
    if slow and progress is not None:
        await progress(1, 1, "done")
    if spec.name == "status" and front_stats is not None:
        result["mcp_front"] = front_stats.as_dict()
    return json.dumps(result, ensure_ascii=False), result


def _tool_function(node: Node, spec: ToolSpec, front_stats: FrontStats | None) -> Any:
    async def run(ctx: Any = None, **kwargs: Any) -> Any:
        ask_secret = None
        if spec.name == "identity_export":
            ask_secret, pending = await _ask_passphrase(ctx, kwargs)
            if pending is not None:
                return pending

        async def progress(done: float, total: float, message: str) -> None:
            await report_progress(ctx, done, total, message)

        text, result = await _outcome(node, spec, kwargs, front_stats, progress, ask_secret)
        return _text_result(text, error=result is None, structured=result)

    run.__name__ = spec.name
    run.__doc__ = spec.description
    run.__signature__ = _signature(spec)  # type: ignore[attr-defined]
    # the SDK injects ctx, and reads the output schema from the return annotation
    run.__annotations__ = {"ctx": Context,
                           "return": _returns(spec)}  # fmt: skip
    return run


def tool_call_result(node: Node, front_stats: FrontStats | None = None) -> ToolAnswer:
    """How :class:`~.direct.DirectCalls` answers ``tools/call``: the ``CallToolResult`` in
    the wire form the SDK sends for the same call (a refusal as :func:`strict_tools`
    refuses, a tool's result or failure as the SDK renders what the tool function returns).
    Never raises but for cancellation: an unexpected error is an ``INTERNAL`` failure."""

    async def answer(name: Any, arguments: Any, progress: Progress | None) -> dict[str, Any]:
        checked = _checked_call(name, arguments)
        if isinstance(checked, ToolFailure):  # refused as strict_tools refuses it
            wire: dict[str, Any] = failure_result(checked).model_dump(
                by_alias=True, mode="json", exclude_none=True)  # fmt: skip
            return wire
        spec, args = checked
        try:
            text, result = await _outcome(node, spec, args, front_stats, progress)
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


_DIRECT: weakref.WeakKeyDictionary[Any, ToolAnswer] = weakref.WeakKeyDictionary()


def direct_answer(server: Any) -> ToolAnswer | None:
    """The :func:`tool_call_result` of a server :func:`build_server` made (mcp 2; None for
    others, whose calls all go through the SDK)."""
    return _DIRECT.get(server)


def tool_annotations(spec: ToolSpec) -> Any:
    """The MCP tool annotations of ``spec``: its title and all four hints (the camelCase
    names are the wire names, which both SDKs' models accept)."""
    hints = spec.hints
    fields: dict[str, Any] = {"title": spec.title or None, "readOnlyHint": spec.read_only}
    if hints is not None:
        fields.update(readOnlyHint=hints.read_only, destructiveHint=hints.destructive,
                      idempotentHint=hints.idempotent, openWorldHint=hints.open_world)  # fmt: skip
    return ToolAnnotations.model_validate(fields)


def input_schema(spec: ToolSpec) -> dict[str, Any]:
    """The closed JSON schema of ``spec``'s arguments (``additionalProperties: false``)."""
    schema = spec.input_model.model_json_schema()
    schema["additionalProperties"] = False
    props = schema.setdefault("properties", {})
    for name, field in spec.input_model.model_fields.items():
        if field.default_factory is not None and name in props:  # state [] and {} too
            props[name]["default"] = field.get_default(call_default_factory=True)
    return schema


_SPECS = {spec.name: spec for spec in TOOLS}


def _checked_call(name: Any, arguments: Any) -> tuple[ToolSpec, BaseModel] | ToolFailure:
    """The tool and its checked arguments, or the failure refusing the call as sent."""
    spec = _SPECS.get(name) if isinstance(name, str) else None
    if spec is None:
        shown = quote(name, 64) if isinstance(name, str) else "of that name"
        error = UnknownTool(f"there is no tool {shown}; tools/list names them")
        return ToolFailure.from_error(error)
    try:
        return spec, check_arguments(spec, arguments)
    except ToolFailure as exc:
        return exc


def refuse_call(name: Any, arguments: Any) -> Any | None:
    """The error result refusing a ``tools/call`` as the client sent it (an unknown tool,
    unknown or bad arguments), or None when it may run."""
    checked = _checked_call(name, arguments)
    return failure_result(checked) if isinstance(checked, ToolFailure) else None


def _listed_schema(name: str) -> dict[str, Any] | None:
    spec = _SPECS.get(name)
    return None if spec is None else input_schema(spec)


async def strict_tools(ctx: Any, call_next: Any) -> Any:
    """SDK middleware (mcp 2): ``tools/call`` arguments are checked as the client sent them,
    before the SDK drops the names it does not know (a refusal is the tool's error result,
    ``BAD_ARGUMENTS: …``), and ``tools/list`` shows each tool's closed input schema (mcp 1.x:
    the same through :func:`~._compat.intercept_tools`)."""
    method = getattr(ctx, "method", None)
    params = getattr(ctx, "params", None)
    if method == "tools/call" and isinstance(params, dict):
        refusal = refuse_call(params.get("name"), params.get("arguments"))
        return refusal if refusal is not None else await call_next(ctx)
    result = await call_next(ctx)
    if method == "tools/list" and isinstance(result, dict):  # the wire form (camelCase)
        tools = [dict(t, inputSchema=input_schema(_SPECS[t["name"]]))
                 if isinstance(t, dict) and t.get("name") in _SPECS else t
                 for t in result.get("tools", [])]  # fmt: skip
        return dict(result, tools=tools)
    if method == "tools/list" and isinstance(result, ListToolsResult):
        listed = [t.model_copy(update={"input_schema": input_schema(_SPECS[t.name])})
                  if t.name in _SPECS else t for t in result.tools]  # fmt: skip
        return result.model_copy(update={"tools": listed})
    return result


def build_server(node: Node, *, name: str = "a2al", front_stats: FrontStats | None = None) -> Any:
    """An MCP server whose tools act on ``node`` (which the caller keeps open); the ``status``
    tool and resource add what the stdio/HTTP front refused (``mcp_front``) when given."""
    server = new_server(name, INSTRUCTIONS, title=TITLE, version=__version__)
    for spec in TOOLS:
        server.add_tool(
            _tool_function(node, spec, front_stats),
            name=spec.name,
            description=spec.description,
            title=spec.title or None,
            annotations=tool_annotations(spec),
        )
    if MCP_MAJOR == 2:
        server.middleware.append(strict_tools)
        _DIRECT[server] = tool_call_result(node, front_stats)
    else:  # pragma: no cover - mcp 1.x
        intercept_tools(server, check_call=refuse_call, input_schema=_listed_schema)

    async def inbox() -> str:
        notes = await node.read_mailbox(peek=True, limit=200)
        return json.dumps({"unread": len(notes), "messages": [note_fields(n) for n in notes]})

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
