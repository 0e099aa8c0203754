"""CrewAI: the A2AL tools as CrewAI ``BaseTool``s over one long-lived node, and a crew served
as an A2A agent.

::

    with A2ALCrewToolkit(config=NodeConfig(...)) as kit:     # the node runs on its own loop
        agent = Agent(role=..., goal=..., backstory=..., tools=kit.get_tools())
        Crew(agents=[agent], tasks=[...]).kickoff()

CrewAI calls a tool's sync ``_run`` (from its worker threads); every call goes through the
toolkit's one portal onto the node's loop: never ``asyncio.run`` per call, never a node per
call. ``async with A2ALCrewToolkit(...)`` runs the node on the current loop instead; then call
``crew.kickoff`` in a thread (``kickoff_async`` does). Names, descriptions and argument schemas
come from :data:`a2al_mcp.TOOLS`, as for MCP and LangChain. A failed call returns CrewAI's
``ToolFailure`` (the agent reads ``message (code: CODE)``) instead of raising.

Needs the ``crewai`` extra: ``pip install "a2al-mcp[crewai]"`` (CrewAI pins ``mcp<2`` and
``pydantic<2.13``; it is large and its import takes seconds, so nothing imports this module
unless you do). :func:`serve_crew` also needs the ``a2a`` extra.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

try:
    from crewai.tools import BaseTool as CrewBaseTool
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        'a2al_mcp.adapters.crewai needs CrewAI: pip install "a2al-mcp[crewai]"'
    ) from exc
import anyio
from pydantic import PrivateAttr

from a2al_mcp import ToolFailure

from ._toolkit import NodeToolkit, args_model

try:  # CrewAI's structured failure report (newer releases); text otherwise
    from crewai.tools.tool_failure import ToolFailure as CrewToolFailure
except ImportError:  # pragma: no cover
    CrewToolFailure = None

if TYPE_CHECKING:
    from a2a.types import AgentCard

    from a2al_mcp import Aid, Node, ToolSpec

    from ._serving import AgentCall
    from .a2a import ServedAgent

__all__ = ["A2ALCrewTool", "A2ALCrewToolkit", "serve_crew"]

_RETRYABLE = frozenset({"TIMEOUT", "UNREACHABLE", "NETWORK", "CLOSED", "HANDSHAKE"})


def _failure(exc: ToolFailure) -> Any:
    if CrewToolFailure is None:  # pragma: no cover
        return str(exc)
    return CrewToolFailure(message=exc.message, code=exc.code, retryable=exc.code in _RETRYABLE)


class A2ALCrewTool(CrewBaseTool):  # type: ignore[misc]
    """One catalogue verb as a CrewAI tool, bound to a toolkit's node. Returns the result as
    JSON text, or CrewAI's ``ToolFailure`` when the call failed."""

    _toolkit: NodeToolkit = PrivateAttr()

    @classmethod
    def from_spec(cls, spec: ToolSpec, toolkit: NodeToolkit) -> A2ALCrewTool:
        tool = cls(name=spec.name, description=spec.description, args_schema=args_model(spec))
        tool._toolkit = toolkit
        return tool

    def _run(self, **kwargs: Any) -> Any:
        try:
            return json.dumps(self._toolkit.call(self.name, kwargs), ensure_ascii=False)
        except ToolFailure as exc:
            return _failure(exc)

    async def _arun(self, **kwargs: Any) -> Any:
        try:
            return json.dumps(await self._toolkit.acall(self.name, kwargs), ensure_ascii=False)
        except ToolFailure as exc:
            return _failure(exc)


class A2ALCrewToolkit(NodeToolkit):
    """CrewAI tools over one A2AL node; a sync (or async) context manager.

    ``A2ALCrewToolkit(config=...)`` opens and owns a node; ``A2ALCrewToolkit(node)`` wraps one
    the caller runs (enter it with ``async with`` on that node's loop). See
    :class:`a2al_mcp.adapters._toolkit.NodeToolkit` for how calls reach the node.
    """

    def get_tools(self) -> list[A2ALCrewTool]:
        """One tool per catalogue entry (same name, description and argument schema)."""
        return [A2ALCrewTool.from_spec(spec, self) for spec in self.specs]


def _default_inputs(call: AgentCall) -> dict[str, Any]:
    return {"request": call.text, "caller": call.caller or ""}


async def serve_crew(
    node: Node,
    crew: Any,
    card: AgentCard,
    *,
    to_inputs: Callable[[AgentCall], dict[str, Any]] = _default_inputs,
    aid: Aid | None = None,
    topics: Sequence[str] | None = None,
    publish: bool = True,
    allow: Sequence[Aid] | None = None,
    deny: Sequence[Aid] = (),
    token: str | None = None,
) -> ServedAgent:
    """Serve a CrewAI crew as an A2A agent on an A2AL identity.

    Each A2A message runs ``crew.kickoff(inputs=to_inputs(call))`` in a worker thread (one
    run at a time: a crew object keeps state between runs); the reply is a completed task
    whose artifact is the crew's final output (``CrewOutput.raw``), or a failed task with the
    error. By default the inputs are ``{"request": <message text>, "caller": <verified
    caller AID>}``, so task descriptions can say ``{request}``. Tools the crew uses from an
    :class:`A2ALCrewToolkit` on the same node reach it through the toolkit's portal.

    The other arguments are those of :func:`a2al_mcp.adapters.a2a.serve_a2a`. Needs the
    ``a2a`` extra.
    """
    from ._serving import serve_text_agent

    lock = anyio.Lock()

    async def answer(call: AgentCall) -> str:
        kickoff = functools.partial(crew.kickoff, inputs=to_inputs(call))
        async with lock:
            result = await anyio.to_thread.run_sync(kickoff, abandon_on_cancel=True)
        raw = getattr(result, "raw", result)
        return raw if isinstance(raw, str) else str(raw)

    return await serve_text_agent(node, answer, card, aid=aid, topics=topics, publish=publish,
                                  allow=allow, deny=deny, token=token)  # fmt: skip
