"""CrewAI adapter (own venv: CrewAI pins mcp<2 and pydantic<2.13): tools rendered from the
catalogue as the snapshot says (and as MCP 1.x renders them), sync calls through one portal,
failures as CrewAI ``ToolFailure``, a crew driven by a scripted LLM through discover → resolve →
call_agent → send_mailbox on a 3-node loopback network, and a served crew answering
call_agent. ``.ci/run`` runs this with ``A2AL_MCP_REQUIRE_CREWAI=1``, which turns the skip into
a failure."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import anyio
import pytest

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

try:
    with warnings.catch_warnings():  # CrewAI's own import-time deprecations are not ours
        warnings.simplefilter("ignore")
        import crewai  # noqa: F401
        from crewai.tools.tool_failure import ToolFailure as CrewToolFailure
        from crewai.utilities.agent_utils import convert_tools_to_openai_schema
except ImportError:  # pragma: no cover
    if os.environ.get("A2AL_MCP_REQUIRE_CREWAI") == "1":
        pytest.fail("A2AL_MCP_REQUIRE_CREWAI=1 but crewai is not importable", pytrace=False)
    pytest.skip("needs crewai (the crewai venv of .ci/run)", allow_module_level=True)
pytest.importorskip("a2a", reason="needs the a2a extra (a2a-sdk)")

from a2a.types import AgentCapabilities, AgentCard, AgentSkill
from a2al_mcp.adapters.crewai import A2ALCrewToolkit, serve_crew

from a2al_mcp import TOOLS, NodeConfig, UsageError, call_tool
from tests.adapters import schema_snapshot
from tests.node.loopnet import network

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]


def load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FREE_FORM_OBJECTS = {
    "publish": ("meta",),
    "fetch": ("headers",),
    "call_remote_tool": ("arguments",),
}
"""Known divergence, kept as data: CrewAI renders its tools' schemas in OpenAI strict mode,
which has no "object with any keys", so these dict arguments reach a CrewAI model as empty
closed objects (``{"type": "object", "properties": {}, "additionalProperties": false}``). The
tool still accepts them (CrewAI validates with our model), but a model is not told it may."""


async def test_crewai_and_mcp1_render_every_tool_as_the_snapshot() -> None:
    async with network(1) as (node,):
        schema_snapshot.check(await schema_snapshot.mcp_rendering(node), source="mcp")
        async with A2ALCrewToolkit(node) as kit:
            tools = kit.get_tools()
            own = {t.name: schema_snapshot.entry(t.description, t.args_schema.model_json_schema())
                   for t in tools}  # fmt: skip
            schema_snapshot.check(own, source="crewai args_schema")
            schemas, _functions, _names = convert_tools_to_openai_schema(tools)
            want = schema_snapshot.expected()
            sent = {}
            for schema in schemas:  # what CrewAI shows a model (function calling and ReAct)
                fn = schema["function"]
                params = json.loads(json.dumps(fn["parameters"]))
                want_params = want[fn["name"]]["parameters"]
                if fn.get("strict"):  # OpenAI strict mode lists every property as required
                    assert sorted(params["required"]) == sorted(params["properties"])
                    params["required"] = want_params["required"]
                for prop in FREE_FORM_OBJECTS.get(fn["name"], ()):
                    # strict mode cannot say "any keys": CrewAI closes free-form objects
                    assert params["properties"][prop]["additionalProperties"] is False
                    assert params["properties"][prop]["properties"] == {}
                    params["properties"][prop] = want_params["properties"][prop]
                sent[fn["name"]] = schema_snapshot.entry(fn["description"], params)
            schema_snapshot.check(sent, source="crewai function calling")
    assert list(schema_snapshot.expected()) == [spec.name for spec in TOOLS]


async def test_sync_calls_through_the_portal_and_failures_as_tool_failures() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (other, me), A2ALCrewToolkit(me) as kit:
            tools = {t.name: t for t in kit.get_tools()}
            got = await anyio.to_thread.run_sync(lambda: tools["resolve"].run(aid=str(other.aid)))
            assert json.loads(got)["aid"] == str(other.aid)
            structured = tools["status"].to_structured_tool()  # CrewAI's agent path
            got = await anyio.to_thread.run_sync(structured.invoke, {})
            assert json.loads(got)["aid"] == str(me.aid)
            failed = await anyio.to_thread.run_sync(lambda: tools["resolve"].run(aid="nope"))
            assert isinstance(failed, CrewToolFailure) and failed.code == "BAD_AID"
            assert failed.as_agent_message().endswith("(code: BAD_AID)")
            assert json.loads(await tools["status"].arun())["aid"] == str(me.aid)
            with pytest.raises(UsageError, match="async form"):
                tools["status"].run()  # on the node's own loop thread: refused, not deadlocked


def test_with_runs_the_node_on_a_background_loop_for_a_sync_crew() -> None:
    with A2ALCrewToolkit(config=NodeConfig(listen_addr="127.0.0.1:0")) as kit:
        tools = {t.name: t for t in kit.get_tools()}
        assert json.loads(tools["status"].run())["aid"] == str(kit.node.aid)
        out: list[Any] = []
        worker = threading.Thread(target=lambda: out.append(tools["identity_list"].run()))
        worker.start()
        worker.join(30)
        assert json.loads(out[0])["identities"][0]["aid"] == str(kit.node.aid)
    closed = tools["status"].run()
    assert isinstance(closed, CrewToolFailure) and closed.code == "NODE_CLOSED"


async def test_scripted_crew_discovers_resolves_calls_and_leaves_a_note() -> None:
    example = load_example("crewai_mailbox.py")
    actions: list[str] = []

    class Recording(example.CourierLLM):  # type: ignore[misc,name-defined]
        def next_step(self, task: str, steps: list[tuple[str, str]]) -> str:
            reply: str = super().next_step(task, steps)
            actions.append(reply.split("Action: ", 1)[1].split("\n")[0] if "Action: " in reply
                           else "final")  # fmt: skip
            return reply

    with anyio.fail_after(120):
        result = await example.demo(Recording())
    assert actions == ["discover", "resolve", "call_agent", "send_mailbox", "final"]
    assert result["output"].startswith("Left note ")
    [note] = result["notes"]
    assert note.sender == result["me"]
    assert note.text == "Translation of 'hello world': bonjour monde"


async def test_the_example_script_runs() -> None:
    with anyio.fail_after(180):
        proc = await anyio.run_process([sys.executable, str(ROOT / "examples" /
                                        "crewai_mailbox.py")], check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert b"friend's mailbox: \"Translation of 'hello world': bonjour monde\"" in proc.stdout


async def test_a_served_crew_answers_call_agent() -> None:
    example = load_example("crewai_mailbox.py")

    class Broken(example.ScriptedLLM):  # type: ignore[misc,name-defined]
        def next_step(self, task: str, steps: list[tuple[str, str]]) -> str:
            raise RuntimeError("model offline")

    broken = example.translator_crew()
    broken.agents[0].llm = Broken()
    card = AgentCard(
        name="broken", description="always fails", version="1.0",
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"], default_output_modes=["text/plain"],
        skills=[AgentSkill(id="test.broken", name="broken", description="fails", tags=["x"])],
    )  # fmt: skip
    with anyio.fail_after(120):
        async with network(3, publish=True) as (translator, fragile, caller):
            await serve_crew(translator, example.translator_crew(), example.translator_card)
            await serve_crew(fragile, broken, card)
            args = {"skill": "lang.translate", "text": "Translate into French: good day friend"}
            got = await call_tool(caller, "call_agent", args)
            assert got["agent"] == str(translator.aid) and got["kind"] == "task"
            assert got["task"]["state"] == "completed" and got["text"] == "bon jour ami"
            got = await call_tool(caller, "call_agent", {"to": str(fragile.aid), "text": "x"})
            assert got["task"]["state"] == "failed" and "model offline" in got["text"]
