"""LangChain adapter: tools rendered from the catalogue over one node (async, sync, from
threads, errors as text), the schema snapshot shared with MCP and CrewAI, an agent loop driven
by a scripted chat model on a 3-node loopback network, a served runnable and a served LangGraph
graph answering call_agent, and 1,000 calls through one node."""

from __future__ import annotations

import importlib
import json
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("langchain_core", reason="needs the langchain extra (langchain-core)")
pytest.importorskip("a2a", reason="needs the a2a extra (a2a-sdk)")

from a2a.types import AgentCapabilities, AgentCard, AgentSkill
from a2al_mcp.adapters.langchain import A2ALToolkit, output_text, serve_runnable
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.utils.function_calling import convert_to_openai_tool

from a2al_mcp import TOOLS, Node, NodeConfig, UsageError, call_tool
from tests.adapters import schema_snapshot
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def card(skill: str, name: str = "agent") -> AgentCard:
    return AgentCard(
        name=name, description=f"{name} for tests", version="1.0",
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"], default_output_modes=["text/plain"],
        skills=[AgentSkill(id=skill, name=skill, description=skill, tags=["test"])],
    )  # fmt: skip


# -- the schema snapshot -----------------------------------------------------------------------


async def test_mcp_and_langchain_render_every_tool_as_the_snapshot() -> None:
    async with network(1) as (node,):
        schema_snapshot.check(await schema_snapshot.mcp_rendering(node), source="mcp")
        async with A2ALToolkit(node) as kit:
            rendered = {}
            for tool in kit.get_tools():
                fn = convert_to_openai_tool(tool)["function"]  # what a chat model is sent
                rendered[fn["name"]] = schema_snapshot.entry(fn["description"], fn["parameters"])
            schema_snapshot.check(rendered, source="langchain")
    assert list(schema_snapshot.expected()) == [spec.name for spec in TOOLS]


# -- invocation ------------------------------------------------------------------------------


async def test_async_sync_threads_and_errors_the_model_can_read() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (other, me), A2ALToolkit(me) as kit:
            tools = {t.name: t for t in kit.get_tools()}
            assert list(tools) == [spec.name for spec in TOOLS]
            assert (await tools["status"].ainvoke({}))["aid"] == str(me.aid)
            # sync, from a worker thread: through the portal onto the node's loop
            got = await anyio.to_thread.run_sync(tools["resolve"].invoke, {"aid": str(other.aid)})
            assert got["aid"] == str(other.aid) and got["endpoints"]
            # sync on the loop's own thread would deadlock: refused with a clear error
            with pytest.raises(UsageError, match="async form"):
                tools["status"].invoke({})
            # failures are text for the model, never exceptions into the agent loop
            assert (await tools["resolve"].ainvoke({"aid": "nope"})).startswith("BAD_AID: ")
            bad = await tools["discover"].ainvoke({"service": "x", "limit": 0})
            assert bad == "BAD_ARGUMENTS: limit: Input should be greater than or equal to 1"
            both = await tools["call_agent"].ainvoke({"text": "hi"})
            assert both.startswith("BAD_ARGUMENTS: ") and "exactly one of to" in both
            msg = await tools["resolve"].ainvoke(
                {"type": "tool_call", "id": "c1", "name": "resolve", "args": {"aid": "nope"}}
            )
            assert isinstance(msg, ToolMessage) and msg.status == "error"
            assert str(msg.content).startswith("BAD_AID: ")
            ok = await tools["send_mailbox"].ainvoke({"type": "tool_call", "id": "c2",
                "name": "send_mailbox", "args": {"to": str(other.aid), "text": "hi"}})  # fmt: skip
            assert ok.status == "success" and json.loads(ok.content)["message_id"]
        assert await tools["status"].ainvoke({}) == (
            "NODE_CLOSED: the A2AL toolkit is not open (or already closed)"
        )


