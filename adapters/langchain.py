"""LangChain: the A2AL tools as LangChain ``BaseTool``s over one long-lived node, and a
runnable (or LangGraph graph) served as an A2A agent.

::

    async with A2ALToolkit(config=NodeConfig(...)) as kit:
        agent = create_agent(model, kit.get_tools())      # discover, resolve, call_agent, ...

``await kit.remote_tools(aid)`` loads another agent's MCP tools (an agent exposing an MCP
server over A2AL, found e.g. with ``discover(topic, protocols=["mcp"])``) as LangChain tools,
as langchain-mcp-adapters does for local servers: each tool's name, description and
``inputSchema``, its call through ``call_remote_tool`` on the toolkit's node (one warm MCP
session per remote agent), its result as content blocks with the structured content as the
artifact.

The tools are rendered from :data:`a2al_mcp.TOOLS`, the catalogue the MCP server renders, so
names, descriptions and argument schemas are the same everywhere. A failed call does not raise
into the agent loop: the model reads ``CODE: message`` (``ToolException`` with
``handle_tool_error``). Sync ``invoke`` works from any thread except the one running the node's
loop (it goes through the toolkit's portal); ``with A2ALToolkit(...)`` runs the node on a
background loop for sync programs.

Needs the ``langchain`` extra: ``pip install "a2al-mcp[langchain]"``; :func:`serve_runnable`
also needs the ``a2a`` extra.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

try:
    from langchain_core.tools import BaseTool, StructuredTool, ToolException
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        'a2al_mcp.adapters.langchain needs langchain-core: pip install "a2al-mcp[langchain]"'
    ) from exc
from pydantic import PrivateAttr, ValidationError

from a2al_mcp import ToolFailure

from ._toolkit import NodeToolkit, args_model, tool_metadata

if TYPE_CHECKING:
    from a2a.types import AgentCard
    from langchain_core.callbacks import (
        AsyncCallbackManagerForToolRun,
        CallbackManagerForToolRun,
    )

    from a2al_mcp import Aid, Node, ToolSpec

    from .a2a import ServedAgent

__all__ = ["A2ALTool", "A2ALToolkit", "remote_tool", "serve_runnable"]


def _validation_message(exc: Any) -> str:
    if isinstance(exc, ValidationError):
        return str(ToolFailure.bad_arguments(exc))
    return f"BAD_ARGUMENTS: {exc}"


class A2ALTool(BaseTool):
    """One catalogue verb as a LangChain tool, bound to a toolkit's node."""

    handle_tool_error: bool = True
    handle_validation_error: Callable[[Any], str] = _validation_message
    _toolkit: NodeToolkit = PrivateAttr()

    @classmethod
    def from_spec(cls, spec: ToolSpec, toolkit: NodeToolkit) -> A2ALTool:
        tool = cls(name=spec.name, description=spec.description, args_schema=args_model(spec),
                   metadata=tool_metadata(spec))  # fmt: skip
        tool._toolkit = toolkit
        return tool

    def _run(
        self, run_manager: CallbackManagerForToolRun | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            return self._toolkit.call(self.name, kwargs)
        except ToolFailure as exc:
            raise ToolException(str(exc)) from None

    async def _arun(
        self, run_manager: AsyncCallbackManagerForToolRun | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            return await self._toolkit.acall(self.name, kwargs)
        except ToolFailure as exc:
            raise ToolException(str(exc)) from None


class A2ALToolkit(NodeToolkit):
    """LangChain tools over one A2AL node; an async (or sync) context manager.

    ``A2ALToolkit(config=...)`` opens and owns a node; ``A2ALToolkit(node)`` wraps one the
    caller runs. ``tools=["discover", "call_agent"]`` renders a subset. See
    :class:`a2al_mcp.adapters._toolkit.NodeToolkit` for how calls reach the node.
    """

    def get_tools(self) -> list[BaseTool]:
        """One tool per catalogue entry (same name, description and argument schema)."""
        return [A2ALTool.from_spec(spec, self) for spec in self.specs]

    async def remote_tools(self, aid: Aid | str, *, prefix: str = "") -> list[BaseTool]:
        """Agent ``aid``'s MCP tools (every tool of the MCP server it exposes over A2AL) as
        LangChain tools: see :func:`remote_tool`. ``prefix`` is put before each name (to keep
        tools of two agents apart).

        Raises:
            ToolFailure: the tools could not be listed (``ACCESS_DENIED``, ``UNREACHABLE``,
                ``AGENT_ERROR``…; the code and message of the ``remote_tools`` tool).
        """
        listed = await self.acall("remote_tools", {"aid": str(aid)})
        return [remote_tool(self, str(aid), tool, name=prefix + str(tool["name"]))
                for tool in listed["tools"]]  # fmt: skip


def _content_block(block: dict[str, Any]) -> dict[str, Any]:
    """An MCP content block (JSON) as a LangChain content block, as langchain-mcp-adapters
    converts it (text, image, resource link, embedded resource; audio has no block)."""
    from langchain_core.messages.content import (
        create_file_block,
        create_image_block,
        create_text_block,
    )

    kind = block.get("type")
    mime = block.get("mimeType") or None
    image = bool(mime and str(mime).startswith("image/"))
    if kind == "text":
        return dict(create_text_block(text=str(block.get("text", ""))))
    if kind == "image":
        return dict(create_image_block(base64=block["data"], mime_type=mime))
    if kind == "resource_link":
        make = create_image_block if image else create_file_block
        return dict(make(url=str(block["uri"]), mime_type=mime))
    if kind == "resource":
        resource = block.get("resource") or {}
        mime = resource.get("mimeType") or None
        if "text" in resource:
            return dict(create_text_block(text=str(resource["text"])))
        make = create_image_block if mime and str(mime).startswith("image/") else create_file_block
        return dict(make(base64=resource.get("blob", ""), mime_type=mime))
    raise ToolException(f"the remote tool answered a {kind!r} content block, which LangChain "
                        "messages do not carry")  # fmt: skip


def remote_tool(toolkit: NodeToolkit, aid: str, tool: dict[str, Any], *,
                name: str | None = None) -> BaseTool:  # fmt: skip
    """One remote MCP tool (``tool``: its listing as ``remote_tools`` gives it) as a LangChain
    ``StructuredTool`` calling it on agent ``aid`` through ``toolkit``'s node.

    Its argument schema is the tool's ``inputSchema`` (the remote server checks the
    arguments); its metadata the tool's annotations, ``_meta`` and ``aid``. It answers
    ``content_and_artifact``: the content as LangChain content blocks, the artifact
    ``{"structured_content": …}`` when the server gave structured content (None otherwise),
    as langchain-mcp-adapters does. A failure (the remote tool's error, or the A2AL path's)
    is a ``ToolException`` whose text (``CODE: message``) the model reads.
    """
    remote_name = str(tool["name"])

    def arguments_of(kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"aid": aid, "tool": remote_name, "arguments": kwargs}

    def result_of(out: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        blocks = [_content_block(b) for b in out.get("content") or []]
        structured = out.get("structured_content")
        return blocks, None if structured is None else {"structured_content": structured}

    def run(**kwargs: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        try:
            return result_of(toolkit.call("call_remote_tool", arguments_of(kwargs)))
        except ToolFailure as exc:
            raise ToolException(str(exc)) from None

    async def arun(**kwargs: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        try:
            return result_of(await toolkit.acall("call_remote_tool", arguments_of(kwargs)))
        except ToolFailure as exc:
            raise ToolException(str(exc)) from None

    annotations = tool.get("annotations") or {}
    metadata: dict[str, Any] = {**annotations, "aid": aid}
    if tool.get("_meta") is not None:
        metadata["_meta"] = tool["_meta"]
    schema = tool.get("inputSchema") or {"type": "object", "properties": {}}
    return StructuredTool(name=name or remote_name, description=str(tool.get("description") or ""),
                          args_schema=schema, func=run, coroutine=arun,
                          response_format="content_and_artifact", metadata=metadata,
                          handle_tool_error=True)  # fmt: skip


def _message_input(text: str) -> dict[str, Any]:
    from langchain_core.messages import HumanMessage

    return {"messages": [HumanMessage(content=text)]}


def _wants_messages(runnable: Any) -> bool:
    try:
        schema = runnable.get_input_jsonschema()
    except Exception:  # a runnable that cannot describe its input takes the text
        return False
    return isinstance(schema, dict) and "messages" in (schema.get("properties") or {})


def output_text(output: Any) -> str:
    """The text of what a runnable returned: a string, a message, or a graph state whose last
    message is the answer (``{"messages": [..., AIMessage]}``)."""
    from langchain_core.messages import BaseMessage

    if isinstance(output, dict) and isinstance(output.get("messages"), list) and output[
            "messages"]:  # fmt: skip
        output = output["messages"][-1]
    if isinstance(output, BaseMessage):
        return str(output.text)
    if isinstance(output, dict) and isinstance(output.get("output"), str):
        return str(output["output"])
    return output if isinstance(output, str) else str(output)


async def serve_runnable(
    node: Node,
    runnable: Any,
    card: AgentCard,
    *,
    to_input: Callable[[str], Any] | None = None,
    to_text: Callable[[Any], str] = output_text,
    aid: Aid | None = None,
    topics: Sequence[str] | None = None,
    publish: bool = True,
    allow: Sequence[Aid] | None = None,
    deny: Sequence[Aid] = (),
    token: str | None = None,
) -> ServedAgent:
    """Serve a LangChain runnable or LangGraph graph as an A2A agent on an A2AL identity.

    Each A2A message becomes one ``await runnable.ainvoke(to_input(text), config)``; the
    reply is a completed task whose artifact is ``to_text(output)`` (a failure becomes a
    failed task with the error). The default input is the text itself, or
    ``{"messages": [HumanMessage(text)]}`` when the runnable's input has a ``messages`` field
    (a LangGraph agent). ``config`` carries ``configurable.thread_id`` = the A2A context id
    (a graph with a checkpointer continues the conversation) and, in ``metadata``, the verified
    caller AID (``a2al_caller``) and the A2A task and context ids.

    The other arguments are those of :func:`a2al_mcp.adapters.a2a.serve_a2a` (the card's
    skills become discoverable topics by default). Needs the ``a2a`` extra.
    """
    from ._serving import AgentCall, serve_text_agent

    make_input = to_input or (_message_input if _wants_messages(runnable) else (lambda t: t))

    async def answer(call: AgentCall) -> str:
        config = {
            "configurable": {"thread_id": call.context_id},
            "metadata": {"a2al_caller": call.caller, "a2a_task_id": call.task_id,
                         "a2a_context_id": call.context_id},
        }  # fmt: skip
        return to_text(await runnable.ainvoke(make_input(call.text), config=config))

    return await serve_text_agent(node, answer, card, aid=aid, topics=topics, publish=publish,
                                  allow=allow, deny=deny, token=token)  # fmt: skip
