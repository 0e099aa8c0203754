"""A real a2a-sdk agent for the tests: echoes, streams a task word by word, or works until
cancelled; it records the verified caller AID it was given."""

from __future__ import annotations

from typing import Any

import anyio
from a2a.helpers.proto_helpers import get_message_text, new_task, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentSkill, Part, TaskState
from a2al_mcp.adapters.a2a import CALLER_KEY, serve_a2a

from a2al_mcp import Aid, Node


class DemoExecutor(AgentExecutor):
    """``task a b c``: a task streaming one artifact chunk per word (after the first chunk it
    waits for ``release``); ``wait``: a task that works until cancelled; anything else: a
    message with the text and the caller's verified AID."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.callers: list[Any] = []

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        caller = context.call_context.state.get(CALLER_KEY) if context.call_context else None
        self.callers.append(caller)
        text = get_message_text(context.message) if context.message else ""
        if not text.startswith(("task ", "wait")):
            await event_queue.enqueue_event(new_text_message(f"echo {text} from {caller}"))
            return
        task_id, ctx_id = context.task_id or "", context.context_id or ""
        if context.current_task is None:
            submitted = new_task(task_id, ctx_id, TaskState.TASK_STATE_SUBMITTED,
                                 history=[context.message])  # fmt: skip
            await event_queue.enqueue_event(submitted)
        updater = TaskUpdater(event_queue, task_id, ctx_id)
        await updater.start_work()
        if text == "wait":
            await anyio.sleep_forever()
        words = text.split()[1:]
        for i, word in enumerate(words):
            await updater.add_artifact([Part(text=word)], artifact_id="words", append=i > 0,
                                       last_chunk=i == len(words) - 1)  # fmt: skip
            if i == 0:
                await self.release.wait()
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(event_queue, context.task_id or "", context.context_id or "").cancel()


def card(skill: str = "demo.echo") -> AgentCard:
    return AgentCard(
        name="demo", description="echoes and streams", version="1.0",
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"], default_output_modes=["text/plain"],
        skills=[AgentSkill(id=skill, name="echo", description="echo text", tags=["echo"])],
    )  # fmt: skip


async def serve_demo(
    node: Node, skill: str = "demo.echo", *, aid: Aid | None = None
) -> DemoExecutor:
    executor = DemoExecutor()
    handler = DefaultRequestHandler(executor, InMemoryTaskStore(), card(skill))
    await serve_a2a(node, handler, card(skill), aid=aid)
    return executor