async def test_a_subset_and_a_call_from_another_event_loop() -> None:
    async with network(1) as (node,), A2ALToolkit(node, tools=["status", "resolve"]) as kit:
        tools = kit.get_tools()
        assert [t.name for t in tools] == ["status", "resolve"]

        def other_loop() -> Any:  # a second event loop in a worker thread
            return anyio.run(tools[0].ainvoke, {})

        assert (await anyio.to_thread.run_sync(other_loop))["aid"] == str(node.aid)
    with pytest.raises(ValueError, match="no such tools: nope"):
        A2ALToolkit(tools=["nope"])


def test_with_runs_the_node_on_a_background_loop_for_sync_programs() -> None:
    with A2ALToolkit(config=NodeConfig(listen_addr="127.0.0.1:0")) as kit:
        tools = {t.name: t for t in kit.get_tools()}
        assert tools["status"].invoke({})["aid"] == str(kit.node.aid)
        results: list[Any] = []
        worker = threading.Thread(target=lambda: results.append(tools["identity_list"].invoke({})))
        worker.start()
        worker.join(30)
        assert results[0]["identities"][0]["aid"] == str(kit.node.aid)
    assert tools["status"].invoke({}).startswith("NODE_CLOSED")


def test_a_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "a2al_mcp.adapters.langchain")
    monkeypatch.setitem(sys.modules, "langchain_core.tools", None)
    with pytest.raises(ImportError, match=r'pip install "a2al-mcp\[langchain\]"'):
        importlib.import_module("a2al_mcp.adapters.langchain")


def test_without_crewai_its_adapter_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "a2al_mcp.adapters.crewai", raising=False)
    monkeypatch.setitem(sys.modules, "crewai.tools", None)
    with pytest.raises(ImportError, match=r'pip install "a2al-mcp\[crewai\]"'):
        importlib.import_module("a2al_mcp.adapters.crewai")


# -- the agent loop (the example, in its scripted test mode) ---------------------------------


async def test_scripted_agent_discovers_resolves_calls_and_leaves_a_note() -> None:
    example = load_example("langchain_translator.py")
    with anyio.fail_after(90):
        result = await example.demo()
    messages = result["messages"]
    calls = [m.tool_calls[0] for m in messages if isinstance(m, AIMessage) and m.tool_calls]
    assert [c["name"] for c in calls] == ["discover", "resolve", "call_agent", "send_mailbox"]
    outputs = {m.name: m for m in messages if isinstance(m, ToolMessage)}
    assert all(m.status == "success" for m in outputs.values())
    found = json.loads(outputs["discover"].content)["agents"]
    assert [a["aid"] for a in found] == [str(result["translator"])]
    assert json.loads(outputs["resolve"].content)["endpoints"]
    reply = json.loads(outputs["call_agent"].content)
    assert reply["agent"] == str(result["translator"]) and reply["kind"] == "task"
    assert reply["task"]["state"] == "completed" and reply["text"] == "bonjour monde"
    assert json.loads(outputs["send_mailbox"].content)["delivered"]
    assert isinstance(messages[-1], AIMessage) and messages[-1].content.startswith("Done")
    [note] = result["notes"]
    assert note.sender == result["me"]
    assert note.text == "Translation of 'hello world': bonjour monde"


