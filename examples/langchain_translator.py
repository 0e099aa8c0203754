"""A LangChain agent finds a translator on the A2AL network by capability, calls it, and leaves
the translation in a friend's mailbox.

Three nodes run in this process on loopback UDP (no internet, no open TCP port):

- a *translator*: a LangChain runnable served as an A2A agent with ``serve_runnable``, under
  the capability ``lang.translate``;
- a *friend*, who only receives a mailbox note;
- *me*: an agent whose tools come from ``A2ALToolkit`` (one node, many tool calls).

The agent loop is the plain LangChain tool-calling loop. Without an LLM key it is driven by a
scripted chat model that emits the tool calls a model would (discover → resolve → call_agent →
send_mailbox), reading each tool's result. With ``A2AL_EXAMPLE_MODEL=provider:model`` (and the
``langchain`` package plus the provider's) a real model drives the same loop.

    python examples/langchain_translator.py

Needs ``pip install "a2al-mcp[langchain,a2a]"``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from a2a.types import AgentCapabilities, AgentCard, AgentSkill
from a2al_mcp.adapters.langchain import A2ALToolkit, serve_runnable
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import BaseTool

from a2al_mcp import Node, NodeConfig

WORDS = {"hello": "bonjour", "world": "monde", "friend": "ami", "good": "bon", "day": "jour"}
AID_RE = re.compile(r"\b[aA]0[0-9a-fA-F]{40}\b")


def translate(text: str) -> str:
    """The translator's "model": a word list (a real one would be an LLM chain)."""
    words = re.findall(r"[\w']+", text.split(":", 1)[-1].lower())
    return " ".join(WORDS.get(w, w) for w in words)


def translator_card() -> AgentCard:
    return AgentCard(
        name="word-translator", description="Translates short English text into French.",
        version="1.0", capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"], default_output_modes=["text/plain"],
        skills=[AgentSkill(id="lang.translate", name="translate", tags=["en", "fr"],
                           description="English to French, a few words at a time")],
    )  # fmt: skip


class ScriptedChatModel(BaseChatModel):
    """Stands in for a chat model: picks the next tool call from the conversation so far, the
    way a model would (its only knowledge is the prompt and the tool results)."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        return self

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:  # fmt: skip
        return ChatResult(generations=[ChatGeneration(message=self.next_step(messages))])

    @staticmethod
    def next_step(messages: Sequence[BaseMessage]) -> AIMessage:
        prompt = str(messages[0].content)
        friend = AID_RE.findall(prompt)[-1]
        text = re.findall(r"'([^']+)'", prompt)[0]
        last = messages[-1]
        if not isinstance(last, ToolMessage):
            return _tool_call("discover", {"service": "lang.translate", "protocols": ["a2a"]})
        if last.status == "error":
            return AIMessage(content=f"I could not finish: {last.content}")
        result = json.loads(str(last.content))
        if last.name == "discover":
            if not result["agents"]:
                return AIMessage(content="No translator is online.")
            return _tool_call("resolve", {"aid": result["agents"][0]["aid"]})
        if last.name == "resolve":
            return _tool_call("call_agent", {"to": result["aid"],
                                             "text": f"Translate into French: {text}"})  # fmt: skip
        if last.name == "call_agent":
            note = f"Translation of '{text}': {result['text']}"
            return _tool_call("send_mailbox", {"to": friend, "text": note})
        return AIMessage(content=f"Done: the note is on its way ({result['delivered']}).")


def _tool_call(name: str, args: dict[str, Any]) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call_{name}"}])


async def run_agent(model: Any, tools: list[BaseTool], prompt: str,
                    max_steps: int = 10) -> list[BaseMessage]:  # fmt: skip
    """The LangChain tool-calling loop: ask the model, run the tools it calls, repeat."""
    by_name = {t.name: t for t in tools}
    bound = model.bind_tools(tools)
    messages: list[BaseMessage] = [HumanMessage(content=prompt)]
    for _ in range(max_steps):
        reply = await bound.ainvoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:  # a ToolCall in, a ToolMessage out (errors as text)
            result = await by_name[call["name"]].ainvoke({**call, "type": "tool_call"})
            messages.append(result)
    return messages


@contextlib.asynccontextmanager
async def loopback_network(n: int) -> AsyncIterator[list[Node]]:
    """``n`` published nodes on 127.0.0.1, joined through the first."""
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
        seed = "{}:{}".format(*first.local_addr)
        nodes = [first]
        for _ in range(n - 1):
            cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,))
            nodes.append(await stack.enter_async_context(Node(cfg)))
        for node in nodes:
            await node.publish()
        yield nodes


async def demo(model: Any = None) -> dict[str, Any]:
    """Run the whole scene; returns the transcript and what the friend received."""
    async with loopback_network(3) as (friend, translator, me):
        await serve_runnable(translator, RunnableLambda(translate), translator_card())
        arrived = anyio.Event()
        friend.on_mail(lambda note: arrived.set())
        async with A2ALToolkit(me) as kit:
            prompt = (
                "Translate 'hello world' into French with an agent that offers lang.translate, "
                f"and leave the result in the mailbox of {friend.aid}."
            )
            messages = await run_agent(model or ScriptedChatModel(), kit.get_tools(), prompt)
        with anyio.move_on_after(10):  # a direct delivery may still be in flight
            await arrived.wait()
        notes = await friend.read_mailbox()
        return {"messages": messages, "notes": notes, "me": me.aid, "friend": friend.aid,
                "translator": translator.aid}  # fmt: skip


def main() -> None:
    model = None
    if os.environ.get("A2AL_EXAMPLE_MODEL"):
        from langchain.chat_models import init_chat_model  # type: ignore[import-not-found]

        model = init_chat_model(os.environ["A2AL_EXAMPLE_MODEL"])
    result = anyio.run(demo, model)
    for m in result["messages"]:
        calls = getattr(m, "tool_calls", None)
        shown = calls[0]["name"] + json.dumps(calls[0]["args"]) if calls else str(m.content)
        print(f"{type(m).__name__:>12}: {shown[:150]}")
    for note in result["notes"]:
        print(f"friend's mailbox: {note.text!r} from {note.sender}")


if __name__ == "__main__":
    main()
