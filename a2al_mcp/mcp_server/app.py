"""Render the tool catalogue (:mod:`a2al_mcp.toolspec`) as MCP tools bound to one Node."""

from __future__ import annotations

import inspect
import logging
import weakref
from typing import Annotated, Any

from mcp.types import CallToolResult, ListToolsResult, ToolAnnotations
from pydantic import WithJsonSchema

from .._version import __version__
from ..node.node import Node
from ..toolspec import TOOLS, AskSecret, ToolFailure, ToolSpec
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
from .catalogue import (
    INBOX_URI,
    INSTRUCTIONS,
    PASSPHRASE_KEY,
    SPECS,
    STATUS_URI,
    TITLE,
    Passphrase,
    ToolAnswer,
    checked_call,
    given,
    inbox_text,
    input_schema,
    outcome,
    passphrase_from,
    passphrase_prompt,
    status_text,
    tool_annotations_wire,
    tool_call_result,
)
from .guard import FrontStats

__all__ = [
    "INBOX_URI",
    "INSTRUCTIONS",
    "STATUS_URI",
    "TITLE",
    "build_server",
    "direct_answer",
    "failure_result",
    "input_schema",
    "strict_tools",
    "tool_annotations",
    "tool_call_result",
]

logger = logging.getLogger(__name__)


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


def _elicits(ctx: Any) -> bool:
    """The client said it can ask its user for input (the ``elicitation`` capability)."""
    if ctx is None:
        return False
    try:
        caps = ctx.client_capabilities if MCP_MAJOR == 2 else ctx.session.client_params.capabilities
    except Exception:  # no session (a direct call): nobody to ask
        return False
    return caps is not None and getattr(caps, "elicitation", None) is not None


async def _ask_passphrase(ctx: Any, kwargs: dict[str, Any]) -> tuple[AskSecret | None, Any]:
    """How identity_export gets its passphrase from the user, never the model: an
    elicitation (a server request on protocols up to 2025-11-25; an ``input_required`` round
    on later ones, where the answer comes with the retried call). Returns the ``ask_secret``
    for :func:`call_tool` (None: the client cannot ask) or the ``InputRequiredResult`` to
    return first."""
    if not _elicits(ctx):
        return None, None
    prompt = passphrase_prompt(kwargs)
    if MCP_MAJOR == 2:
        responses = ctx.input_responses
        if responses is not None and PASSPHRASE_KEY in responses:
            return given(passphrase_from(responses[PASSPHRASE_KEY])), None
    try:
        answer = passphrase_from(await ctx.elicit(prompt, Passphrase))
    except Exception as exc:
        if MCP_MAJOR != 2 or type(exc).__name__ != "NoBackChannelError":
            raise
        return None, _input_required(prompt)
    return given(answer), None


def _input_required(prompt: str) -> Any:
    from mcp_types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult

    schema = Passphrase.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    ask = ElicitRequest(params=ElicitRequestFormParams(message=prompt, requested_schema=schema))
    return InputRequiredResult(input_requests={PASSPHRASE_KEY: ask})


def _tool_function(node: Node, spec: ToolSpec, front_stats: FrontStats | None) -> Any:
    async def run(ctx: Any = None, **kwargs: Any) -> Any:
        ask_secret = None
        if spec.name == "identity_export":
            ask_secret, pending = await _ask_passphrase(ctx, kwargs)
            if pending is not None:
                return pending

        async def progress(done: float, total: float, message: str) -> None:
            await report_progress(ctx, done, total, message)

        text, result = await outcome(node, spec, kwargs, front_stats, progress, ask_secret)
        return _text_result(text, error=result is None, structured=result)

    run.__name__ = spec.name
    run.__doc__ = spec.description
    run.__signature__ = _signature(spec)  # type: ignore[attr-defined]
    # the SDK injects ctx, and reads the output schema from the return annotation
    run.__annotations__ = {"ctx": Context,
                           "return": _returns(spec)}  # fmt: skip
    return run


_DIRECT: weakref.WeakKeyDictionary[Any, ToolAnswer] = weakref.WeakKeyDictionary()


def direct_answer(server: Any) -> ToolAnswer | None:
    """The :func:`tool_call_result` of a server :func:`build_server` made (mcp 2; None for
    others, whose calls all go through the SDK)."""
    return _DIRECT.get(server)


def tool_annotations(spec: ToolSpec) -> Any:
    """The MCP tool annotations of ``spec``, as the SDK's model: its title and all four hints."""
    return ToolAnnotations.model_validate(tool_annotations_wire(spec))


def refuse_call(name: Any, arguments: Any) -> Any | None:
    """The error result refusing a ``tools/call`` as the client sent it (an unknown tool,
    unknown or bad arguments), or None when it may run."""
    checked = checked_call(name, arguments)
    return failure_result(checked) if isinstance(checked, ToolFailure) else None


def _listed_schema(name: str) -> dict[str, Any] | None:
    spec = SPECS.get(name)
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
        tools = [dict(t, inputSchema=input_schema(SPECS[t["name"]]))
                 if isinstance(t, dict) and t.get("name") in SPECS else t
                 for t in result.get("tools", [])]  # fmt: skip
        return dict(result, tools=tools)
    if method == "tools/list" and isinstance(result, ListToolsResult):
        listed = [t.model_copy(update={"input_schema": input_schema(SPECS[t.name])})
                  if t.name in SPECS else t for t in result.tools]  # fmt: skip
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
        return await inbox_text(node)

    async def status() -> str:
        return await status_text(node, front_stats)

    inbox_help = "Unread mailbox notes (subscribe: updated when a note arrives)"
    add_resource(server, INBOX_URI, "inbox", inbox_help, inbox)
    add_resource(server, STATUS_URI, "status", "This node's status", status)
    legacy = serve_legacy_subscriptions(server, {INBOX_URI, STATUS_URI})
    node.on_mail(
        lambda note: node.spawn(lambda: publish_resource_updated(server, INBOX_URI, legacy))
    )
    # a queued A2A message delivered (or expired): the inbox lists it under outbox_replies
    node.outbox().listen(
        lambda delivery: node.spawn(lambda: publish_resource_updated(server, INBOX_URI, legacy))
    )
    return server