async def test_the_example_script_runs() -> None:
    with anyio.fail_after(120):
        proc = await anyio.run_process([sys.executable, str(ROOT / "examples" /
                                        "langchain_translator.py")], check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert b"friend's mailbox: \"Translation of 'hello world': bonjour monde\"" in proc.stdout


# -- serving ---------------------------------------------------------------------------------


async def test_served_runnable_and_graph_answer_call_agent() -> None:
    pytest.importorskip("langgraph", reason="needs langgraph (in the dev extra)")
    from langgraph.graph import START, MessagesState, StateGraph

    seen: list[dict[str, Any]] = []

    def shout(text: str, config: Any) -> str:
        seen.append(dict(config["metadata"]) | dict(config["configurable"]))
        return text.upper()

    def respond(state: MessagesState) -> dict[str, Any]:
        last = state["messages"][-1]
        return {"messages": [AIMessage(content=f"graph got {last.content!r}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    graph = builder.compile()

    def broken(text: str) -> str:
        raise RuntimeError("no model configured")

    with anyio.fail_after(90):
        async with network(3, publish=True) as (runner, grapher, caller):
            await serve_runnable(runner, RunnableLambda(shout), card("text.shout"))
            await serve_runnable(grapher, graph, card("text.graph"))
            await serve_runnable(grapher, RunnableLambda(broken), card("text.broken"),
                                 aid=grapher.create_agent().identity.aid)  # fmt: skip
            got = await call_tool(caller, "call_agent", {"to": str(runner.aid), "text": "hi"})
            assert got["kind"] == "task" and got["task"]["state"] == "completed"
            assert got["text"] == "HI" and got["agent"] == str(runner.aid)
            [meta] = seen
            assert meta["a2al_caller"] == str(caller.aid)
            assert meta["thread_id"] == meta["a2a_context_id"] == got["task"]["context_id"]
            got = await call_tool(caller, "call_agent", {"skill": "text.graph", "text": "yo"})
            assert got["agent"] == str(grapher.aid) and got["text"] == "graph got 'yo'"
            got = await call_tool(caller, "call_agent", {"skill": "text.broken", "text": "x"})
            assert got["task"]["state"] == "failed"
            assert got["text"] == "the agent failed: RuntimeError: no model configured"


def test_output_text_reads_strings_messages_and_graph_states() -> None:
    assert output_text("a") == "a"
    assert output_text(AIMessage(content="b")) == "b"
    assert output_text({"messages": [HumanMessage(content="q"), AIMessage(content="c")]}) == "c"
    assert output_text({"output": "d"}) == "d"
    assert output_text(42) == "42"


# -- one node, many calls ----------------------------------------------------------------------


async def test_a_thousand_calls_reuse_one_node(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Node] = []
    real_aenter = Node.__aenter__

    async def counting_aenter(self: Node) -> Node:
        opened.append(self)
        return await real_aenter(self)

    monkeypatch.setattr(Node, "__aenter__", counting_aenter)
    with anyio.fail_after(240):
        async with network(2, publish=True) as (seed, other):
            assert len(opened) == 2
            cfg = NodeConfig(
                listen_addr="127.0.0.1:0", bootstrap=("{}:{}".format(*seed.local_addr),)
            )
            async with A2ALToolkit(config=cfg) as kit:
                assert len(opened) == 3 and opened[-1] is kit.node
                tools = {t.name: t for t in kit.get_tools()}
                for i in range(1000):
                    if i % 2:
                        got = await tools["resolve"].ainvoke({"aid": str(other.aid)})
                        assert got["aid"] == str(other.aid)
                    else:
                        assert (await tools["status"].ainvoke({}))["aid"] == str(kit.node.aid)
                assert len(opened) == 3  # no node per call
                assert kit.node.status().peers >= 1


async def test_langchain_tools_share_the_result_models_and_keep_secrets_from_the_model() -> None:
    from a2al_mcp.toolspec import TOOLS

    async with network(1) as (node,), A2ALToolkit(node) as kit:
        tools = {t.name: t for t in kit.get_tools()}
        for spec in TOOLS:
            meta = tools[spec.name].metadata or {}
            assert meta["title"] == spec.title and meta["result_model"] is spec.result_model
            assert "unread_mail" in meta["result_schema"]["properties"], spec.name
            assert None not in (meta["destructive"], meta["idempotent"], meta["open_world"])
        out = await tools["status"].ainvoke({})
        assert out["unread_mail"] == 0 and spec_result("status", out)
        made = await tools["identity_create"].ainvoke({})
        assert "owner_key_file" in made and "master_private_key_hex" not in made
        text = await tools["identity_export"].ainvoke({"aid": made["aid"]})
        assert text.startswith("USAGE: ") and "a2al-mcp identity export" in text


def spec_result(name: str, out: dict[str, Any]) -> bool:
    """``out`` is a valid result of tool ``name`` (its model validates it)."""
    from a2al_mcp.toolspec import tool

    tool(name).result_model.model_validate(out)
    return True
