"""Serve "text in, text out" as an A2A agent over A2AL: the a2a-sdk executor behind
:func:`~a2al_mcp.adapters.langchain.serve_runnable` and
:func:`~a2al_mcp.adapters.crewai.serve_crew`.

Every message starts a task: ``working``, then ``completed`` with the answer as an artifact, or
``failed`` with the error as the status message. ``CancelTask`` cancels the running answer.
Needs the ``a2a`` extra.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import anyio
from a2a.helpers.proto_helpers import get_message_text, new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCard

from .a2a import CALLER_KEY, ServedAgent, card_for, serve_a2a

if TYPE_CHECKING:
    from a2al_mcp import Aid, Node

__all__ = ["AgentCall", "TextAgentExecutor", "serve_text_agent"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class AgentCall:
    """One incoming A2A message, as the served runnable or crew sees it."""

    text: str
    """The text parts of the message."""
    caller: str | None
    """The caller's verified AID (text), from the QUIC connection; None if unknown."""
    task_id: str
    context_id: str


Answer = Callable[[AgentCall], Awaitable[str]]


class TextAgentExecutor(AgentExecutor):
    """An a2a-sdk executor that answers each message with ``await answer(call)``."""

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self._running: dict[str, anyio.CancelScope] = {}

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        if message is None:  # pragma: no cover - the SDK always passes the message
            return
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        state = context.call_context.state if context.call_context else {}
        call = AgentCall(get_message_text(message), state.get(CALLER_KEY), task.id,
                         task.context_id)  # fmt: skip
        with anyio.CancelScope() as scope:
            self._running[task.id] = scope
            try:
                text = await self._answer(call)
            except Exception as exc:
                logger.warning("agent.answer_failed task=%s error=%r", task.id, exc)
                reason = f"the agent failed: {type(exc).__name__}: {exc}"[:500]
                await updater.failed(updater.new_agent_message([new_text_part(reason)]))
                return
            finally:
                self._running.pop(task.id, None)
        if scope.cancelled_caught:
            return  # cancel() reported it
        await updater.add_artifact([new_text_part(text)], name="answer")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id = context.task_id or ""
        scope = self._running.pop(task_id, None)
        if scope is not None:
            scope.cancel()
        await TaskUpdater(event_queue, task_id, context.context_id or "").cancel()


async def serve_text_agent(
    node: Node,
    answer: Answer,
    card: AgentCard,
    *,
    aid: Aid | None = None,
    topics: Sequence[str] | None = None,
    publish: bool = True,
    allow: Sequence[Aid] | None = None,
    deny: Sequence[Aid] = (),
    token: str | None = None,
) -> ServedAgent:
    """Serve ``answer`` as an A2A agent (see :func:`a2al_mcp.adapters.a2a.serve_a2a`)."""
    served = card_for(card, aid or node.aid)  # the handler wants the card as served
    handler = DefaultRequestHandler(TextAgentExecutor(answer), InMemoryTaskStore(), served)
    return await serve_a2a(node, handler, served, aid=aid, topics=topics, publish=publish,
                           allow=allow, deny=deny, token=token)  # fmt: skip
