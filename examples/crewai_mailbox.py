"""A CrewAI crew finds a translator on the A2AL network by capability, asks it for a
translation, and leaves the result as a mailbox note for a friend.

Three nodes run in this process on loopback UDP (no internet, no open TCP port):

- a *translator*: itself a CrewAI crew, served as an A2A agent with ``serve_crew`` under the
  capability ``lang.translate``;
- a *friend*, who only receives the note;
- *me*: a crew whose agent has the A2AL tools of ``A2ALCrewToolkit`` (one node for every call).

Without an LLM key both crews are driven by a scripted LLM that answers in CrewAI's
Thought/Action/Observation format, as a model would: discover → resolve → call_agent →
send_mailbox, reading each tool's result. ``A2AL_EXAMPLE_MODEL=provider/model`` uses a real
model for *me* instead (CrewAI's ``LLM``, which needs the provider's key).

    python examples/crewai_mailbox.py

Needs ``pip install "a2al-mcp[crewai,a2a]"`` (in its own environment: CrewAI pins mcp<2).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from typing import Any

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")  # this example stays on loopback
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

import anyio
from a2a.types import AgentCapabilities, AgentCard, AgentSkill
from a2al_mcp.adapters.crewai import A2ALCrewToolkit, serve_crew
from crewai import Agent, Crew, Task
from crewai.llms.base_llm import BaseLLM

from a2al_mcp import Node, NodeConfig

WORDS = {"hello": "bonjour", "world": "monde", "friend": "ami", "good": "bon", "day": "jour"}
AID_RE = re.compile(r"\b[aA]0[0-9a-fA-F]{40}\b")
STEP_RE = re.compile(r"Action: (\S+)\s*\nAction Input: .*?\nObservation: (.*)", re.DOTALL)


def translate(text: str) -> str:
    words = re.findall(r"[\w']+", text.split(":", 1)[-1].lower())
    return " ".join(WORDS.get(w, w) for w in words)


class ScriptedLLM(BaseLLM):
    """Stands in for a model: reads the task and the tool observations so far and answers in
    CrewAI's ReAct format. Subclasses say what to do next in :meth:`next_step`."""

    def __init__(self) -> None:
        super().__init__(model="scripted")

    def call(self, messages: Any, tools: Any = None, callbacks: Any = None,
             available_functions: Any = None, from_task: Any = None, from_agent: Any = None,
             response_model: Any = None) -> str:  # fmt: skip
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        task = next(str(m["content"]) for m in messages if "Current Task:" in str(m["content"]))
        task = task.split("Current Task:", 1)[1].split("\n\nThis is the expected", 1)[0]
        steps = [m.groups() for msg in messages if msg.get("role") == "assistant"
                 for m in [STEP_RE.search(str(msg.get("content", "")))] if m]  # fmt: skip
        return self.next_step(task.strip(), steps)

    def next_step(self, task: str, steps: list[tuple[str, str]]) -> str:
        raise NotImplementedError

    def supports_function_calling(self) -> bool:
        return False

    def supports_stop_words(self) -> bool:
        return False

    def get_context_window_size(self) -> int:
        return 32_000


def _action(name: str, args: dict[str, Any]) -> str:
    return f"Thought: next, {name}\nAction: {name}\nAction Input: {json.dumps(args)}"


def _final(text: str) -> str:
    return f"Thought: I now know the final answer\nFinal Answer: {text}"


class CourierLLM(ScriptedLLM):
    """discover → resolve → call_agent → send_mailbox, then the final answer."""

    def next_step(self, task: str, steps: list[tuple[str, str]]) -> str:
        friend = AID_RE.findall(task)[-1]
        text = re.findall(r"'([^']+)'", task)[0]
        if not steps:
            return _action("discover", {"service": "lang.translate", "protocols": ["a2a"]})
        name, observation = steps[-1]
        try:  # the tool's JSON (CrewAI may append text after it)
            result, _end = json.JSONDecoder().raw_decode(observation.strip())
        except ValueError:  # a failure the tool reported, in words
            return _final(f"I could not finish: {observation.strip()}")
        if name == "discover":
            if not result["agents"]:
                return _final("No translator is online.")
            return _action("resolve", {"aid": result["agents"][0]["aid"]})
        if name == "resolve":
            return _action("call_agent", {"to": result["aid"],
                                          "text": f"Translate into French: {text}"})  # fmt: skip
        if name == "call_agent":
            note = f"Translation of '{text}': {result['text']}"
            return _action("send_mailbox", {"to": friend, "text": note})
        return _final(f"Left note {result['message_id'][:12]} ({result['delivered']}).")


class TranslatorLLM(ScriptedLLM):
    def next_step(self, task: str, steps: list[tuple[str, str]]) -> str:
        return _final(translate(task.split("Request:", 1)[-1]))


def translator_crew() -> Crew:
    agent = Agent(role="Translator", goal="Translate English text into French",
                  backstory="A careful bilingual editor.", llm=TranslatorLLM())  # fmt: skip
    task = Task(description="Translate what the caller ({caller}) asks. Request: {request}",
                expected_output="The French text only.", agent=agent)  # fmt: skip
    return Crew(agents=[agent], tasks=[task])


def courier_crew(tools: list[Any], llm: Any = None) -> Crew:
    agent = Agent(role="Courier", goal="Get text translated by an agent on the A2AL network "
                  "and deliver it to a friend's mailbox", backstory="Knows the A2AL network: "
                  "discover finds agents by capability, call_agent talks to them, send_mailbox "
                  "leaves notes.", llm=llm or CourierLLM(), tools=tools)  # fmt: skip
    task = Task(description="{request}", expected_output="What was delivered, to whom.",
                agent=agent)  # fmt: skip
    return Crew(agents=[agent], tasks=[task])


translator_card = AgentCard(
    name="crew-translator", description="A CrewAI crew that translates English into French.",
    version="1.0", capabilities=AgentCapabilities(streaming=False),
    default_input_modes=["text/plain"], default_output_modes=["text/plain"],
    skills=[AgentSkill(id="lang.translate", name="translate", tags=["en", "fr"],
                       description="English to French")],
)  # fmt: skip


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


async def demo(llm: Any = None) -> dict[str, Any]:
    """Run the whole scene; returns the crew's output, its tool calls and the friend's notes."""
    async with loopback_network(3) as (friend, translator, me):
        await serve_crew(translator, translator_crew(), translator_card)
        arrived = anyio.Event()
        friend.on_mail(lambda note: arrived.set())
        async with A2ALCrewToolkit(me) as kit:
            crew = courier_crew(kit.get_tools(), llm)
            request = (
                "Translate 'hello world' into French with an agent that offers lang.translate, "
                f"and leave the result in the mailbox of {friend.aid}."
            )
            output = await crew.kickoff_async(inputs={"request": request})  # tools run in a thread
        with anyio.move_on_after(10):  # a direct delivery may still be in flight
            await arrived.wait()
        notes = await friend.read_mailbox()
        return {"output": output.raw, "notes": notes, "me": me.aid, "friend": friend.aid,
                "translator": translator.aid}  # fmt: skip


def main() -> None:
    llm = None
    if os.environ.get("A2AL_EXAMPLE_MODEL"):
        from crewai import LLM

        llm = LLM(model=os.environ["A2AL_EXAMPLE_MODEL"])
    result = anyio.run(demo, llm)
    print(f"crew: {result['output']}")
    for note in result["notes"]:
        print(f"friend's mailbox: {note.text!r} from {note.sender}")


if __name__ == "__main__":
    main()
